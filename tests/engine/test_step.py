"""The optimizer step (vifi.engine.step): one host read per step from vifi's own code, streaming micro-batches
equal to one big batch, partial activation checkpointing equal to none."""

import sys
from pathlib import Path

import torch

import vifi
from vifi.bench.model import synthetic_host_batch
from vifi.data.mixup import MixSettings
from vifi.engine.runtime import setup_runtime
from vifi.engine.step import StepEngine

VIFI_DIR = str(Path(vifi.__file__).parent)
READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


def _engine(model, accum=2, micro=4):
    rt = setup_runtime("cpu", "fp32")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    tokens = model.tokenize([f"a photo of a class {i}." for i in range(5)])
    mix = MixSettings(0.8, 1.0, 0.5, 0.1, group=4)
    return StepEngine(model, model.head, opt, rt, mix=mix, num_classes=5, seed=0, local_batch=accum * micro,
                      accum=accum, tokens=tokens)


def test_one_host_read_per_step_from_vifi_code(tiny_model, monkeypatch):
    engine = _engine(tiny_model)
    batches = [synthetic_host_batch(4, 2, 64, 5, torch.device("cpu"), seed=s) for s in range(2)]
    calls = []
    for name in READS:
        real = getattr(torch.Tensor, name)

        def spy(self, *a, _real=real, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(VIFI_DIR):
                calls.append((_name, caller, sys._getframe(1).f_lineno))
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)
    result = engine.run(iter(batches), step=0)
    monkeypatch.undo()
    assert result.finite
    assert [c[0] for c in calls] == ["tolist"], calls  # the loss + finite flag, read together once


def test_partial_checkpointing_gives_the_same_gradients_and_leaves_text_alone(tiny_model):
    from vifi.model.grad_checkpoint import checkpoint_image_blocks

    videos = torch.randn(2, 2, 3, 64, 64)
    tokens = tiny_model.tokenize(["a photo of a cat.", "a photo of a dog."])

    def grads():
        tiny_model.zero_grad(set_to_none=True)
        tiny_model(videos, tokens).logsumexp(-1).sum().backward()
        return {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}

    plain = grads()
    n = checkpoint_image_blocks(tiny_model, 1)
    blocks = list(tiny_model.clip.visual.transformer.resblocks)
    assert n == 1 and hasattr(blocks[0], "_vifi_plain_forward") and not hasattr(blocks[1], "_vifi_plain_forward")
    assert not any(hasattr(b, "_vifi_plain_forward") for b in tiny_model.clip.transformer.resblocks)
    names_before = list(tiny_model.state_dict())
    checked = grads()
    assert list(tiny_model.state_dict()) == names_before  # checkpoints keep their keys
    for k in plain:
        torch.testing.assert_close(checked[k], plain[k], rtol=0, atol=0)
    assert checkpoint_image_blocks(tiny_model, 0) == 0
    assert not any(hasattr(b, "_vifi_plain_forward") for b in blocks)
