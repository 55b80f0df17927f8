"""The reference LR schedule (SPEC §3.3): timm CosineLRScheduler without warm-up prefix, stepped per iteration.

t counts micro-batch iterations. W = warmup_epochs·I, Tt = epochs·I, I = micro-batches per epoch.
  t < W:        lr = LR·t/W
  W ≤ t < Tt:   lr = lr_min + ½(LR − lr_min)(1 + cos(π·t/Tt))      (t not shifted: the LR drops after warm-up)
  t ≥ Tt:       lr = lr_min
The LR of optimizer step k (0-based) is that of the iteration which completed step k−1; step 0 runs at LR 0.
"""

from __future__ import annotations

import math


def reference_lr(t: float, base_lr: float, warmup_iters: float, total_iters: float, min_lr: float) -> float:
    if t < warmup_iters:
        return base_lr * t / warmup_iters
    if t >= total_iters:
        return min_lr
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t / total_iters))


class StepLR:
    """LR for each optimizer step of a run with `steps_per_epoch` steps of `accum` micro-batches."""

    def __init__(self, base_lr: float, epochs: int, warmup_epochs: float, steps_per_epoch: int, accum: int,
                 min_lr_ratio: float = 0.01):
        self.base_lr, self.accum, self.steps_per_epoch = base_lr, accum, steps_per_epoch
        self.iters_per_epoch = steps_per_epoch * accum
        self.warmup = warmup_epochs * self.iters_per_epoch
        self.total = epochs * self.iters_per_epoch
        self.min_lr = base_lr * min_lr_ratio

    def __call__(self, step: int) -> float:
        if step == 0:
            return 0.0  # warmup_lr_init: the very first step runs at lr 0
        prev = step - 1
        epoch, in_epoch = divmod(prev, self.steps_per_epoch)
        t = epoch * self.iters_per_epoch + (in_epoch + 1) * self.accum - 1
        return reference_lr(t, self.base_lr, self.warmup, self.total, self.min_lr)
