"""Paper `.pth` releases: loaded without running pickled code, same logits as the model they were saved from."""

import copy
import os
import subprocess
import sys
import types

import pytest
import torch

from vifi.config import PromptConfig
from vifi.errors import VifiError
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.checkpoint import build_from_checkpoint
from vifi.model.prompts import Prompts
from vifi.model.vifi_clip import ViFiCLIP, class_prompts

NAMES = ["climbing stairs", "ApplyEyeMakeup", "pour"]
# OpenAI's convention (64-wide heads) is what lets a loader read the architecture off the shapes.
OAI_TINY = copy.deepcopy(TINY_CLIP)
OAI_TINY["vision_cfg"]["head_width"] = 64
OAI_TINY["text_cfg"]["heads"] = 1


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return ViFiCLIP(build_clip(OAI_TINY), copy.deepcopy(OAI_TINY), "both")


class _FakeCfgNode(dict):
    """Pickled under the name yacs.config.CfgNode, as the paper's checkpoints hold one."""


def _with_fake_yacs(fn):
    mod_pkg, mod = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    mod.CfgNode = _FakeCfgNode
    _FakeCfgNode.__module__, _FakeCfgNode.__qualname__ = "yacs.config", "CfgNode"
    sys.modules["yacs"], sys.modules["yacs.config"] = mod_pkg, mod
    try:
        return fn()
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]


