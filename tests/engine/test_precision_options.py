"""Opt-in speed options: train.precision fp8 is refused in one line without a GPU (and torchao); train.attention
mha puts open_clip's own attention back (the packed path's baseline, vifi/model/attention.py)."""

import subprocess
import sys

import pytest

from vifi.errors import VifiError


def test_fp8_refused_without_a_gpu():
    from vifi.engine.runtime import setup_runtime

    with pytest.raises(VifiError, match=r"fp8 needs a CUDA GPU"):
        setup_runtime("cpu", "fp8")


def test_fp8_finetune_refused_in_one_line_before_any_work(demo_data, tmp_path):
    from tests.conftest import finetune_demo_args

    out = tmp_path / "run"
    args = finetune_demo_args(demo_data, str(out), train__precision="fp8")
    proc = subprocess.run([sys.executable, "-m", "vifi", *args, "--device", "cpu"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train.precision fp8 needs a CUDA GPU"), proc.stderr
    assert not out.exists()


def test_attention_mha_switches_the_trainer_back_to_open_clips_blocks(demo_data, tmp_path, tiny_model):
    from open_clip.transformer import ResidualAttentionBlock

    from tests.engine.test_guards import _trainer

    model = tiny_model
    assert all(type(b) is not ResidualAttentionBlock for b in model.modules())
    assert _trainer(demo_data, tmp_path, model).engine.attention == "auto"
    trainer = _trainer(demo_data, tmp_path, model, sets=["train.attention=mha"])
    blocks = [b for b in model.modules() if isinstance(b, ResidualAttentionBlock)]
    assert blocks and all(type(b) is ResidualAttentionBlock for b in blocks)
    assert trainer.engine.attention == "mha"
