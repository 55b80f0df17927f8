"""Attention capture and the three maps (last, rollout, relevance), each against a computation written out here."""

import copy

import pytest
import torch
import torch.nn.functional as F

from vifi.config import PromptConfig
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.prompts import Prompts
from vifi.model.vifi_clip import ViFiCLIP
from vifi.viz.attention_capture import captured_attention
from vifi.viz.attention_maps import cls_attention, relevance, rollout

GRID = TINY_CLIP["vision_cfg"]["image_size"] // TINY_CLIP["vision_cfg"]["patch_size"]


def _model(layers=2, prompt_tokens=0):
    arch = copy.deepcopy(TINY_CLIP)
    arch["vision_cfg"]["layers"] = layers
    torch.manual_seed(0)
    model = ViFiCLIP(build_clip(arch), arch, "both")
    if prompt_tokens:
        model.attach_prompts(Prompts(PromptConfig(vision_tokens=prompt_tokens, vision_depth=layers), model.clip))
    return model.eval()


def _inputs(classes=3):
    g = torch.Generator().manual_seed(1)
    videos = torch.randn(2, 3, 3, 64, 64, generator=g)
    text = torch.randn(classes, TINY_CLIP["embed_dim"], generator=g)
    return videos, text


def _block_attention(model):
    """Per block, what nn.MultiheadAttention itself returns with need_weights=True: [N, heads, L, L]."""
    blocks = model.head.visual.transformer.resblocks
    inputs = []
    handles = [b.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for b in blocks]
    return inputs, handles, blocks


def _naive_probs(model, frames):
    inputs, handles, blocks = _block_attention(model)
    try:
        with torch.no_grad():
            model.head.encode_frames(frames)
    finally:
        for h in handles:
            h.remove()
    probs = []
    for block, x in zip(blocks, inputs):
        h = block.ln_1(x)
        _, w = block.attn(h, h, h, need_weights=True, average_attn_weights=False)
        probs.append(w.detach())
    return probs


@pytest.mark.parametrize("prompt_tokens", [0, 2])
def test_capture_keeps_the_logits_and_restores_the_model(prompt_tokens):
    model = _model(prompt_tokens=prompt_tokens)
    videos, text = _inputs()
    with torch.no_grad():
        before = model.head(videos, text)
        with captured_attention(model.head.visual.transformer) as probs:
            during = model.head(videos, text)
        after = model.head(videos, text)
    assert (during - before).abs().max() <= 1e-5
    assert torch.equal(after, before)
    assert all("attention" not in b.__dict__ for b in model.head.visual.transformer.resblocks)
    length = 1 + GRID * GRID + prompt_tokens
    assert [tuple(p.shape) for p in probs] == [(6, 2, length, length)] * 2
    for ours, theirs in zip(probs, _naive_probs(model, videos.flatten(0, 1))):
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_capture_on_a_sequence_first_transformer():
    from open_clip.transformer import Transformer

    torch.manual_seed(0)
    tower = Transformer(width=32, layers=2, heads=4, batch_first=False).eval()
    x = torch.randn(3, 5, 32)  # [N, L, D]; its blocks see [L, N, D]
    mask = torch.zeros(5, 5).masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    with torch.no_grad():
        before = tower(x, attn_mask=mask)
        with captured_attention(tower) as probs:
            during = tower(x, attn_mask=mask)
    assert (during - before).abs().max() <= 1e-5
    first = tower.resblocks[0]
    h = first.ln_1(x.transpose(0, 1))
    _, w = first.attn(h, h, h, need_weights=True, average_attn_weights=False, attn_mask=mask)
    assert torch.allclose(probs[0], w, atol=1e-6)
    assert probs[0][0, 0, 0, 1:].abs().max() == 0  # the causal mask reached the softmax


def test_last_is_the_last_block_heads_averaged():
    model = _model()
    videos, _ = _inputs()
    last = _naive_probs(model, videos.flatten(0, 1))[-1].mean(dim=1)[:, 0, 1:1 + GRID * GRID]
    assert torch.allclose(cls_attention(model, videos), last.reshape(2, 3, GRID, GRID), atol=1e-6)


