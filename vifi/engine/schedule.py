"""The reference LR schedule, on the reference's own clock (docs/design.md, "LR clock").

The reference steps timm's `CosineLRScheduler` (warm-up from 0, lr_min = LR·min_lr_ratio, `t_in_epochs=False`,
no warm-up prefix) in units of its data-loader iterations: with P GPUs of b clips each and A accumulation steps,
an epoch of N videos has I = ⌊⌈N/P⌉ / b⌋ iterations (DistributedSampler pads to a multiple of P, the loader drops
the last partial batch), W = warmup_epochs·I, Tt = epochs·I, and after optimizer step j (0-based) of epoch e the
LR is set for iteration t = e·I + (j+1)·A − 1. The very first step runs at LR 0.

vifi evaluates that clock for the paper's setup (P, b) = (`train.lr_clock_gpus`, `train.lr_clock_gpu_batch`),
A = global_batch / (P·b), whatever the user's GPU count and micro-batch: the LR of every optimizer step equals the
one the paper's 8-GPU run used at that step. Without a clock setup, one iteration is one optimizer step (P = 1,
b = global batch). The values come from timm's scheduler itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LRClock:
    """Iteration counts of the setup whose LR schedule a run follows."""

    num_videos: int
    global_batch: int
    gpus: int = 1  # P
    gpu_batch: int | None = None  # b (None: the whole global batch, i.e. one iteration per optimizer step)

    def __post_init__(self):
        b = self.gpu_batch or self.global_batch
        if self.global_batch % (self.gpus * b):
            raise ValueError(f"global batch {self.global_batch} is not a multiple of {self.gpus} GPU(s) × {b} clips")

    @property
    def accum(self) -> int:  # A
        return self.global_batch // (self.gpus * (self.gpu_batch or self.global_batch))

    @property
    def iters_per_epoch(self) -> int:  # I
        return math.ceil(self.num_videos / self.gpus) // (self.gpu_batch or self.global_batch)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: left-over iterations (< A) are discarded, as in the reference."""
        return self.iters_per_epoch // self.accum

    @property
    def padded_videos(self) -> int:
        """Videos per epoch after padding by repetition to a multiple of P (DistributedSampler)."""
        return math.ceil(self.num_videos / self.gpus) * self.gpus

    def iteration_after(self, step: int) -> int:
        """Iteration index t at which optimizer step `step` (0-based, counted over the run) completes."""
        epoch, j = divmod(step, self.steps_per_epoch)
        return epoch * self.iters_per_epoch + (j + 1) * self.accum - 1


class ReferenceSchedule:
    """Sets the LR of `optimizer` for each optimizer step with timm's CosineLRScheduler on an LRClock."""

    def __init__(self, optimizer: torch.optim.Optimizer, clock: LRClock, *, base_lr: float, epochs: int,
                 warmup_epochs: float, min_lr_ratio: float = 0.01):
        from timm.scheduler import CosineLRScheduler

        for group in optimizer.param_groups:
            group["lr"] = base_lr
        self.clock, self.base_lr = clock, base_lr
        self.optimizer = optimizer
        i = clock.iters_per_epoch
        self.scheduler = CosineLRScheduler(optimizer, t_initial=epochs * i, lr_min=base_lr * min_lr_ratio,
                                           warmup_t=warmup_epochs * i, warmup_lr_init=0.0, warmup_prefix=False,
                                           cycle_limit=1, t_in_epochs=False)
        self._first_lr = optimizer.param_groups[0]["lr"]  # what timm set at construction (0 with a warm-up)

    def set_for_step(self, step: int) -> float:
        """Set (and return) the LR that optimizer step `step` (0-based, counted over the run) runs at."""
        if step == 0:
            for group in self.optimizer.param_groups:
                group["lr"] = self._first_lr
        else:
            self.scheduler.step_update(self.clock.iteration_after(step - 1))
        return self.optimizer.param_groups[0]["lr"]
