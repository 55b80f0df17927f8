"""The memory estimate behind `train.checkpointing: auto` and `vifi bench memory` (vifi/model/memory.py)."""

import json
from pathlib import Path

import pytest

from vifi.errors import VifiError
from vifi.model.backbone import arch_config, build_clip
from vifi.model.memory import GIB, Shape, plan_memory, train_step_bytes

H200_ROWS = Path(__file__).parents[2] / "docs" / "bench" / "h200-2026-11-30.jsonl"


@pytest.fixture(scope="module")
def b16():
    return Shape.of(arch_config("ViT-B-16"))


def test_shape_counts_the_real_parameters():
    cfg = arch_config("tiny")
    clip = build_clip(cfg)
    shape = Shape.of(cfg)
    assert shape.image_params == sum(p.numel() for p in clip.visual.parameters())
    assert shape.image_params + shape.text_params == sum(p.numel() for p in clip.parameters())
    assert (shape.image_blocks, shape.image_tokens, shape.image_width) == (2, (64 // 16) ** 2 + 1, 64)


def test_estimate_reproduces_every_measured_h200_row(b16):
    rows = [json.loads(line) for line in H200_ROWS.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["kind"] == "train"]
    assert len(rows) >= 6
    for r in rows:
        blocks = b16.image_blocks if r["checkpointing"] is True else int(r["checkpointing"] or 0)
        est = train_step_bytes(b16, frames=r["frames"], micro_batch=r["micro_batch"], classes=r["classes"],
                               checkpoint_blocks=blocks, compiled=r["compile"]) / GIB
        assert est == pytest.approx(r["peak_mem_gib"], abs=0.25), r


def test_terms_scale_as_the_tensors_do(b16):
    base = dict(frames=32, micro_batch=8, classes=400)
    full = train_step_bytes(b16, **base)
    # a frozen text tower keeps no activations and 12 bytes less per text parameter
    image_only = train_step_bytes(b16, **base, mode="image")
    assert full - image_only > 12 * b16.text_params
    # a frozen image tower keeps no image activations: doubling the clips adds only the input frames
    text_only = [train_step_bytes(b16, frames=32, micro_batch=m, classes=400, mode="text") for m in (8, 16)]
    assert text_only[1] - text_only[0] == pytest.approx(8 * 32 * 3 * 224 ** 2 * 7)
    # each further checkpointed block saves its activations minus the bf16 input it keeps
    one, two = (train_step_bytes(b16, **base, checkpoint_blocks=n) for n in (1, 2))
    assert one - two == pytest.approx((44.3 - 2) * 8 * 32 * 197 * 768)


@pytest.mark.parametrize("arch,gib", [("ViT-B-16", 24), ("ViT-L-14", 80), ("ViT-L-14", 40), ("ViT-L-14-336", 80)])
def test_plan_checkpoints_the_fewest_blocks_that_fit(arch, gib):
    shape = Shape.of(arch_config(arch))
    plan = plan_memory(shape, device_gib=gib, frames=32, classes=400, batch=256)
    assert 256 % plan.micro_batch == 0 and plan.micro_batch % 4 == 0 and 8 <= plan.micro_batch <= 16
    need = train_step_bytes(shape, frames=32, micro_batch=plan.micro_batch, classes=400,
                            checkpoint_blocks=plan.checkpoint_blocks)
    assert need <= gib * 0.9 * GIB
    # one block fewer would not fit at any micro-batch of 8 or more
    if plan.checkpoint_blocks:
        for micro in (8, 16):
            assert train_step_bytes(shape, frames=32, micro_batch=micro, classes=400,
                                    checkpoint_blocks=plan.checkpoint_blocks - 1) > gib * 0.9 * GIB
    assert plan.checkpointing == (plan.checkpoint_blocks or False)


def test_plan_prefers_no_checkpointing_and_the_largest_micro_batch(b16):
    plan = plan_memory(b16, device_gib=80, frames=32, classes=400, batch=256)
    assert (plan.micro_batch, plan.checkpoint_blocks) == (16, 0)
    # per-device batch 24: micro-batches must divide it, in whole groups of 4 -> 12, not 16
    assert plan_memory(b16, device_gib=80, frames=32, classes=400, batch=24).micro_batch == 12


def test_plan_lowers_the_micro_batch_only_when_nothing_else_fits():
    shape = Shape.of(arch_config("ViT-L-14-336"))
    plan = plan_memory(shape, device_gib=24, frames=32, classes=400, batch=256)
    assert plan.micro_batch == 4
    assert train_step_bytes(shape, frames=32, micro_batch=8, classes=400,
                            checkpoint_blocks=shape.image_blocks) > 24 * 0.9 * GIB


def test_plan_that_cannot_fit_is_one_clear_error():
    with pytest.raises(VifiError, match="not even a micro-batch of 4 clips fits 8 GiB"):
        plan_memory(Shape.of(arch_config("ViT-L-14")), device_gib=8, frames=32, classes=400, batch=256)
    with pytest.raises(VifiError, match="divides the 6 clips"):
        plan_memory(Shape.of(arch_config("tiny")), device_gib=8, frames=8, classes=4, batch=6)
