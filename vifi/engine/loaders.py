"""Data loaders of the engine: how many workers, and one training loader for the whole run.

The training loader is built once per run (not per epoch): its sampler walks the remaining steps of every epoch,
so a few-shot epoch of one step does not pay for starting the workers again (docs/performance.md).
"""

from __future__ import annotations

import functools
import os

import torch
from torch.utils.data import DataLoader

from vifi.engine.workers import init_worker


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(value: int | str) -> int:
    """`auto`: the cores available to this process's share of the machine (torchrun's local world size), minus one
    for the process itself, at most 16 (the reference's count)."""
    if value != "auto":
        return int(value)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(16, available_cores() // max(local_world, 1) - 1))


class RunBatches(torch.utils.data.Sampler):
    """Micro-batches of (epoch, index) keys for one rank, from (epoch, step) to the end of the run: the epochs'
    StepBatches one after another."""

    def __init__(self, epoch_batches, start_epoch: int, start_step: int, epochs: int):
        self.epoch_batches, self.start_epoch, self.start_step, self.epochs = epoch_batches, start_epoch, start_step, epochs

    def _epochs(self):
        for epoch in range(self.start_epoch, self.epochs):
            yield self.epoch_batches(epoch, self.start_step if epoch == self.start_epoch else 0)

    def __len__(self) -> int:
        return sum(len(s) for s in self._epochs())

    def __iter__(self):
        for sampler in self._epochs():
            yield from sampler


def make_loader(dataset, *, batch_sampler=None, batch_size=None, workers: int, device: torch.device, collate_fn,
                worker_init_fn=None, start_method: str | None = None) -> DataLoader:
    """`start_method`: None forks the workers (Linux's default); "forkserver" starts them from a clean process, for
    a caller whose process runs threads that must not be forked (vifi index: LanceDB's runtime, docs/search.md)."""
    kwargs = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size,
                                                                                   "shuffle": False}
    if workers > 0:  # every worker ignores the stop signals first (vifi/engine/workers.py), then runs the caller's init
        kwargs.update(prefetch_factor=4, worker_init_fn=functools.partial(init_worker, then=worker_init_fn),
                      multiprocessing_context=start_method)
    return DataLoader(dataset, num_workers=workers, collate_fn=collate_fn, pin_memory=device.type == "cuda", **kwargs)
