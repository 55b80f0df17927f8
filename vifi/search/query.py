"""`vifi search`: rank the indexed videos (or moments) by similarity with a text, encoded by the index's checkpoint.

By default the ranking score corrects each video's cosine for how close that video is to every text (its
"hubness"): with the checkpoint's logit scale s and its class names as a bank of texts, score = s·cos(v, q) −
logsumexp_b s·cos(v, b), the query's log-probability against the bank as the model was trained to give it. A model
fine-tuned to classify (video → text) does not order one text's similarity across videos well; on the demo this
correction lifts the class texts' precision from 66 % to 99 % (docs/search.md). The offset is stored per row at
index time and folded into the stored vector, so a query is one inner-product top-k search in the store
(vifi/search/index_folder.py). `--cosine` ranks by the plain cosine. Videos whose file is gone since indexing are
passed over (counted in one notice), so every path printed exists. Overlapping windows of one video merge into one
hit: the best window stands for the windows overlapping it (temporal non-maximum suppression).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vifi.errors import VifiError
from vifi.search.index_folder import IndexFolder, verified_checkpoint

COLUMNS = ["rank", "score", "path", "query", "cosine"]  # path third: `--out - | cut -d, -f3` gives the paths
COLUMNS_ALL = ["rank", "score", "path", "query", "cosine", "start", "end"]


@torch.no_grad()
def text_embeddings(model, texts: list[str], template: str | None, runtime,
                    what: str = "class prompt") -> torch.Tensor:
    """float32 [len(texts), D], L2-normalised; the text as the checkpoint encodes class names (its template).
    `what` names the texts in the error for one too long."""
    tokens = model.tokenize(model.class_texts(texts, template), what).to(runtime.device)
    with runtime.autocast():
        return F.normalize(model.encode_text(tokens).float(), dim=-1).cpu()


def open_index(index: Path) -> tuple[IndexFolder, dict]:
    folder = IndexFolder(index)
    if not folder.path.is_dir():
        raise VifiError(f"index not found: {index} (build one with `vifi index VIDEOS --checkpoint CKPT --out "
                        f"{index}`)")
    return folder, folder.read_info()


class Searcher:
    """An opened index and its checkpoint's model, loaded once: `.search(queries)` answers many calls (serve, the
    Python API) without paying the start-up again. `vifi search` is one call of it."""

    def __init__(self, index: Path, checkpoint: str | None = None, device: str | None = None):
        from vifi.engine.runtime import setup_runtime
        from vifi.model.checkpoint import build_from_checkpoint

        self.folder, self.info = open_index(Path(index))
        if self.folder.table(self.info) is None or self.folder.count() == 0:
            raise VifiError(f"index {index} holds no videos yet; add some with `vifi index VIDEOS --out {index}`")
        self.weights = verified_checkpoint(self.folder.path, self.info, checkpoint)
        self.model, self.facts = build_from_checkpoint(self.weights, clip=self.info.get("clip"))
        self.runtime = setup_runtime(device, "auto")
        self.model.to(self.runtime.device).eval()
        self.windowed = self.info.get("window") is not None

    def paths(self) -> set[str]:
        """Every indexed absolute path (deleted-since-indexing ones included)."""
        return set(self.folder.keys())

    def search(self, queries: list[str], top_k: int = 10, use_template: bool = True, cosine: bool = False,
               merge: bool = True) -> pd.DataFrame:
        """Rows rank, score, path, query, cosine, start, end: the `top_k` best existing videos (moments of a
        windowed index, overlapping windows of a video merged unless `merge` is False) per query, best first.
        score: the bank-corrected score (module docstring), or the cosine with `cosine` or when the index has no
        bank. start/end: seconds, NaN for an index of whole videos."""
        from vifi import console

        if not cosine and not self.info.get("bank"):
            console.note(f"notice: {self.weights} records no class names to correct the scores with; ranking by "
                         "cosine")
            cosine = True
        template = self.info["template"] if use_template else None
        texts = text_embeddings(self.model, queries, template, self.runtime, "query").numpy()
        scale = float(self.info["logit_scale"])
        rows, gone = [], set()
        for query, text in zip(queries, texts):
            hits = self._top(np.append(text, 0.0 if cosine else 1.0), top_k, merge, gone)
            for rank, hit in enumerate(hits, start=1):
                rows.append({"rank": rank, "score": round(hit["dot"] * (1 if cosine else scale), 6),
                             "path": hit["path"], "query": query, "cosine": round(hit["cosine"], 6),
                             "start": hit["start"], "end": hit["end"]})
        if gone:
            console.note(f"notice: {len(gone)} indexed video(s) no longer on disk were left out (first: "
                         f"{sorted(gone)[0]}); `vifi index … --prune` removes them from the index")
        return pd.DataFrame(rows, columns=COLUMNS_ALL)

    def _top(self, query: np.ndarray, top_k: int, merge: bool, gone: set) -> list[dict]:
        """The top_k hits: rows fetched best first from the store, in growing rounds while vanished files and
        merged windows leave fewer than top_k."""
        total = self.folder.count()
        limit = top_k * (4 if self.windowed else 1) + 8
        while True:
            result = self._fetch(query, min(limit, total))
            hits: list[dict] = []
            for row in result.to_pylist():
                if not os.path.exists(row["path"]):
                    gone.add(row["path"])
                    continue
                cos = float(np.dot(row["vector"][:-1], query[:-1]))
                hit = {"path": row["path"], "dot": float(row["dot"]), "cosine": cos, "start": row["start"],
                       "end": row["end"]}
                if merge and _absorbed(hits, hit):
                    continue
                if len(hits) < top_k:
                    hits.append(hit)
            if len(hits) >= top_k or limit >= total:
                return hits
            limit *= 4

    def _fetch(self, query, limit):
        try:
            return self.folder.search(query, limit)
        except Exception:  # noqa: BLE001 - a `vifi index` meanwhile removed the version we read: read the latest
            self.folder.table().checkout_latest()
            return self.folder.search(query, limit)


def _absorbed(hits: list[dict], hit: dict) -> bool:
    """Temporal non-maximum suppression: a lower-scored window overlapping a hit of its video is that hit's moment
    again, so it merges into it (the hit keeps its best window's times). Widening hits to the union instead chains
    overlapping windows across a whole video (measured on the demo timeline: one hit of 0–18 s)."""
    return any(h["path"] == hit["path"] and _overlap(h, hit) for h in hits)


def _overlap(a: dict, b: dict) -> bool:
    if math.isnan(a["start"]) or math.isnan(b["start"]):
        return False
    return a["start"] < b["end"] and b["start"] < a["end"]


def search(index: Path, queries: list[str], *, top_k: int, use_template: bool, cosine: bool = False,
           checkpoint: str | None = None, device: str | None = None, merge: bool = True) -> pd.DataFrame:
    """One `Searcher` call (the CLI's): rows rank, score, path, query, cosine, start, end."""
    _, info = open_index(Path(index))
    if not merge and info.get("window") is None:
        raise VifiError(f"--no-merge lists the windows of a moments index, but {index} holds whole videos (built "
                        "without --window); drop --no-merge, or build an index with `vifi index … --window SECONDS`")
    return Searcher(index, checkpoint, device).search(queries, top_k, use_template, cosine, merge)


def read_queries(items: list[str]) -> list[str]:
    """The queries as given, `-` replaced by the lines of stdin (blank lines skipped), as `vifi index -` reads
    paths."""
    import sys

    out: list[str] = []
    for item in items:
        if item == "-":
            out += [line.strip() for line in sys.stdin if line.strip()]
            if not out:
                raise VifiError("- reads the queries from stdin, one a line, but stdin held none")
        else:
            out.append(item)
    return out


class stdout_may_close:
    """Results read by `head` and the like: a reader that closes the pipe early has what it wanted, so the command
    ends quietly with status 0 (what `vifi … --out - | head` already does), not rich's silent exit 1."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is BrokenPipeError or (kind is SystemExit and exc.code == 1 and _stdout_is_devnull()):
            _quiet_stdout()
            raise SystemExit(0)
        return False


def _stdout_is_devnull() -> bool:
    """rich, on a closed pipe, points stdout at /dev/null and exits 1."""
    try:
        return os.path.samestat(os.fstat(1), os.stat(os.devnull))
    except OSError:
        return False


def _quiet_stdout() -> None:
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again


def print_results(table: pd.DataFrame) -> None:
    from rich.table import Table

    from vifi import console
    from vifi.search.windows import clock

    moments = "start" in output_columns(table)
    for query, group in table.groupby("query", sort=False):
        out = Table(title=f"{query!r}")
        out.add_column("rank", justify="right")
        out.add_column("score", justify="right")
        out.add_column("cosine", justify="right")
        out.add_column("path", overflow="fold")
        if moments:
            out.add_column("start", justify="right")
            out.add_column("end", justify="right")
        for row in group.itertuples(index=False):
            times = [clock(row.start), clock(row.end)] if moments else []
            out.add_row(str(row.rank), f"{row.score:.4f}", f"{row.cosine:.4f}", _shown(row.path), *times)
        console.print_rich(out, to_stdout=True)


def _shown(path: str) -> str:
    """The table shows paths under the working folder relative to it (the CSV and JSON keep them absolute)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def output_columns(table: pd.DataFrame) -> list[str]:
    """rank,score,path,query,cosine for whole videos; rank,score,path,start,end,query,cosine for moments (an index
    built with --window): path stays third either way."""
    if "start" in table and table["start"].notna().any():
        return ["rank", "score", "path", "start", "end", "query", "cosine"]
    return COLUMNS


def render(table: pd.DataFrame, as_json: bool) -> str:
    """CSV rows (output_columns), or JSON: one object per query with its ranked results."""
    import json

    columns = output_columns(table)
    if as_json:
        keep = [c for c in columns if c != "query"]
        grouped = [{"query": q, "results": g[keep].to_dict(orient="records")}
                   for q, g in table.groupby("query", sort=False)]
        return json.dumps(grouped, indent=2, ensure_ascii=False) + "\n"
    return table[columns].to_csv(index=False)
