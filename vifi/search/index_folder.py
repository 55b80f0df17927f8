"""The search index folder: one owner of its layout, its commits and its reading (docs/search.md).

    INDEX/index.json           what built it: checkpoint (path, sha256, size, mtime_ns), frames, input size, template,
                               views, window and stride, dim, logit scale, vifi version, the table's name; last run's
                               counts
    INDEX/rows-<8 hex>.lance   the vector store, a Lance table (LanceDB): one row per video, or per window of a video
                               with --window: path, size, mtime_ns, start, end, offset, vector
    INDEX/failed.txt           videos the last run could not decode (path TAB reason); they are retried next run
    INDEX/.vifi.lock           the run-folder lock (vifi/run_folder.py): one `vifi index` at a time

`vector` is [v, −offset/s] (D + 1 floats): v the L2-normalised video embedding, offset the class-bank correction
logsumexp_b s·cos(v, b) computed once at index time, s the checkpoint's logit scale. The inner product with [q, 1]
is then score/s (the corrected score, docs/search.md) and with [q, 0] the plain cosine, so one approximate
inner-product search serves both. Lance commits are atomic versions: an append writes its data files, then a new
manifest names them; a kill at any moment leaves the previous version readable and the next run continues.
index.json names the table: `--overwrite` builds a new table beside the old one and swaps by rewriting index.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vifi.errors import VifiError
from vifi.fileio import write_json_atomic, write_text_atomic

FORMAT = "vifi-index/2"
OLD_FORMATS = {"vifi-index/1"}
_TABLE = re.compile(r"^rows-[0-9a-f]{8}\.lance$")
# Below this many rows an exact scan is fast (measured: docs/search.md); above, an IVF_FLAT index is built.
ANN_MIN_ROWS = 50_000
ANN_PROBES = 20  # partitions searched per query; recall measured in docs/search.md
INDEX_CACHE_BYTES = 256 << 20


def lancedb():
    """Imported on first use (an optional dependency, `pip install vifi[search]`); Lance's Rust logger kept quiet."""
    os.environ.setdefault("LANCE_LOG", "error")
    try:
        import lancedb as module
    except ImportError:
        raise VifiError("vifi index/search need LanceDB: pip install 'vifi[search]' (or pip install lancedb)") from None
    return module


@dataclass(frozen=True)
class IndexEntry:
    path: str  # absolute, symlinks resolved: the same file reached two ways is one video
    size: int
    mtime_ns: int
    start: float = float("nan")  # seconds from the first frame; NaN for a whole-video index
    end: float = float("nan")


