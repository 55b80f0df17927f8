"""Weight-space ensembling (vifi/model/merge.py): the ends are the two models exactly, the middle is the mean of
the weights, incompatible models and bad α are refused, and the merged file carries B's facts plus its origin."""

import copy

import pytest
import torch

from vifi.errors import VifiError
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.checkpoint import read_facts, save_weights
from vifi.model.facts import CheckpointFacts, plain_clip
from vifi.model.merge import (Side, WeightEnsemble, alpha_label, check_compatible, interpolate, load_side,
                              merged_facts, parse_alphas)
from vifi.model.vifi_clip import ViFiCLIP


def _tiny(seed: int, arch=TINY_CLIP) -> ViFiCLIP:
    torch.manual_seed(seed)
    return ViFiCLIP(build_clip(copy.deepcopy(arch)), copy.deepcopy(arch), "frozen").eval()


def _side(seed: int, arch=TINY_CLIP, **facts) -> Side:
    model = _tiny(seed, arch)
    record = CheckpointFacts(arch=model.arch, train_mode="both", path=f"/ckpt/{seed}", **facts) if facts else \
        plain_clip(model.arch)
    return Side(model, record, f"/ckpt/{seed}", f"{seed:064x}")


@pytest.fixture
def inputs():
    torch.manual_seed(123)
    videos = torch.randn(2, 3, 3, 64, 64)
    tokens = _tiny(0).tokenize(["a photo of a red ball.", "a photo of a blue cube.", "a photo of a cone."])
    return videos, tokens


def test_alpha_0_gives_a_and_alpha_1_gives_b_logits_exactly(inputs):
    videos, tokens = inputs
    reference_a, reference_b = _tiny(0), _tiny(1)  # the same weights as the two ends, built independently
    ensemble = WeightEnsemble(_side(0), _side(1))
    with torch.no_grad():
        want_a, want_b = reference_a(videos, tokens), reference_b(videos, tokens)
        assert not torch.allclose(want_a, want_b)  # the two ends really differ
        assert torch.equal(ensemble.set_alpha(0.0)(videos, tokens), want_a)
        assert torch.equal(ensemble.set_alpha(1.0)(videos, tokens), want_b)
        assert torch.equal(ensemble.set_alpha(0.0)(videos, tokens), want_a)  # B's own weights were not lost


def test_alpha_half_is_the_elementwise_mean_of_the_weights():
    a, b = _tiny(0).clip.state_dict(), _tiny(1).clip.state_dict()
    ensemble = WeightEnsemble(_side(0), _side(1))
    merged = ensemble.set_alpha(0.5).clip.state_dict()
    for key in b:
        mean64 = (a[key].double() + b[key].double()) / 2
        # 0.5·a and 0.5·b are exact in float32 (a power-of-two scaling) and their sum is rounded once, so the merge
        # is the float64 mean rounded to float32: bit-equal, and within half a float32 ulp of the exact mean.
        assert torch.equal(merged[key], mean64.float()), key
        ulp = torch.finfo(torch.float32).eps * mean64.abs().clamp(min=torch.finfo(torch.float32).tiny)
        assert ((merged[key].double() - mean64).abs() <= ulp / 2).all(), key


def test_the_same_model_twice_gives_it_back_at_every_alpha():
    own = _tiny(0).clip.state_dict()
    ensemble = WeightEnsemble(_side(0), _side(0))
    for alpha in (0.0, 0.3, 0.5, 1.0):
        merged = ensemble.set_alpha(alpha).clip.state_dict()
        assert all(torch.allclose(merged[k], own[k], rtol=1e-6, atol=0) for k in own), alpha
    assert all(torch.equal(ensemble.set_alpha(0.5).clip.state_dict()[k], own[k]) for k in own)  # 0.5a + 0.5a = a


def test_interpolate_at_a_quarter_by_hand():
    a, b = torch.tensor([0.0, 4.0, -8.0]), torch.tensor([8.0, 0.0, 8.0])
    assert interpolate(a, b, 0.25).tolist() == [2.0, 3.0, -4.0]


def test_different_architectures_are_refused_naming_the_first_mismatch():
    wider = copy.deepcopy(TINY_CLIP)
    wider["text_cfg"]["width"] = 32
    with pytest.raises(VifiError, match=r"different architectures: '.*' is \(.*\) in A and \(.*\) in B"):
        check_compatible(_side(0), _side(1, wider))
    gelu = copy.deepcopy(TINY_CLIP)
    gelu["quick_gelu"] = False  # same shapes, another activation
    with pytest.raises(VifiError, match="same tensor shapes but quick_gelu is True in A and False in B"):
        check_compatible(_side(0), _side(1, gelu))
    spelled_out = copy.deepcopy(TINY_CLIP)
    spelled_out["vision_cfg"]["mlp_ratio"] = 4.0  # open_clip's default written out: the same model
    check_compatible(_side(0), _side(1, spelled_out))


