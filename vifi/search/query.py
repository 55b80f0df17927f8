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


def search(index: Path, queries: list[str], *, top_k: int, use_template: bool, cosine: bool = False,
           checkpoint: str | None = None, device: str | None = None) -> pd.DataFrame:
    """Rows rank, score, path, query, cosine: the `top_k` best existing videos per query, best first.

    score: the bank-corrected score (module docstring), or the cosine with `cosine` or when the checkpoint records
    no class names."""
    from vifi import console
    from vifi.engine.runtime import setup_runtime
    from vifi.model.checkpoint import build_from_checkpoint

    folder, info = open_index(index)
    entries, embeddings = folder.read()
    if not entries:
        raise VifiError(f"index {index} holds no videos yet; add some with `vifi index VIDEOS --out {index}`")
    weights = folder.verified_checkpoint(info, checkpoint)
    model, facts = build_from_checkpoint(weights, clip=info.get("clip"))
    runtime = setup_runtime(device, "auto")
    model.to(runtime.device).eval()
    template = info["template"] if use_template else None
    videos = torch.from_numpy(embeddings)
    similarity = text_embeddings(model, queries, template, runtime, "query") @ videos.t()  # [Q, N] cosines
    scores = similarity
    if not cosine and not facts.class_names:
        console.note(f"notice: {weights} records no class names to correct the scores with; ranking by cosine")
    elif not cosine:
        scale = float(model.clip.logit_scale.exp())
        scores = scale * similarity - bank_offsets(model, list(facts.class_names), info["template"], videos, runtime)
    rows, gone = [], set()
    for query, row, cos in zip(queries, scores, similarity):
        rank = 0
        for i in torch.argsort(row, descending=True).tolist():
            if not os.path.exists(entries[i].path):
                gone.add(entries[i].path)
                continue
            rank += 1
            rows.append({"rank": rank, "score": round(float(row[i]), 6), "path": entries[i].path, "query": query,
                         "cosine": round(float(cos[i]), 6)})
            if rank == top_k:
                break
    if gone:
        console.note(f"notice: {len(gone)} indexed video(s) no longer on disk were left out (first: "
                     f"{sorted(gone)[0]}); `vifi index … --prune` removes them from the index")
    return pd.DataFrame(rows, columns=COLUMNS)


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


def render(table: pd.DataFrame, as_json: bool) -> str:
    """CSV rows rank,score,path,query,cosine, or JSON: one object per query with its ranked results."""
    import json

    if as_json:
        grouped = [{"query": q, "results": g[["rank", "score", "cosine", "path"]].to_dict(orient="records")}
                   for q, g in table.groupby("query", sort=False)]
        return json.dumps(grouped, indent=2, ensure_ascii=False) + "\n"
    return table.to_csv(index=False)