def _schema(dim: int):
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                      ("start", pa.float64()), ("end", pa.float64()), ("offset", pa.float32()),
                      ("vector", pa.list_(pa.float32(), dim + 1))])


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class IndexFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._table = None

    info_file = property(lambda self: self.path / "index.json")
    failed = property(lambda self: self.path / "failed.txt")

    def own_names(self) -> set[str]:
        from vifi.run_folder import LOCK_NAME

        return {self.info_file.name, self.failed.name, LOCK_NAME}

    @property
    def exists(self) -> bool:
        return self.info_file.is_file()

    def foreign_files(self) -> list[str]:
        """Names in the folder that an index does not hold (our temp files start with '.' + one of ours)."""
        if not self.path.is_dir():
            return []
        own = self.own_names()
        return sorted(p.name for p in self.path.iterdir()
                      if p.name not in own and not _TABLE.match(p.name) and p.name not in ("manifest.jsonl",
                                                                                            "embeddings")
                      and not any(p.name.startswith(f".{n}.") for n in own))

    # ---- reading --------------------------------------------------------------------------------------------
    def read_info(self) -> dict:
        try:
            info = json.loads(self.info_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VifiError(f"{self.path} is not a vifi index (no {self.info_file.name}); build one with "
                            f"`vifi index VIDEOS --checkpoint CKPT --out {self.path}`") from None
        except (OSError, ValueError) as exc:
            raise VifiError(f"{self.info_file}: unreadable ({exc}); rebuild the index with --overwrite") from None
        found = info.get("format") if isinstance(info, dict) else None
        if found in OLD_FORMATS:
            raise VifiError(f"{self.path} is an index of an older vifi ({found}: manifest.jsonl + embeddings/); "
                            f"rebuild it once: `vifi index VIDEOS --out {self.path} --overwrite` (its checkpoint is "
                            "reused)")
        if found != FORMAT:
            raise VifiError(f"{self.info_file} is not a {FORMAT} index file (format {found!r}); rebuild the index "
                            "with --overwrite, or use the vifi that built it")
        return info

    def table(self, info: dict | None = None, create_dim: int | None = None):
        """The index's Lance table (None before its first commit, unless `create_dim` creates it empty)."""
        if self._table is not None:
            return self._table
        info = info or self.read_info()
        module = lancedb()
        # The ANN index's partitions are cached as queries touch them: capped, so a long-lived searcher over a
        # million rows stays small (measured in docs/search.md).
        db = module.connect(str(self.path), session=module.Session(index_cache_size_bytes=INDEX_CACHE_BYTES))
        name = info["table"]
        if (self.path / f"{name}.lance").is_dir():
            try:
                self._table = db.open_table(name)
            except Exception as exc:  # noqa: BLE001 - Lance's errors have no common base
                raise VifiError(f"{self.path / name}.lance: unreadable ({str(exc).splitlines()[0]}); rebuild the "
                                "index with --overwrite") from None
        elif create_dim is not None:
            self._table = db.create_table(name, schema=_schema(create_dim))
        return self._table

    def version(self) -> int | None:
        """The table's current Lance version (None before its first commit)."""
        table = self.table()
        return None if table is None else table.version

    def count(self) -> int:
        table = self.table()
        return 0 if table is None else table.count_rows()

    def keys(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every indexed video: three columns scanned, no vector read."""
        table = self.table()
        if table is None:
            return {}
        columns = self._scan(["path", "size", "mtime_ns"])
        return dict(zip(columns["path"].to_pylist(), zip(columns["size"].to_pylist(),
                                                         columns["mtime_ns"].to_pylist())))

    def read(self) -> tuple[list[IndexEntry], np.ndarray, np.ndarray]:
        """Every row: (entries, vectors float32 [N, D] L2-normalised, offsets [N]). For tests and small indexes;
        a search reads only the rows it returns."""
        table = self.table()
        if table is None:
            return [], np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
        data = self._scan(["path", "size", "mtime_ns", "start", "end", "offset", "vector"])
        return _entries(data), _vectors(data)[:, :-1], data["offset"].to_numpy()

    def _scan(self, columns: list[str]):
        """These columns of every row (Lance reads only them)."""
        table = self.table()
        return table.search().select(columns).limit(max(1, table.count_rows())).to_arrow()

    def search(self, query: np.ndarray, limit: int, exact: bool = False):
        """The `limit` rows with the largest inner product of `vector` with `query` [D + 1] (an Arrow table with
        the columns and `dot`), best first. Approximate once the table has an ANN index (ANN_PROBES partitions;
        rows added since the index was built are scanned exactly); `exact` scans everything."""
        search = (self.table().search(query.astype(np.float32), vector_column_name="vector")
                  .distance_type("dot").limit(limit)
                  .select(["path", "size", "mtime_ns", "start", "end", "offset", "vector", "_distance"]))
        search = search.bypass_vector_index() if exact else search.nprobes(ANN_PROBES)
        result = search.to_arrow()
        dots = _vectors(result) @ query.astype(np.float32)  # recomputed: not Lance's distance convention
        order = np.argsort(-dots, kind="stable")
        return result.take(order).append_column("dot", [dots[order].astype(np.float32)])

    # ---- writing (the caller holds the lock) ---------------------------------------------------------------
    def write_info(self, info: dict) -> None:
        write_json_atomic(self.info_file, {"format": FORMAT, **{k: v for k, v in info.items() if k != "format"}})

    @staticmethod
    def new_table_name() -> str:
        return f"rows-{uuid.uuid4().hex[:8]}"

    def commit(self, info: dict, rows: list[IndexEntry], vectors: np.ndarray, offsets: np.ndarray, scale: float,
               replace: set[str] = frozenset()) -> None:
        """Delete the rows of the paths in `replace`, then append `rows` (`vectors` L2-normalised [n, D], `offsets`
        [n]). An append is one Lance version (its cost does not grow with the table); a kill between the delete and
        the append leaves those videos out, so the next run embeds them again."""
        import pyarrow as pa

        dim = vectors.shape[1]
        table = self.table(info, create_dim=dim)
        if replace:
            self.delete(replace)
        augmented = np.concatenate([vectors, (-offsets / scale)[:, None]], axis=1).astype(np.float32)
        table.add(pa.table({
            "path": [r.path for r in rows], "size": pa.array([r.size for r in rows], pa.int64()),
            "mtime_ns": pa.array([r.mtime_ns for r in rows], pa.int64()),
            "start": pa.array([r.start for r in rows], pa.float64()),
            "end": pa.array([r.end for r in rows], pa.float64()),
            "offset": pa.array(offsets.astype(np.float32)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(augmented.ravel()), dim + 1)}, schema=_schema(dim)))

    def delete(self, paths: set[str] | list[str], chunk: int = 500) -> None:
        """Remove every row of these paths (all windows of a video): one Lance deletion per `chunk` paths."""
        paths = sorted(paths)
        for i in range(0, len(paths), chunk):
            self.table().delete(f"path IN ({', '.join(_sql_text(p) for p in paths[i:i + chunk])})")

    def optimize(self) -> str | None:
        """End of a run: merge small files, add new rows to the ANN index (built once the table reaches
        ANN_MIN_ROWS), drop old versions' files. Returns what was done to the ANN index, for the summary."""
        from datetime import timedelta

        table = self.table()
        if table is None:
            return None
        rows = table.count_rows()
        indexed = any(i.columns == ["vector"] for i in table.list_indices())
        done = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy create_index signature; cleanup_older_than=0 (see below)
            # Compaction, new rows into an existing ANN index, and the files of every older version removed (we
            # hold the lock: no other writer; a search still reading a removed version re-reads the latest,
            # vifi/search/query.py). Lance writes the merged ANN index as a new version after that removal, so the
            # previous index's files stay until the next run (docs/search.md: disk). Then, once the table is big
            # enough, the index is built over the compacted files.
            table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)  # a killed append's files too
            if not indexed and rows >= ANN_MIN_ROWS:
                table.create_index(metric="dot", vector_column_name="vector", index_type="IVF_FLAT",
                                   num_partitions=max(1, int(rows ** 0.5)), sample_rate=64, max_iterations=25)
                done = f"built an approximate-search index over {rows} rows"
        return done

    def remove_other_tables(self, keep: str, legacy: bool = False) -> None:
        """Tables index.json does not name: an --overwrite's old table after the swap, or a killed one's new;
        `legacy`: also an older vifi's manifest and parts (once --overwrite has replaced them)."""
        for p in self.path.iterdir() if self.path.is_dir() else []:
            if _TABLE.match(p.name) and p.name != f"{keep}.lance":
                shutil.rmtree(p, ignore_errors=True)
        for old in ("manifest.jsonl", "embeddings") if legacy else ():  # an older vifi's index, replaced by --overwrite
            target = self.path / old
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)

    def write_failed(self, failed: list[tuple[str, str]]) -> None:
        if failed:
            write_text_atomic(self.failed, "".join(f"{path}\t{why}\n" for path, why in failed))
        else:
            self.failed.unlink(missing_ok=True)