def paper_layout(model: ViFiCLIP, n_classes: int = 3) -> dict:
    """The model's weights under the reference's names, DDP prefix and class-specific buffers included."""
    state = {}
    for key, value in model.clip.state_dict().items():
        if key.startswith("visual."):
            state["image_encoder." + key.removeprefix("visual.")] = value
        elif key == "logit_scale":
            state[key] = value
        elif key != "token_embedding.weight" and key != "attn_mask":
            state["text_encoder." + key] = value
    width = model.clip.ln_final.weight.shape[0]
    state["prompt_learner.complete_text_embeddings"] = torch.randn(n_classes, 77, width)
    if model.prompts is not None:
        p = model.prompts
        state["prompt_learner.ctx"] = p.text.tokens.detach()
        state["prompt_learner.token_prefix"] = torch.randn(n_classes, 1, width)
        state["prompt_learner.token_suffix"] = torch.randn(n_classes, 76 - p.text.n_tokens, width)
        state["image_encoder.VPT"] = p.vision.tokens.detach()
        for i, t in enumerate(p.vision.deep, start=1):
            state[f"image_encoder.transformer.resblocks.{i}.VPT_shallow"] = t.detach()
        for i, t in enumerate(p.text.deep, start=1):
            state[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"] = t.detach()
    return {"module." + k: v.clone() for k, v in state.items()}


def save_paper_checkpoint(path, model, extra=None):
    def save():
        cfg = _FakeCfgNode(TRAINER=_FakeCfgNode(ViFi_CLIP=_FakeCfgNode(N_CTX_TEXT=16)))
        cfg.__dict__["immutable"] = True
        torch.save({"model": paper_layout(model), "optimizer": {"state": {}, "param_groups": []},
                    "lr_scheduler": {"t_initial": 10, "warmup_t": 5}, "max_accuracy": 51.3, "epoch": 9,
                    "config": cfg, **(extra or {})}, path)

    _with_fake_yacs(save)


@pytest.fixture
def clip_weights(tmp_path, tiny_model):
    path = tmp_path / "clip.pt"
    torch.save(tiny_model.clip.state_dict(), path)  # where the token-embedding table comes from
    return path


def logits(model, template="a photo of a {}."):
    torch.manual_seed(5)
    videos = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        return model(videos, model.tokenize(class_prompts(NAMES, template)))


def test_full_finetune_release_gives_the_same_logits(tmp_path, tiny_model, clip_weights):
    save_paper_checkpoint(tmp_path / "vifi.pth", tiny_model)
    assert "yacs" not in sys.modules
    model, meta = build_from_checkpoint(tmp_path / "vifi.pth", clip=str(clip_weights))
    assert model.arch == tiny_model.arch  # inferred from shapes
    torch.testing.assert_close(logits(model), logits(tiny_model))


def test_prompting_release_maps_onto_our_prompt_tensors(tmp_path, clip_weights):
    torch.manual_seed(1)
    clip = build_clip(OAI_TINY)
    torch.save(clip.state_dict(), clip_weights)
    cfg = PromptConfig(vision_tokens=5, text_tokens=6, vision_depth=2, text_depth=2, init="")
    original = ViFiCLIP(clip, copy.deepcopy(OAI_TINY), "frozen", prompts=Prompts(cfg, clip))
    save_paper_checkpoint(tmp_path / "prompts.pth", original)
    model, meta = build_from_checkpoint(tmp_path / "prompts.pth", clip=str(clip_weights))
    assert model.prompts.cfg.model_dump() == cfg.model_dump()
    assert meta["prompt_template"] == " ".join(["X"] * 6) + " {}."
    template = Prompts.template_for(cfg)
    torch.testing.assert_close(logits(model, template), logits(original, template))


def test_export_writes_safetensors_that_load_to_the_same_logits(tmp_path, tiny_model, clip_weights):
    save_paper_checkpoint(tmp_path / "vifi.pth", tiny_model)
    out = tmp_path / "vifi.safetensors"
    proc = subprocess.run([sys.executable, "-m", "vifi", "export", str(tmp_path / "vifi.pth"), "--out", str(out),
                           "--clip", str(clip_weights)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    model, meta = build_from_checkpoint(out)
    torch.testing.assert_close(logits(model), logits(tiny_model))
    again = subprocess.run([sys.executable, "-m", "vifi", "export", str(tmp_path / "vifi.pth"), "--out", str(out),
                            "--clip", str(clip_weights)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten silently


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, tiny_model, clip_weights):
    marker = tmp_path / "pwned"
    save_paper_checkpoint(tmp_path / "evil.pth", tiny_model, {"note": _Evil(marker)})
    with pytest.raises(VifiError, match=r"refusing .*(posix|os)\.system"):
        build_from_checkpoint(tmp_path / "evil.pth", clip=str(clip_weights))
    assert not marker.exists()
    proc = subprocess.run([sys.executable, "-m", "vifi", "export", str(tmp_path / "evil.pth"), "--out",
                           str(tmp_path / "x.safetensors"), "--clip", str(clip_weights)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: refusing") and len(proc.stderr.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "x.safetensors").exists()


def test_xclip_style_extra_modules_are_rejected_by_name(tmp_path, tiny_model, clip_weights):
    save_paper_checkpoint(tmp_path / "xclip.pth", tiny_model)
    state = paper_layout(tiny_model)
    state["module.mit.resblocks.0.attn.in_proj_weight"] = torch.zeros(3, 3)
    state["module.prompts_generator.alpha"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "xclip.pth")
    with pytest.raises(VifiError, match="unexpected keys mit.resblocks.0.attn.in_proj_weight"):
        build_from_checkpoint(tmp_path / "xclip.pth", clip=str(clip_weights))


def test_release_without_clip_weights_says_what_to_pass(tmp_path, tiny_model):
    save_paper_checkpoint(tmp_path / "vifi.pth", tiny_model)
    with pytest.raises(VifiError, match="pass --clip"):
        build_from_checkpoint(tmp_path / "vifi.pth")


def test_release_of_another_width_loads_with_its_own_arch(tmp_path):
    cfg = copy.deepcopy(OAI_TINY)
    cfg["vision_cfg"]["width"], cfg["vision_cfg"]["layers"] = 128, 3
    torch.manual_seed(2)
    wide = ViFiCLIP(build_clip(cfg), cfg, "frozen")
    torch.save(wide.clip.state_dict(), tmp_path / "clip.pt")
    save_paper_checkpoint(tmp_path / "wide.pth", wide)
    model, _ = build_from_checkpoint(tmp_path / "wide.pth", clip=str(tmp_path / "clip.pt"))
    assert model.arch["vision_cfg"]["width"] == 128 and model.arch["vision_cfg"]["layers"] == 3
    torch.testing.assert_close(logits(model), logits(wide))
