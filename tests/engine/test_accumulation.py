"""One optimizer step over micro-batches equals one batch of the global size; text run once equals per batch."""

import copy

import torch

from vifi.data.mixup import smooth_one_hot, soft_target_cross_entropy
from vifi.engine.runtime import Runtime
from vifi.engine.train import accumulate_step_gradients
from vifi.model.vifi_clip import class_prompts

CPU = Runtime(device=torch.device("cpu"), precision="fp32")
NAMES = ["red circle", "blue square", "green triangle"]


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _batch(n=4, t=2):
    g = torch.Generator().manual_seed(0)
    videos = torch.randn(n, t, 3, 64, 64, generator=g)
    targets = smooth_one_hot(torch.tensor([0, 1, 2, 1])[:n], 3, 0.1)
    return videos, targets


def test_accumulated_micro_batches_equal_one_global_batch(tiny_model):
    videos, targets = _batch()
    tokens = tiny_model.tokenize(class_prompts(NAMES, "a photo of a {}."))
    naive = copy.deepcopy(tiny_model)
    # naive: the whole batch at once, text recomputed inside the forward
    loss = soft_target_cross_entropy(naive(videos, tokens), targets)
    loss.backward()
    expected = _grads(naive)
    # ours: 2 micro-batches of 2, text once per step through a detached leaf
    total = accumulate_step_gradients(tiny_model, tiny_model.head,
                                      [(videos[:2], targets[:2]), (videos[2:], targets[2:])], tokens, None, CPU,
                                      local_batch=4)
    got = _grads(tiny_model)
    assert set(got) == set(expected)
    assert "clip.transformer.resblocks.0.attn.in_proj_weight" in got and "clip.visual.conv1.weight" in got
    torch.testing.assert_close(total, loss.detach(), rtol=1e-5, atol=1e-6)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_text_once_per_step_equals_text_per_micro_batch(tiny_model):
    videos, targets = _batch()
    tokens = tiny_model.tokenize(class_prompts(NAMES, "a photo of a {}."))
    naive = copy.deepcopy(tiny_model)
    for sl in (slice(0, 2), slice(2, 4)):  # the reference: text tower inside every micro-batch forward
        (soft_target_cross_entropy(naive(videos[sl], tokens), targets[sl]) * 0.5).backward()
    expected = _grads(naive)
    accumulate_step_gradients(tiny_model, tiny_model.head, [(videos[:2], targets[:2]), (videos[2:], targets[2:])],
                              tokens, None, CPU, local_batch=4)
    got = _grads(tiny_model)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_frozen_text_gets_no_gradient_and_uses_cache(tiny_model):
    tiny_model.set_train_mode("image")
    videos, targets = _batch()
    tokens = tiny_model.tokenize(class_prompts(NAMES, "a photo of a {}."))
    with torch.no_grad():
        cached = tiny_model.encode_text(tokens)
    accumulate_step_gradients(tiny_model, tiny_model.head, [(videos, targets)], tokens, cached, CPU, local_batch=4)
    got = _grads(tiny_model)
    assert got and all(n.startswith("clip.visual.") for n in got)
