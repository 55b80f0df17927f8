"""Evaluation: every video exactly once (sharded rank::world, no padding, no drop), class text computed once,
per-view softmax summed over views (SPEC §2.9), top-1/top-5 with torchmetrics, per-video predictions."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from vifi.data.augment import normalise
from vifi.data.dataset import EvalClips, collate
from vifi.engine.runtime import Runtime
from vifi.progress import progress_bar


@dataclass
class EvalResult:
    top1: float
    top5: float
    n_videos: int
    predictions: pd.DataFrame  # one row per video: video,label,pred,correct,top5,score

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "n_videos": self.n_videos}


@torch.no_grad()
def class_text_features(model, class_names: list[str], template: str | None, runtime: Runtime) -> torch.Tensor:
    from vifi.model.vifi_clip import class_prompts

    tokens = model.tokenize(class_prompts(class_names, template)).to(runtime.device)
    with runtime.autocast():
        return model.encode_text(tokens).float()


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Indices of rank `rank`: rank, rank+world, ... — the shards partition range(n) exactly."""
    return list(range(rank, n, world))


@torch.no_grad()
def video_scores(model, dataset: EvalClips, text_features: torch.Tensor, runtime: Runtime, *, batch: int,
                 num_workers: int, show_progress: bool = True):
    """(index, label, scores) of every video, in dataset order; scores = per-view softmax summed over views."""
    model.eval()
    shard = Subset(dataset, shard_indices(len(dataset), runtime.rank, runtime.world))
    loader = DataLoader(shard, batch_size=batch, shuffle=False, drop_last=False, num_workers=num_workers,
                        collate_fn=collate, pin_memory=runtime.device.type == "cuda")
    rows_idx, rows_label, rows_scores = [], [], []
    with progress_bar("eval", len(shard), enabled=show_progress and runtime.is_main) as bar:
        for item in loader:
            frames = item["frames"].to(runtime.device, non_blocking=True)  # uint8 [b, V, T, H, W, 3]
            b, v = frames.shape[:2]
            videos = normalise(frames.flatten(0, 1))  # [b*V, T, 3, H, W]
            with runtime.autocast():
                logits = model.head(videos, text_features)
            probs = F.softmax(logits.float(), dim=-1).view(b, v, -1).sum(dim=1)
            rows_idx.append(item["index"])
            rows_label.append(item["label"])
            rows_scores.append(probs.cpu())
            bar.advance(b)
    local = (torch.cat(rows_idx), torch.cat(rows_label), torch.cat(rows_scores))
    if runtime.distributed:
        gathered = [None] * runtime.world
        torch.distributed.all_gather_object(gathered, local)
        local = tuple(torch.cat([g[i] for g in gathered]) for i in range(3))
    index, labels, scores = local
    order = torch.argsort(index)
    return index[order], labels[order], scores[order]


def evaluate(model, dataset: EvalClips, class_names: list[str], runtime: Runtime, *, batch: int, num_workers: int,
             template: str | None, text_features: torch.Tensor | None = None, show_progress: bool = True) -> EvalResult:
    if text_features is None:
        text_features = class_text_features(model, class_names, template, runtime)
    index, labels, scores = video_scores(model, dataset, text_features, runtime, batch=batch,
                                         num_workers=num_workers, show_progress=show_progress)
    return _score(dataset, index, labels, scores, len(class_names))


def _score(dataset: EvalClips, index: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
           num_classes: int) -> EvalResult:
    from torchmetrics.functional.classification import multiclass_accuracy

    assert index.tolist() == list(range(len(dataset))), "every video must be evaluated exactly once"
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
