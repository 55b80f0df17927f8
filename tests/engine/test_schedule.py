"""The reference LR clock (docs/design.md "LR clock"): timm's CosineLRScheduler stepped in iterations of the
paper's 8-GPU setup, whatever the user's GPU count; values hand-computed from the formula."""

import math

import pytest
import torch

from vifi.config import load_config
from vifi.data.dataset import StepBatches
from vifi.engine.schedule import LRClock, ReferenceSchedule
from vifi.engine.train import lr_clock


def _cosine(t, lr, w, tt, lo):
    if t < w:
        return lr * t / w
    if t >= tt:
        return lo
    return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * t / tt))


def _schedule(recipe: str, n_videos: int):
    cfg = load_config(recipe)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    clock = lr_clock(cfg, n_videos)
    t = cfg.train
    return cfg, clock, ReferenceSchedule(opt, clock, base_lr=t.lr, epochs=t.epochs, warmup_epochs=t.warmup_epochs,
                                         min_lr_ratio=t.min_lr_ratio)


def test_fewshot_hmdb_k2_clock_and_hand_values():
    # HMDB K=2: 102 videos on 8 GPUs of 4 -> ceil(102/8)=13 per GPU, 3 iterations per epoch (1 left over),
    # accumulation 64/(8*4)=2 -> 1 optimizer step per epoch; W = 5*3 = 15, Tt = 50*3 = 150 iterations.
    cfg, clock, sched = _schedule("fewshot-hmdb51", 102)
    assert (clock.iters_per_epoch, clock.accum, clock.steps_per_epoch) == (3, 2, 1)
    lr, lo = 2e-6, 2e-8
    assert sched.set_for_step(0) == 0.0  # the first step runs at LR 0
    assert sched.set_for_step(1) == pytest.approx(lr * 1 / 15)  # step 0 completed at iteration 0*3 + 2 - 1 = 1
    assert sched.set_for_step(5) == pytest.approx(lr * 13 / 15)  # iteration 4*3 + 1 = 13
    # end of warm-up: step 6 follows iteration 16 >= 15, cosine not shifted
    assert sched.set_for_step(6) == pytest.approx(lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * 16 / 150)))
    assert sched.set_for_step(25) == pytest.approx(lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * 73 / 150)))
    # The old clock (optimizer steps x accumulation, leftovers dropped: I = 2) gave a different LR at step 1
    assert sched.set_for_step(1) != pytest.approx(lr * 1 / 10)


def test_base_to_novel_ucf_clock_and_hand_values():
    # UCF base-to-novel: 816 videos -> 102 per GPU, 25 iterations per epoch (2 videos left over), A = 2,
    # 12 steps per epoch (1 iteration left over); W = 125, Tt = 11*25 = 275.
    cfg, clock, sched = _schedule("b2n-ucf101", 816)
    assert (clock.iters_per_epoch, clock.accum, clock.steps_per_epoch) == (25, 2, 12)
    lr, lo = 2e-6, 2e-8
    assert sched.set_for_step(0) == 0.0
    assert sched.set_for_step(1) == pytest.approx(lr * 1 / 125)
    # step 12 is the first of epoch 1: the previous step (epoch 0, j=11) completed at iteration 23
    assert sched.set_for_step(12) == pytest.approx(lr * 23 / 125)
    assert sched.set_for_step(13) == pytest.approx(lr * 26 / 125)  # epoch 1, j=0: 25 + 1
    # end of warm-up (W = 125): step 61 follows step 60 = epoch 5, j = 0, completed at iteration 126
    assert sched.set_for_step(61) == pytest.approx(lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * 126 / 275)))
    assert sched.set_for_step(100) == pytest.approx(_cosine(8 * 25 + 3 * 2 + 1, lr, 125, 275, lo))


def test_k400_clock_is_the_paper_setup_whatever_the_user_runs_on():
    # Schedule values depend only on the recipe and the list length, never on GPUs or micro-batch of this run.
    cfg = load_config("k400", ["train.micro_batch=16"])
    clock = lr_clock(cfg, 240_000)
    assert (clock.gpus, clock.gpu_batch, clock.accum) == (8, 4, 8)
    assert clock.iters_per_epoch == 240_000 // 8 // 4


def test_timm_scheduler_values_equal_the_formula_at_every_step():
    cfg, clock, sched = _schedule("fewshot-hmdb51", 204)  # K=4
    t = cfg.train
    i = clock.iters_per_epoch
    for step in range(1, t.epochs * clock.steps_per_epoch):
        it = clock.iteration_after(step - 1)
        assert sched.set_for_step(step) == pytest.approx(_cosine(it, t.lr, 5 * i, t.epochs * i, t.lr / 100), rel=1e-12)


def test_without_a_clock_setup_one_iteration_is_one_optimizer_step():
    clock = LRClock(100, 12)
    assert (clock.iters_per_epoch, clock.accum, clock.steps_per_epoch) == (8, 1, 8)
    assert [clock.iteration_after(s) for s in (0, 7, 8)] == [0, 7, 8]


def test_epoch_padded_like_the_reference_sampler():
    # 127 videos, 8 GPUs of 4, global 64: the reference pads to 128 = 16 per GPU -> 4 iterations -> 2 steps,
    # where ⌊127/64⌋ would give 1. The padded epoch repeats the start of the permutation.
    clock = LRClock(127, 64, 8, 4)
    assert clock.steps_per_epoch == 2
    batches = list(StepBatches(127, 64, 16, seed=0, epoch=0, steps_per_epoch=clock.steps_per_epoch))
    keys = [i for b in batches for _, i in b]
    assert len(keys) == 128 and sorted(set(keys)) == list(range(127))
    assert len(StepBatches(127, 64, 16, seed=0, epoch=0, steps_per_epoch=2)) == 8