def test_alphas_parse_in_order_and_bad_values_are_refused():
    assert parse_alphas("0, 0.25,1") == [0.0, 0.25, 1.0]
    assert [alpha_label(a) for a in (0.0, 0.25, 1.0, 1e-05)] == ["0", "0.25", "1", "1e-05"]
    for text, message in (("half", "'half' is not a number"), ("1.5", r"^--wise-ft '1.5': α 1.5 is outside \[0, 1\]"),
                          ("-0.1", r"α -0.1 is outside"), ("nan", r"α nan is outside"),
                          ("0.5,0.50", "given twice"), ("0,,1", "'' is not a number")):
        with pytest.raises(VifiError, match=message):
            parse_alphas(text)


def test_merged_file_has_b_facts_and_its_origin(tmp_path, capsys):
    a = _side(0, frames=8, template="a video of {}.")
    b = _side(1, frames=4, input_size=64, template="a photo of a {}.", class_names=["x", "y"])
    facts = merged_facts(a, b, 0.25)
    err = capsys.readouterr().err
    assert err.count("notice:") == 1 and "B's are kept" in err and "frames 4 (B) vs 8 (A)" in err
    ensemble = WeightEnsemble(a, b)
    save_weights(tmp_path / "m.safetensors", ensemble.set_alpha(0.25), facts)
    back = read_facts(tmp_path / "m.safetensors")
    assert (back.frames, back.template, back.class_names, back.train_mode) == (4, "a photo of a {}.", ("x", "y"),
                                                                               "both")
    assert back.merged_from == {"alpha": 0.25, "a": "/ckpt/0", "a_sha256": f"{0:064x}", "b": "/ckpt/1",
                                "b_sha256": f"{1:064x}"}
    merged_facts(_side(0), b, 0.5)  # plain CLIP as A: nothing it was trained with, so no notice
    assert "notice" not in capsys.readouterr().err


def test_load_side_tells_checkpoints_from_clip_weights_and_refuses_prompt_artifacts(tmp_path):
    from safetensors.torch import save_file

    from vifi.config import PromptConfig
    from vifi.model.checkpoint import add_prompts

    model = _tiny(0)
    save_weights(tmp_path / "ckpt.safetensors", model, {"frames": 4})
    save_file({k: v.contiguous() for k, v in model.clip.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    as_checkpoint = load_side(str(tmp_path / "ckpt.safetensors"), "A")
    assert as_checkpoint.facts.frames == 4 and as_checkpoint.facts.is_checkpoint and len(as_checkpoint.sha256) == 64
    as_clip = load_side(str(tmp_path / "plain.safetensors"), "A")
    assert not as_clip.facts.is_checkpoint  # plain CLIP weights: the paper's zero-shot defaults
    assert torch.equal(as_clip.model.clip.visual.conv1.weight, model.clip.visual.conv1.weight)
    add_prompts(model, PromptConfig(vision_tokens=2, vision_depth=1, text_tokens=2, text_depth=1),
                tmp_path / "ckpt.safetensors")
    model.set_train_mode("prompt")
    save_weights(tmp_path / "prompts.safetensors", model, {"frames": 4})
    with pytest.raises(VifiError, match="B .*prompts.safetensors holds deep prompts.*their base"):
        load_side(str(tmp_path / "prompts.safetensors"), "B")


def test_a_paper_release_and_the_clip_it_came_from_are_told_apart_and_merged(tmp_path, inputs):
    """The usual WiSE-FT pair with a paper release: B = the .pth (+ --clip for its token table), A = that CLIP."""
    from tests.model.test_paper_import import OAI_TINY, save_paper_checkpoint
    from vifi.model.checkpoint import build_from_checkpoint

    videos, tokens = inputs
    zero_shot, fine_tuned = _tiny(0, OAI_TINY), _tiny(1, OAI_TINY)
    fine_tuned.clip.token_embedding.load_state_dict(zero_shot.clip.token_embedding.state_dict())  # never trained
    torch.save(zero_shot.clip.state_dict(), tmp_path / "clip.pt")
    save_paper_checkpoint(tmp_path / "release.pth", fine_tuned)
    a = load_side(str(tmp_path / "clip.pt"), "A", clip=str(tmp_path / "clip.pt"))
    b = load_side(str(tmp_path / "release.pth"), "B", clip=str(tmp_path / "clip.pt"))
    assert not a.facts.is_checkpoint and b.facts.is_checkpoint and b.source.endswith("release.pth")
    release, _ = build_from_checkpoint(tmp_path / "release.pth", clip=str(tmp_path / "clip.pt"))
    ensemble = WeightEnsemble(a, b)
    with torch.no_grad():
        assert torch.equal(ensemble.set_alpha(1.0)(videos, tokens), release.eval()(videos, tokens))
        assert torch.equal(ensemble.set_alpha(0.0)(videos, tokens), zero_shot(videos, tokens))
