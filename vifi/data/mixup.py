"""Mixup / CutMix with label smoothing in groups of clips, as the reference does per GPU (docs/design.md, "Mixup").

The reference mixes each GPU's batch of 4 clips with a random permutation of that batch: one clip in four is, on
average, paired with itself and keeps its clean (smoothed) label. vifi reproduces that with *mix groups*: the clips
of a step are cut into groups of `group` clips (in the order of the step's global batch), and each group gets its
own permutation, λ, box and mixup/cutmix switch, drawn from a numpy Generator seeded by (seed, step, group index).
The group index counts groups across the whole global batch, so the result depends neither on the micro-batch size
nor on the number of processes: a micro-batch of 16 gives exactly what four micro-batches of 4 give.

All draws happen on the host with numpy (no device→host read); the device receives one small [B, 7] tensor per
micro-batch and does the mixing in one fused expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MixSettings:
    mixup_alpha: float
    cutmix_alpha: float
    switch_prob: float
    smoothing: float
    group: int  # clips per mix group (the reference's per-GPU batch: 4)

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), on)


def draw_group(rng: np.random.Generator, mix: MixSettings, size: int, height: int, width: int) -> dict:
    """One group's draws, in a fixed order: switch (only when both are on), λ, permutation, box centre (CutMix).

    Returns the permutation, the per-clip blend weight of the clip itself for mixup (λ) or the box for CutMix,
    and the label weight λ (for CutMix: the kept area, recomputed after clamping the box to the image).
    """
    use_mix, use_cut = mix.mixup_alpha > 0, mix.cutmix_alpha > 0
    do_cut = use_cut and (not use_mix or rng.random() < mix.switch_prob)
    lam = float(rng.beta(mix.cutmix_alpha, mix.cutmix_alpha) if do_cut else rng.beta(mix.mixup_alpha, mix.mixup_alpha))
    perm = rng.permutation(size)
    box = (0, 0, 0, 0)
    if do_cut:
        cut_h, cut_w = int(height * (1 - lam) ** 0.5), int(width * (1 - lam) ** 0.5)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        box = (y0, y1, x0, x1)
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return {"cut": do_cut, "lam": lam, "perm": perm, "box": box}


def mix_plan(mix: MixSettings, *, seed: int, step: int, first_clip: int, size: int, height: int,
             width: int) -> torch.Tensor:
    """Host-side plan for `size` clips starting at position `first_clip` of the step's global batch.

    Columns: partner (index inside this micro-batch), is_cut, λ, y0, y1, x0, x1. `first_clip` and `size` must be
    multiples of the group size, so that every group lies inside one micro-batch.
    """
    g = mix.group
    if first_clip % g or size % g:
        raise ValueError(f"micro-batches must hold whole mix groups of {g} clips (got {size} clips at {first_clip})")
    plan = np.zeros((size, 7), dtype=np.float32)
    for local in range(size // g):
        group_index = first_clip // g + local
        draw = draw_group(np.random.default_rng([seed, step, group_index]), mix, g, height, width)
        rows = slice(local * g, (local + 1) * g)
        plan[rows, 0] = local * g + draw["perm"]
        plan[rows, 1] = float(draw["cut"])
        plan[rows, 2] = draw["lam"]
        plan[rows, 3:7] = draw["box"]
    return torch.from_numpy(plan)


def apply_mix(videos: torch.Tensor, labels: torch.Tensor, num_classes: int, smoothing: float,
              plan: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """videos [B, T, 3, H, W], labels [B], plan [B, 7] on the device (or None: no mixing) -> (videos, targets [B, C]).

    Each clip becomes a·clip + (1−a)·partner with a = λ (mixup) or a = 0 inside the box, 1 outside (CutMix); a is 0
    or 1 exactly for CutMix, so pasted pixels equal the partner's. No value is read back to the host.
    """
    targets = smooth_one_hot(labels, num_classes, smoothing)
    if plan is None:
        return videos, targets
    partner = plan[:, 0].long()
    is_cut, lam = plan[:, 1], plan[:, 2]
    h, w = videos.shape[-2:]
    ys = torch.arange(h, device=videos.device, dtype=plan.dtype).view(1, h, 1)
    xs = torch.arange(w, device=videos.device, dtype=plan.dtype).view(1, 1, w)
    y0, y1, x0, x1 = (plan[:, k].view(-1, 1, 1) for k in range(3, 7))
    inside = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)  # [B, H, W]
    cut_weight = (~inside).to(videos.dtype)
    weight = torch.where(is_cut.view(-1, 1, 1) > 0, cut_weight, lam.view(-1, 1, 1).to(videos.dtype))
    weight = weight.unsqueeze(1).unsqueeze(1)  # [B, 1, 1, H, W]: the same for every frame and channel
    mixed = videos * weight + videos[partner] * (1 - weight)
    lam_t = lam.view(-1, 1)
    return mixed, targets * lam_t + targets[partner] * (1 - lam_t)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()
