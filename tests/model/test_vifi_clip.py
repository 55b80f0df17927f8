import pytest
import torch
import torch.nn.functional as F

from vifi.model.vifi_clip import ViFiCLIP, class_prompts

NAMES = ["brush hair", "ApplyEyeMakeup", "Holding something next to something", "a"]


def test_truncated_text_equals_full_77_token_run(tiny_model):
    tokens = tiny_model.tokenize(class_prompts(NAMES, "a photo of a {}."))
    with torch.no_grad():
        full = tiny_model.encode_text(tokens, truncate=False)
        short = tiny_model.encode_text(tokens, truncate=True)
        reference = tiny_model.clip.encode_text(tokens)  # open_clip's own 77-token path
    torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, reference, rtol=1e-5, atol=1e-5)


def test_video_forward_is_mean_of_unnormalised_frame_features_then_cosine(tiny_model):
    torch.manual_seed(1)
    videos = torch.randn(2, 3, 3, 64, 64)
    tokens = tiny_model.tokenize(class_prompts(NAMES, "a photo of a {}."))
    with torch.no_grad():
        logits = tiny_model(videos, tokens)
        frames = torch.stack([tiny_model.clip.encode_image(videos[:, t]) for t in range(3)], 1)
        video = F.normalize(frames.mean(1), dim=-1)
        text = F.normalize(tiny_model.clip.encode_text(tokens), dim=-1)
        naive = tiny_model.clip.logit_scale.exp() * video @ text.t()
    torch.testing.assert_close(logits, naive, rtol=1e-4, atol=1e-4)


def test_vanilla_prompts_are_bare_names():
    assert class_prompts(["brush hair"], None) == ["brush hair"]
    assert class_prompts(["brush hair"], "a photo of a {}.") == ["a photo of a brush hair."]


@pytest.mark.parametrize("mode,expect_visual,expect_text,expect_scale", [
    ("both", True, True, True), ("image", True, False, False), ("text", False, True, False),
    ("frozen", False, False, False)])
def test_train_modes_select_parameters(tiny_model, mode, expect_visual, expect_text, expect_scale):
    tiny_model.set_train_mode(mode)
    named = dict(tiny_model.clip.named_parameters())
    assert named["visual.conv1.weight"].requires_grad is expect_visual
    assert named["transformer.resblocks.0.attn.in_proj_weight"].requires_grad is expect_text
    assert named["text_projection"].requires_grad is expect_text
    assert named["logit_scale"].requires_grad is expect_scale
    assert named["token_embedding.weight"].requires_grad is False
