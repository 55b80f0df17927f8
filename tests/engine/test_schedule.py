import math

import pytest

from vifi.engine.schedule import StepLR, reference_lr


def test_reference_formula_hand_values():
    lr, w, tt, lo = 1.0, 50, 100, 0.01
    assert reference_lr(0, lr, w, tt, lo) == 0.0
    assert reference_lr(25, lr, w, tt, lo) == pytest.approx(0.5)
    # right after warm-up t is NOT shifted: cos(pi*50/100) = 0 -> lo + (1-lo)/2
    assert reference_lr(50, lr, w, tt, lo) == pytest.approx(0.505)
    assert reference_lr(75, lr, w, tt, lo) == pytest.approx(lo + 0.5 * (1 - lo) * (1 + math.cos(math.pi * 0.75)))
    assert reference_lr(100, lr, w, tt, lo) == lo
    assert reference_lr(150, lr, w, tt, lo) == lo


@pytest.mark.parametrize("epochs,drop", [(10, 0.505), (11, 0.575), (30, 0.934), (50, 0.976)])
def test_post_warmup_drop_matches_spec(epochs, drop):
    # SPEC §3.3: at the end of 5 warm-up epochs the LR falls to LR*(0.01 + 0.495(1+cos(pi*5/E)))
    assert reference_lr(5.0, 1.0, 5.0, float(epochs), 0.01) == pytest.approx(drop, abs=5e-4)


def test_step_lr_in_iteration_units():
    # 4 steps/epoch of 2 micro-batches: I = 8 iterations/epoch, W = 8 (1 epoch), Tt = 16 (2 epochs)
    sched = StepLR(base_lr=1.0, epochs=2, warmup_epochs=1, steps_per_epoch=4, accum=2, min_lr_ratio=0.01)
    assert sched(0) == 0.0  # first step at lr 0
    assert sched(1) == pytest.approx(1 / 8)  # completed at micro-iteration t=1
    assert sched(2) == pytest.approx(3 / 8)
    assert sched(4) == pytest.approx(7 / 8)
    # step 5: the previous step (epoch 1, idx 0) completed at t = 8 + 1 = 9
    assert sched(5) == pytest.approx(0.01 + 0.495 * (1 + math.cos(math.pi * 9 / 16)))