@pytest.mark.parametrize("prompt_tokens", [0, 2])
def test_rollout_equals_the_product_written_out(prompt_tokens):
    model = _model(prompt_tokens=prompt_tokens)
    videos, _ = _inputs()
    a1, a2 = [p.mean(dim=1) for p in _naive_probs(model, videos.flatten(0, 1))]
    eye = torch.eye(a1.shape[-1])

    def mix(a):
        m = 0.5 * a + 0.5 * eye
        return m / m.sum(dim=-1, keepdim=True)

    first = mix(a1)
    if prompt_tokens:  # block 1 replaces the prompt tokens: they carry nothing of block 0
        first[:, -prompt_tokens:] = eye[-prompt_tokens:]
    expected = (mix(a2) @ first)[:, 0, 1:1 + GRID * GRID].reshape(2, 3, GRID, GRID)
    maps = rollout(model, videos)
    assert torch.allclose(maps, expected, atol=1e-6)
    assert (maps >= 0).all() and (maps.sum(dim=(-1, -2)) <= 1 + 1e-5).all()  # rows of a product of stochastic rows


def test_relevance_of_one_block_is_the_hand_formula():
    """One block: R = I + Ā, so the map is Ā's class row, Ā = mean_h relu(∂s/∂A ⊙ A). The gradient here comes from
    the block's forward written out as a function of A (not from the capture)."""
    model = _model(layers=1)
    videos, text = _inputs(classes=4)
    video = videos[0]
    visual = model.head.visual
    block = visual.transformer.resblocks[0]
    mha = block.attn
    with torch.no_grad():
        x = visual.conv1(video).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
        x = visual.ln_pre(x)
        h = block.ln_1(x)
        _, a = mha(h, h, h, need_weights=True, average_attn_weights=False)  # [T, heads, L, L]
        v = F.linear(h, mha.in_proj_weight.chunk(3)[2], mha.in_proj_bias.chunk(3)[2])
        v = v.view(*v.shape[:2], mha.num_heads, -1).transpose(1, 2)  # [T, heads, L, d]

    def logits_of(attn):
        y = x + mha.out_proj((attn @ v).transpose(1, 2).flatten(2))
        y = y + block.mlp(block.ln_2(y))
        frames = visual.ln_post(y[:, 0]) @ visual.proj
        video_feature = F.normalize(frames.mean(dim=0), dim=-1)
        return model.head.logit_scale.exp() * video_feature @ F.normalize(text, dim=-1).t()

    leaf = a.clone().requires_grad_(True)
    scores = logits_of(leaf)
    target = int(scores.argmax())
    (grad,) = torch.autograd.grad(scores[target], leaf)
    expected = (grad * a).clamp(min=0).mean(dim=1)[:, 0, 1:1 + GRID * GRID].reshape(-1, GRID, GRID)

    maps, chosen, logits = relevance(model, video, text)
    assert torch.allclose(logits, scores.detach(), atol=1e-5)  # the written-out forward is the model's
    assert chosen == target
    assert torch.allclose(maps, expected, atol=1e-6)
    other = (target + 1) % 4
    maps_other, chosen_other, _ = relevance(model, video, text, other)
    assert chosen_other == other and not torch.allclose(maps_other, maps)  # the map explains the class asked for


@pytest.mark.parametrize("prompt_tokens", [0, 2])
def test_relevance_maps_are_finite_non_negative_and_leave_weights_alone(prompt_tokens):
    model = _model(prompt_tokens=prompt_tokens)
    model.set_train_mode("frozen")  # as viz loads checkpoints: no weight wants gradients
    videos, text = _inputs()
    maps, _, _ = relevance(model, videos[0], text)
    assert maps.shape == (3, GRID, GRID)
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.sum() > 0
    assert all(p.grad is None for p in model.parameters())