def _vectors(data) -> np.ndarray:
    column = data["vector"].combine_chunks()
    width = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, width)


def _entries(data) -> list[IndexEntry]:
    return [IndexEntry(*row) for row in zip(*(data[c].to_pylist() for c in ("path", "size", "mtime_ns", "start",
                                                                              "end")))]


def checkpoint_stat(path: Path) -> dict:
    st = os.stat(path)
    return {"checkpoint_size": st.st_size, "checkpoint_mtime_ns": st.st_mtime_ns}


def verified_checkpoint(folder_path: Path, info: dict, given: str | None = None) -> Path:
    """The checkpoint file that built this index: `given` (a moved copy) or the recorded path, refused unless its
    sha256 is the recorded one (text from another model would not match these video embeddings). The recorded
    file is re-hashed only when its size or mtime_ns changed since the index recorded them."""
    from vifi.fileio import sha256_file
    from vifi.model.checkpoint import resolve_checkpoint

    recorded = info["checkpoint"]
    if given is None and not Path(recorded).is_file():
        raise VifiError(f"index {folder_path} was built with checkpoint {recorded}, which is not there any more; "
                        "pass --checkpoint with its new place, or rebuild the index with --overwrite")
    path = resolve_checkpoint(given if given is not None else recorded).resolve()
    unchanged = (str(path) == recorded and "checkpoint_size" in info
                 and checkpoint_stat(path) == {k: info[k] for k in ("checkpoint_size", "checkpoint_mtime_ns")})
    digest = info["checkpoint_sha256"] if unchanged else sha256_file(path)
    if digest != info["checkpoint_sha256"]:
        raise VifiError(f"checkpoint {path} (sha256 {digest[:12]}) is not the one index {folder_path} was built "
                        f"with ({recorded}, sha256 {info['checkpoint_sha256'][:12]}); its text would not match "
                        "the indexed videos: rebuild with `vifi index … --overwrite` or choose another --out")
    return path
