"""`vifi search`: rank the indexed videos by similarity with a text, encoded by the index's own checkpoint.

The index's embeddings are L2-normalised, so the cosine is one matrix product with the normalised text. By default
the ranking score corrects each video's cosine for how close that video is to every text (its "hubness"): with the
checkpoint's logit scale s and its class names as a bank of texts, score = s·cos(v, q) − logsumexp_b s·cos(v, b),
the query's log-probability against the bank as the model was trained to give it. A model fine-tuned to classify
(video → text) does not order one text's similarity across videos well; on the demo this correction lifts the
class texts' precision from 66 % to 99 % (docs/search.md). `--cosine` ranks by the plain cosine.
Videos whose file is gone since indexing are passed over (counted in one notice), so every path printed exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from vifi.errors import VifiError
from vifi.search.index_folder import IndexFolder

COLUMNS = ["rank", "score", "path", "query", "cosine"]  # path third: `--out - | cut -d, -f3` gives the paths


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


def bank_offsets(model, bank: list[str], template: str | None, embeddings: torch.Tensor, runtime) -> torch.Tensor:
    """[N]: logsumexp over the bank texts of s·cos(video, text), s the model's logit scale."""
    scale = float(model.clip.logit_scale.exp())
    return torch.logsumexp(scale * (text_embeddings(model, bank, template, runtime) @ embeddings.t()), dim=0)


COLUMNS_ALL = ["rank", "score", "path", "query", "cosine", "start", "end"]


class Searcher:
    """An opened index and its checkpoint's model, loaded once: `.search(queries)` answers many calls (serve, the
    Python API) without paying the start-up again. `vifi search` is one call of it."""

    def __init__(self, index: Path, checkpoint: str | None = None, device: str | None = None):
        from vifi.engine.runtime import setup_runtime
        from vifi.model.checkpoint import build_from_checkpoint

        self.folder, self.info = open_index(Path(index))
        self.entries, embeddings = self.folder.read()
        if not self.entries:
            raise VifiError(f"index {index} holds no videos yet; add some with `vifi index VIDEOS --out {index}`")
        self.weights = self.folder.verified_checkpoint(self.info, checkpoint)
        self.model, self.facts = build_from_checkpoint(self.weights, clip=self.info.get("clip"))
        self.runtime = setup_runtime(device, "auto")
        self.model.to(self.runtime.device).eval()
        self.videos = torch.from_numpy(embeddings)
        self._offsets = None

    def paths(self) -> set[str]:
        """Every indexed absolute path (deleted-since-indexing ones included)."""
        return {e.path for e in self.entries}

    def offsets(self) -> torch.Tensor | None:
        """[N] per-video bank offsets (None when the checkpoint records no class names)."""
        if not self.facts.class_names:
            return None
        if self._offsets is None:
            self._offsets = bank_offsets(self.model, list(self.facts.class_names), self.info["template"],
                                         self.videos, self.runtime)
        return self._offsets

    def search(self, queries: list[str], top_k: int = 10, use_template: bool = True,
               cosine: bool = False) -> pd.DataFrame:
        """Rows rank, score, path, query, cosine, start, end: the `top_k` best existing videos per query, best
        first. score: the bank-corrected score (module docstring), or the cosine with `cosine` or when the
        checkpoint records no class names. start/end: NaN for an index of whole videos."""
        from vifi import console

        template = self.info["template"] if use_template else None
        similarity = text_embeddings(self.model, queries, template, self.runtime, "query") @ self.videos.t()
        scores = similarity
        if not cosine and not self.facts.class_names:
            console.note(f"notice: {self.weights} records no class names to correct the scores with; ranking by "
                         "cosine")
        elif not cosine:
            scale = float(self.model.clip.logit_scale.exp())
            scores = scale * similarity - self.offsets()
        rows, gone = [], set()
        for query, row, cos in zip(queries, scores, similarity):
            rank = 0
            for i in torch.argsort(row, descending=True).tolist():
                if not os.path.exists(self.entries[i].path):
                    gone.add(self.entries[i].path)
                    continue
                rank += 1
                rows.append({"rank": rank, "score": round(float(row[i]), 6), "path": self.entries[i].path,
                             "query": query, "cosine": round(float(cos[i]), 6), "start": float("nan"),
                             "end": float("nan")})
                if rank == top_k:
                    break
        if gone:
            console.note(f"notice: {len(gone)} indexed video(s) no longer on disk were left out (first: "
                         f"{sorted(gone)[0]}); `vifi index … --prune` removes them from the index")
        return pd.DataFrame(rows, columns=COLUMNS_ALL)


def search(index: Path, queries: list[str], *, top_k: int, use_template: bool, cosine: bool = False,
           checkpoint: str | None = None, device: str | None = None) -> pd.DataFrame:
    """One `Searcher` call (the CLI's): rows rank, score, path, query, cosine, start, end."""
    return Searcher(index, checkpoint, device).search(queries, top_k, use_template, cosine)


def print_results(table: pd.DataFrame) -> None:
    from rich.table import Table

    from vifi import console

    for query, group in table.groupby("query", sort=False):
        out = Table(title=f"{query!r}")
        out.add_column("rank", justify="right")
        out.add_column("score", justify="right")
        out.add_column("cosine", justify="right")
        out.add_column("path", overflow="fold")
        for row in group.itertuples(index=False):
            out.add_row(str(row.rank), f"{row.score:.4f}", f"{row.cosine:.4f}", _shown(row.path))
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
