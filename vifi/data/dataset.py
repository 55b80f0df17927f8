"""Datasets that turn an annotation list into uint8 clips, and the samplers that order them.

Every random draw of a training sample comes from numpy's Generator seeded with (seed, epoch, index): a clip is a
pure function of those three numbers, whatever the worker count, world size or resume point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vifi.data.annotations import Entry
from vifi.data.augment import draw_colour_params
from vifi.data.decoding import DecodeError, read_frames
from vifi.data.sampling import sample_train_indices, sample_view_indices
from vifi.data.spatial import test_views, train_geometry


@dataclass(frozen=True)
class ClipSpec:
    frames: int
    size: int
    backend: str = "decord"


class TrainClips(Dataset):
    """Items are addressed as (epoch, index); returns uint8 [T, S, S, 3], label, index and colour params."""

    def __init__(self, entries: list[Entry], root: str | Path, spec: ClipSpec, seed: int,
                 jitter_p: float = 0.8, gray_p: float = 0.2):
        self.entries, self.root, self.spec, self.seed = entries, Path(root), spec, seed
        self.jitter_p, self.gray_p = jitter_p, gray_p

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        t = self.spec.frames
        frames, _ = read_frames(self.root / entry.path, lambda n: sample_train_indices(n, t, rng), self.spec.backend)
        clip = train_geometry(torch.from_numpy(frames), self.spec.size, rng)
        params = {k: torch.from_numpy(np.asarray(v)) for k, v in
                  draw_colour_params(t, rng, self.jitter_p, self.gray_p).items()}
        return {"frames": clip, "label": entry.label, "index": index, "params": params}


class EvalClips(Dataset):
    """Returns uint8 [V, T, S, S, 3] with views ordered crop-major, then clip (SPEC §2.6)."""

    def __init__(self, entries: list[Entry], root: str | Path, spec: ClipSpec, clips: int = 1, crops: int = 1,
                 reference_multiclip: bool = False, seed: int = 0):
        self.entries, self.root, self.spec = entries, Path(root), spec
        self.clips, self.crops, self.reference_multiclip, self.seed = clips, crops, reference_multiclip, seed

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, index])
        t = self.spec.frames
        try:
            frames, _ = read_frames(self.root / entry.path,
                                    lambda n: sample_view_indices(n, t, self.clips, self.reference_multiclip, rng),
                                    self.spec.backend)
        except DecodeError as exc:
            # Collected, not raised: evaluation reports every failure, then refuses or (if allowed) leaves them out.
            s = self.spec.size
            blank = torch.zeros(self.clips * self.crops, t, s, s, 3, dtype=torch.uint8)
            return {"frames": blank, "label": entry.label, "index": index, "failed": str(exc)}
        frames = torch.from_numpy(frames).view(self.clips, t, *frames.shape[1:])
        per_clip = [test_views(clip, self.spec.size, self.crops) for clip in frames]  # [clip][crop]
        views = [per_clip[c][k] for k in range(self.crops) for c in range(self.clips)]
        return {"frames": torch.stack(views), "label": entry.label, "index": index, "failed": ""}


class StepBatches(torch.utils.data.Sampler):
    """Micro-batches of (epoch, index) keys for one rank, step after step, from a given (epoch, step) on.

    Global step s of epoch e takes videos order_e[s*G:(s+1)*G], where order_e is a permutation seeded by (seed, e),
    extended by repetition of its start when `steps_per_epoch` needs more videos than there are (the reference's
    DistributedSampler pads to a multiple of its GPU count the same way). Rank r takes its contiguous share and cuts
    it into micro-batches. Videos left over at the end of an epoch are not used, as in the reference. The union over
    ranks of a step's micro-batches is the same whatever the world size or micro-batch.
    """

    def __init__(self, num_videos: int, global_batch: int, micro_batch: int, seed: int, epoch: int,
                 start_step: int = 0, rank: int = 0, world: int = 1, steps_per_epoch: int | None = None):
        if global_batch % (micro_batch * world):
            raise ValueError("global batch must be a multiple of micro_batch × world size")
        self.n, self.g, self.m = num_videos, global_batch, micro_batch
        self.seed, self.epoch, self.start_step, self.rank, self.world = seed, epoch, start_step, rank, world
        self.steps = num_videos // global_batch if steps_per_epoch is None else steps_per_epoch

    @property
    def steps_per_epoch(self) -> int:
        return self.steps

    @property
    def micro_per_step(self) -> int:
        return self.g // (self.m * self.world)

    def __len__(self) -> int:
        return max(self.steps_per_epoch - self.start_step, 0) * self.micro_per_step

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=gen).tolist()
        need = self.steps_per_epoch * self.g
        order = perm * (need // self.n) + perm[:need % self.n] if need > self.n else perm
        share = self.g // self.world
        for step in range(self.start_step, self.steps_per_epoch):
            mine = order[step * self.g + self.rank * share: step * self.g + (self.rank + 1) * share]
            for j in range(0, share, self.m):
                yield [(self.epoch, i) for i in mine[j:j + self.m]]


def collate(items: list[dict]) -> dict:
    out = {
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }
    if "frames" in items[0]:
        out["frames"] = torch.stack([it["frames"] for it in items])
    else:  # GPU decode backends: the clips' plans, decoded on the device (vifi/data/device_decode.py)
        out["plans"] = [it["plan"] for it in items]
    if "failed" in items[0]:
        out["failed"] = [it["failed"] for it in items]
    if "params" in items[0]:
        out["params"] = {k: torch.stack([it["params"][k] for it in items]) for k in items[0]["params"]}
    return out
