"""Evaluation: every video exactly once (sharded rank::world, no padding, no drop), class text computed once,
per-view softmax summed over views (SPEC §2.9), top-1/top-5 with torchmetrics, per-video predictions."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from vifi.data.augment import normalise
from vifi.data.dataset import EvalClips, collate
from vifi.engine.runtime import Runtime
from vifi.errors import VifiError
from vifi.progress import progress_bar


@dataclass
class EvalResult:
    top1: float
    top5: float
    n_videos: int
    predictions: pd.DataFrame  # one row per video: video,label,pred,correct,top5,score
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, why) left out with skip_undecodable

    def summary(self) -> dict:
        out = {"top1": self.top1, "top5": self.top5, "n_videos": self.n_videos}
        if self.failed:
            out["n_failed"] = len(self.failed)
        return out


@torch.no_grad()
def class_text_features(model, class_names: list[str], template: str | None, runtime: Runtime) -> torch.Tensor:
    tokens = model.tokenize(model.class_texts(class_names, template)).to(runtime.device)
    with runtime.autocast():
        return model.encode_text(tokens).float()


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Indices of rank `rank`: rank, rank+world, ... — the shards partition range(n) exactly."""
    return list(range(rank, n, world))


def view_scores_fn(model, runtime: Runtime, compile: bool = False):
    """(uint8 frames [b, V, T, H, W, 3] on the device, text features [C, D]) -> per-view softmax summed [b, C].

    Normalisation, the video head and the view sum in one function, compiled with static shapes when asked
    (evaluation pads its last batch to the batch size, so one graph serves every batch).
    """
    def scores(frames: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        b, v = frames.shape[:2]
        videos = normalise(frames.flatten(0, 1))  # [b*V, T, 3, H, W]
        with runtime.autocast():
            logits = model.head(videos, text_features)
        return F.softmax(logits.float(), dim=-1).view(b, v, -1).sum(dim=1)
    if not compile:
        return scores
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly (one warning)
    return torch.compile(scores, dynamic=False)


@torch.inference_mode()
def video_scores(model, dataset: EvalClips, text_features: torch.Tensor, runtime: Runtime, *, batch: int,
                 num_workers: int | str, show_progress: bool = True, compile: bool = False):
    """(index, label, scores, failed) in dataset order; scores = per-view softmax summed over views.

    Videos that failed to decode are not scored; they come back as `failed` [(index, message)]. Scores stay on the
    device until the end: no device→host read per batch.
    """
    from vifi.engine.loaders import make_loader, resolve_workers

    model.eval()
    shard = Subset(dataset, shard_indices(len(dataset), runtime.rank, runtime.world))
    loader = make_loader(shard, batch_size=batch, workers=resolve_workers(num_workers), device=runtime.device,
                         collate_fn=collate)
    forward = view_scores_fn(model, runtime, compile)
    rows_idx, rows_label, rows_scores, failed = [], [], [], []
    with progress_bar("eval", len(shard), enabled=show_progress and runtime.is_main) as bar:
        for item in loader:
            flags = item["failed"]
            failed += [(int(i), f) for i, f in zip(item["index"].tolist(), flags) if f]
            frames, labels, index = item["frames"], item["label"], item["index"]
            if any(flags):  # only then select (a copy out of pinned memory); the usual batch goes as it is
                ok = torch.tensor([not f for f in flags], dtype=torch.bool)
                if not ok.any():
                    bar.advance(len(flags))
                    continue
                frames, labels, index = frames[ok], labels[ok], index[ok]
            b = frames.shape[0]
            frames = frames.to(runtime.device, non_blocking=True)  # uint8 [b, V, T, H, W, 3]
            if compile and b < batch:  # one static shape for the compiled graph
                frames = torch.cat([frames, frames.new_zeros((batch - b, *frames.shape[1:]))])
            rows_scores.append(forward(frames, text_features)[:b])
            rows_idx.append(index)
            rows_label.append(labels)
            bar.advance(b)
    empty = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, len(text_features)))
    rows_scores = [torch.cat(rows_scores).cpu()] if rows_scores else []  # the one device→host read
    local = tuple(torch.cat(rows) if rows else e for rows, e in zip((rows_idx, rows_label, rows_scores), empty))
    if runtime.distributed:
        gathered = [None] * runtime.world
        torch.distributed.all_gather_object(gathered, (local, failed))
        local = tuple(torch.cat([g[0][i] for g in gathered]) for i in range(3))
        failed = [f for g in gathered for f in g[1]]
    index, labels, scores = local
    order = torch.argsort(index)
    return index[order], labels[order], scores[order], sorted(failed)


def evaluate(model, dataset: EvalClips, class_names: list[str], runtime: Runtime, *, batch: int,
             num_workers: int | str, template: str | None, text_features: torch.Tensor | None = None,
             show_progress: bool = True, skip_undecodable: bool = False, compile: bool | None = None) -> EvalResult:
    """`compile` None: on CUDA (docs/performance.md), off on CPU."""
    if text_features is None:
        text_features = class_text_features(model, class_names, template, runtime)
    if compile is None:
        compile = runtime.device.type == "cuda"
    index, labels, scores, failed = video_scores(model, dataset, text_features, runtime, batch=batch,
                                                 num_workers=num_workers, show_progress=show_progress,
                                                 compile=compile)
    if failed and not skip_undecodable:
        raise VifiError(f"{len(failed)} of {len(dataset)} videos could not be decoded (first: {failed[0][1]}); "
                        "an accuracy over a different set of videos is not reported: fix or remove them "
                        "(`vifi prepare --check` lists them) or pass --skip-undecodable to score the others")
    if len(index) == 0:
        raise VifiError(f"none of the {len(dataset)} videos could be decoded (first: {failed[0][1]})")
    result = _score(dataset, index, labels, scores, len(class_names), [i for i, _ in failed])
    result.failed = [(dataset.entries[i].path, why) for i, why in failed]
    return result


def _score(dataset: EvalClips, index: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
           num_classes: int, failed: list[int] = ()) -> EvalResult:
    from torchmetrics.functional.classification import multiclass_accuracy

    assert sorted(index.tolist() + list(failed)) == list(range(len(dataset))), "every video exactly once"
    k5 = min(5, num_classes)
    top1 = float(multiclass_accuracy(scores, labels, num_classes=num_classes, top_k=1, average="micro")) * 100
    top5 = float(multiclass_accuracy(scores, labels, num_classes=num_classes, top_k=k5, average="micro")) * 100
    topk = scores.topk(k5, dim=-1)
    preds = pd.DataFrame({
        "video": [dataset.entries[i].path for i in index.tolist()],
        "label": labels.tolist(),
        "pred": topk.indices[:, 0].tolist(),
        "correct": (topk.indices[:, 0] == labels).int().tolist(),
        "top5": [" ".join(map(str, r)) for r in topk.indices.tolist()],
        "score": [round(float(s), 6) for s in topk.values[:, 0]],
    })
    return EvalResult(top1=top1, top5=top5, n_videos=len(index), predictions=preds)
