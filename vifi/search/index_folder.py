"""The search index folder: one owner of its layout, its commits and its reading (docs/search.md).

    INDEX/index.json           what built it: checkpoint (path, sha256), frames, input size, template, views, dim,
                               vifi version; the last run's counts
    INDEX/manifest.jsonl       one JSON object per video: path (absolute), size, mtime_ns, part, row
    INDEX/embeddings/part-NNNNNN.npy   float32 [n, D], L2-normalised, never modified once written
    INDEX/failed.txt           videos the last run could not decode (path TAB reason); they are retried next run
    INDEX/.vifi.lock           the run-folder lock (vifi/run_folder.py): one `vifi index` at a time

The manifest is the commit point. A commit writes a new part file (atomically, under a new name), then replaces the
manifest with one naming it; a kill before the manifest's rename leaves the previous manifest and the parts it
names, all intact. Parts the manifest does not name (a killed commit, rows of re-embedded videos) are garbage,
removed by the next run under the lock; `compact` folds everything into one part at the end of a run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vifi.errors import VifiError
from vifi.fileio import atomic_path, write_json_atomic, write_text_atomic

FORMAT = "vifi-index/1"
_PART = re.compile(r"^part-(\d{6})\.npy$")


@dataclass(frozen=True)
class IndexEntry:
    path: str  # absolute, symlinks resolved: the same file reached two ways is one entry
    size: int
    mtime_ns: int
    part: str  # file name under embeddings/
    row: int  # row of that part


class IndexFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    info_file = property(lambda self: self.path / "index.json")
    manifest = property(lambda self: self.path / "manifest.jsonl")
    parts = property(lambda self: self.path / "embeddings")
    failed = property(lambda self: self.path / "failed.txt")

    def own_names(self) -> set[str]:
        from vifi.run_folder import LOCK_NAME

        return {self.info_file.name, self.manifest.name, self.parts.name, self.failed.name, LOCK_NAME}

    @property
    def exists(self) -> bool:
        return self.info_file.is_file()

    def foreign_files(self) -> list[str]:
        """Names in the folder that an index does not hold (our own temp files start with '.' + one of ours)."""
        if not self.path.is_dir():
            return []
        own = self.own_names()
        return sorted(p.name for p in self.path.iterdir()
                      if p.name not in own and not any(p.name.startswith(f".{n}.") for n in own))

    # ---- reading --------------------------------------------------------------------------------------------
    def read_info(self) -> dict:
        try:
            info = json.loads(self.info_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VifiError(f"{self.path} is not a vifi index (no {self.info_file.name}); build one with "
                            f"`vifi index VIDEOS --checkpoint CKPT --out {self.path}`") from None
        except (OSError, ValueError) as exc:
            raise VifiError(f"{self.info_file}: unreadable ({exc}); rebuild the index with --overwrite") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise VifiError(f"{self.info_file} is not a {FORMAT} index file; rebuild the index with --overwrite")
        return info

    def read_manifest(self) -> list[IndexEntry]:
        """The committed entries, in manifest order (empty before the first commit)."""
        if not self.manifest.is_file():
            return []
        entries = []
        with open(self.manifest, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    entries.append(IndexEntry(**json.loads(line)))
                except (ValueError, TypeError):
                    raise VifiError(f"{self.manifest} line {number} is damaged; rebuild the index with "
                                    "--overwrite") from None
        return entries

    def load_embeddings(self, entries: list[IndexEntry]) -> np.ndarray:
        """float32 [len(entries), D], row i the embedding of entries[i]."""
        if not entries:
            return np.zeros((0, 0), dtype=np.float32)
        by_part: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            by_part.setdefault(entry.part, []).append(i)
        out = None
        for part, positions in by_part.items():
            try:
                stored = np.load(self.parts / part, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise VifiError(f"{self.parts / part}: unreadable ({exc}); rebuild the index with "
                                "--overwrite") from None
            if out is None:
                out = np.empty((len(entries), stored.shape[1]), dtype=np.float32)
            out[positions] = stored[[entries[i].row for i in positions]]
        return out

    def read(self, attempts: int = 3) -> tuple[list[IndexEntry], np.ndarray]:
        """(entries, embeddings) of one commit. A `vifi index` running meanwhile may compact and delete the parts
        the manifest just read names; the manifest is then read again."""
        for attempt in range(attempts):
            entries = self.read_manifest()
            try:
                return entries, self.load_embeddings(entries)
            except VifiError:
                if attempt == attempts - 1 or all((self.parts / e.part).is_file() for e in entries):
                    raise
        raise AssertionError("unreachable")

    def verified_checkpoint(self, info: dict, given: str | None = None) -> Path:
        """The checkpoint file that built this index: `given` (a moved copy) or the recorded path, refused unless
        its sha256 is the recorded one (text from another model would not match these video embeddings)."""
        from vifi.fileio import sha256_file
        from vifi.model.checkpoint import resolve_checkpoint

        recorded = info["checkpoint"]
        if given is None and not Path(recorded).is_file():
            raise VifiError(f"index {self.path} was built with checkpoint {recorded}, which is not there any more; "
                            "pass --checkpoint with its new place, or rebuild the index with --overwrite")
        path = resolve_checkpoint(given if given is not None else recorded).resolve()
        digest = sha256_file(path)
        if digest != info["checkpoint_sha256"]:
            raise VifiError(f"checkpoint {path} (sha256 {digest[:12]}) is not the one index {self.path} was built "
                            f"with ({recorded}, sha256 {info['checkpoint_sha256'][:12]}); its text would not match "
                            "the indexed videos: rebuild with `vifi index … --overwrite` or choose another --out")
        return path

    # ---- writing (the caller holds the lock) ---------------------------------------------------------------
    def write_info(self, info: dict) -> None:
        write_json_atomic(self.info_file, {"format": FORMAT, **{k: v for k, v in info.items() if k != "format"}})

    def commit(self, entries: list[IndexEntry], new: list[tuple[str, int, int]] | None = None,
               embeddings: np.ndarray | None = None) -> list[IndexEntry]:
        """Make `entries` plus `new` [(path, size, mtime_ns)] (with their `embeddings` rows) the index's content.

        An entry of `new` replaces an entry of the same path in place. The part file is complete before the
        manifest names it, so a kill at any moment leaves either the previous content or this one.
        """
        entries = list(entries)
        if new:
            assert embeddings is not None and len(embeddings) == len(new)
            part = self._write_part(embeddings)
            position = {e.path: i for i, e in enumerate(entries)}
            for row, (path, size, mtime_ns) in enumerate(new):
                entry = IndexEntry(path, size, mtime_ns, part, row)
                if path in position:
                    entries[position[path]] = entry
                else:
                    position[path] = len(entries)
                    entries.append(entry)
        write_text_atomic(self.manifest, "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in entries))
        return entries

    def compact(self, entries: list[IndexEntry]) -> list[IndexEntry]:
        """Fold the committed entries into one part, row i = manifest line i; drop every other part."""
        compact = (len({e.part for e in entries}) == 1 and [e.row for e in entries] == list(range(len(entries)))
                   and self._part_files() == [entries[0].part])
        if entries and not compact:
            embeddings = self.load_embeddings(entries)
            entries = self.commit([], [(e.path, e.size, e.mtime_ns) for e in entries], embeddings)
        self.collect_garbage(entries)
        return entries

    def collect_garbage(self, entries: list[IndexEntry]) -> None:
        """Remove parts the manifest does not name and temp files a killed run left behind."""
        named = {e.part for e in entries}
        for name in self._part_files():
            if name not in named:
                (self.parts / name).unlink(missing_ok=True)
        for folder in (self.path, self.parts):
            if folder.is_dir():
                for stray in folder.glob(".*.tmp"):
                    stray.unlink(missing_ok=True)

    def write_failed(self, failed: list[tuple[str, str]]) -> None:
        if failed:
            write_text_atomic(self.failed, "".join(f"{path}\t{why}\n" for path, why in failed))
        else:
            self.failed.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove an index (--overwrite): the manifest first, so a kill part-way leaves an empty index."""
        self.manifest.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.failed.unlink(missing_ok=True)
        self.info_file.unlink(missing_ok=True)

    def _part_files(self) -> list[str]:
        if not self.parts.is_dir():
            return []
        return sorted(p.name for p in self.parts.iterdir() if _PART.match(p.name))

    def _write_part(self, embeddings: np.ndarray) -> str:
        numbers = [int(_PART.match(n).group(1)) for n in self._part_files()]
        name = f"part-{max(numbers, default=-1) + 1:06d}.npy"
        self.parts.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.parts / name) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(embeddings, dtype=np.float32))
        return name
