"""The packed-QKV SDPA attention (vifi/model/attention.py) computes what open_clip's nn.MultiheadAttention does."""

import copy
import pickle

import open_clip
import pytest
import torch

from vifi.model.attention import sdpa_backend, use_packed_attention
from vifi.model.backbone import TINY_CLIP, build_clip


def _pair(cfg=TINY_CLIP):
    torch.manual_seed(0)
    theirs = open_clip.CLIP(**copy.deepcopy(cfg))
    ours = build_clip(cfg)
    missing, unexpected = ours.load_state_dict(theirs.state_dict(), strict=True)
    assert not missing and not unexpected
    return theirs, ours


def test_same_parameter_names_and_blocks_switched():
    theirs, ours = _pair()
    assert list(dict(ours.named_parameters())) == list(dict(theirs.named_parameters()))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    switched = [type(b).__name__ for b in ours.modules() if type(b).__name__.startswith("Packed")]
    assert len(switched) == TINY_CLIP["vision_cfg"]["layers"] + TINY_CLIP["text_cfg"]["layers"]
    assert use_packed_attention(ours) == 0  # already switched: nothing more to do
    assert type(pickle.loads(pickle.dumps(ours.visual.transformer.resblocks[0]))) is type(
        ours.visual.transformer.resblocks[0])


@pytest.mark.parametrize("train", [False, True])
def test_image_and_text_features_and_logits_equal_open_clip_fp32(train):
    theirs, ours = _pair()
    theirs.train(train), ours.train(train)  # train: MHA's slow path (the one training takes); eval: its fast path
    torch.manual_seed(1)
    images = torch.randn(3, 3, 64, 64)
    tokens = open_clip.tokenize(["a photo of a dog.", "a photo of a red circle sliding across."])
    for a, b in ((theirs.encode_image(images), ours.encode_image(images)),
                 (theirs.encode_text(tokens), ours.encode_text(tokens))):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    img_a, txt_a, scale_a = theirs(images, tokens)[:3]
    img_b, txt_b, scale_b = ours(images, tokens)[:3]
    torch.testing.assert_close(scale_b * img_b @ txt_b.t(), scale_a * img_a @ txt_a.t(), rtol=0, atol=1e-6)


def test_gradients_equal_open_clip_fp32():
    theirs, ours = _pair()
    theirs.train(), ours.train()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    tokens = open_clip.tokenize(["a photo of a dog.", "a cat"])
    for model in (theirs, ours):
        img, txt, scale = model(images, tokens)[:3]
        (scale * img @ txt.t()).logsumexp(-1).sum().backward()
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-5, atol=1e-6, msg=name)


def test_vifi_logits_with_deep_prompts_equal_the_multihead_attention_path():
    """Deep vision and language prompts run the blocks one by one (vifi/model/prompts.py): same logits as with the
    blocks switched back to open_clip's own class."""
    from open_clip.transformer import ResidualAttentionBlock

    from vifi.config import PromptConfig
    from vifi.model.prompts import Prompts
    from vifi.model.vifi_clip import ViFiCLIP

    torch.manual_seed(3)
    clip = build_clip(TINY_CLIP)
    pcfg = PromptConfig(vision_tokens=2, text_tokens=2, vision_depth=2, text_depth=2)
    model = ViFiCLIP(clip, TINY_CLIP, "frozen", prompts=Prompts(pcfg, clip))
    with torch.no_grad():
        for p in model.prompts.parameters():
            p.normal_()  # non-zero prompts, so that they matter
    model.eval()
    videos = torch.randn(2, 3, 3, 64, 64)
    tokens = model.tokenize(["a photo of a dog.", "a cat"])
    with torch.no_grad():
        ours = model(videos, tokens)
        for block in model.modules():
            if type(block).__name__ == "PackedResidualAttentionBlock":
                block.__class__ = ResidualAttentionBlock
        theirs = model(videos, tokens)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_attention_capture_still_reads_probabilities_and_restores_the_block():
    from vifi.viz.attention_capture import captured_attention

    _, ours = _pair()
    block = ours.visual.transformer.resblocks[0]
    images = torch.randn(1, 3, 64, 64)
    plain = ours.encode_image(images)
    with captured_attention(ours.visual.transformer) as store:
        captured = ours.encode_image(images)
    assert len(store) == TINY_CLIP["vision_cfg"]["layers"]
    torch.testing.assert_close(store[0].sum(-1), torch.ones_like(store[0].sum(-1)))
    torch.testing.assert_close(captured, plain, rtol=0, atol=1e-6)
    assert "attention" not in block.__dict__ and type(block).__name__ == "PackedResidualAttentionBlock"


@pytest.mark.parametrize("name", ["auto", "math"])
def test_sdpa_backend_choice_gives_the_same_features_on_cpu(name):
    _, ours = _pair()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = ours.encode_image(images)
        with sdpa_backend(name):
            got = ours.encode_image(images)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
