"""Paper `.pth` releases: loaded without running pickled code, same logits as the model they were saved from."""

import copy
import os
import subprocess
import sys
import types

import pytest
import torch

from tests.conftest import vifi_in_process as _vifi  # in this process: a new one costs seconds of imports a call
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


def reference_config(model: ViFiCLIP, *, frames: int = 32, use: str = "both", ctx_init: str = "a photo of a",
                     arch: str | None = None, **trainer) -> _FakeCfgNode:
    """The reference's merged training config for `model`, as its releases pickle it (nested CfgNodes)."""
    p = model.prompts.cfg if model.prompts is not None else PromptConfig()
    vifi = dict(PROMPT_MODEL=model.prompts is not None, N_CTX_VISION=p.vision_tokens, N_CTX_TEXT=p.text_tokens,
                CTX_INIT=ctx_init, PROMPT_DEPTH_VISION=p.vision_depth, PROMPT_DEPTH_TEXT=p.text_depth or 1, USE=use,
                ZS_EVAL=False)
    vifi.update(trainer)
    model_section = _FakeCfgNode(DROP_PATH_RATE=0.0, FIX_TEXT=True, PRETRAINED=None, RESUME=None)
    if arch is not None:
        model_section["ARCH"] = arch
    cfg = _FakeCfgNode(
        DATA=_FakeCfgNode(ROOT="/data/k400", NUM_FRAMES=frames, INPUT_SIZE=model.arch["vision_cfg"]["image_size"],
                          NUM_CLASSES=400, LABEL_LIST="labels/kinetics_400_labels.csv"),
        MODEL=model_section, TRAINER=_FakeCfgNode(ViFi_CLIP=_FakeCfgNode(**vifi)),
        TRAIN=_FakeCfgNode(EPOCHS=30, LR=2.2e-5, BATCH_SIZE=4, ACCUMULATION_STEPS=16), TEST=_FakeCfgNode(NUM_CLIP=1),
        SEED=1024)
    for node in (cfg, cfg["DATA"], cfg["MODEL"], cfg["TRAINER"], cfg["TRAINER"]["ViFi_CLIP"]):
        node.__dict__["__immutable__"] = True  # yacs keeps its frozen flag as an attribute, pickled with the node
    return cfg


def save_paper_checkpoint(path, model, extra=None, config="reference", **config_args):
    """A release in the reference's layout; `config` "reference" = `reference_config(model, **config_args)`."""
    def save():
        cfg = reference_config(model, **config_args) if config == "reference" else config
        obj = {"model": paper_layout(model), "optimizer": {"state": {}, "param_groups": []},
               "lr_scheduler": {"t_initial": 10, "warmup_t": 5}, "max_accuracy": 51.3, "epoch": 9, **(extra or {})}
        if cfg is not None:
            obj["config"] = cfg
        torch.save(obj, path)

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
    cfg = PromptConfig(vision_tokens=5, text_tokens=6, vision_depth=2, text_depth=2, init="a photo of a")
    original = ViFiCLIP(clip, copy.deepcopy(OAI_TINY), "frozen", prompts=Prompts(cfg, clip))
    save_paper_checkpoint(tmp_path / "prompts.pth", original)
    model, facts = build_from_checkpoint(tmp_path / "prompts.pth", clip=str(clip_weights))
    assert model.prompts.cfg.model_dump() == cfg.model_dump()
    assert facts.prompt == cfg and facts.train_mode == "prompt"
    assert facts.template == " ".join(["X"] * 6) + " {}."  # n_t > 4: CTX_INIT is not used (the reference's rule)
    template = Prompts.template_for(cfg)
    torch.testing.assert_close(logits(model, template), logits(original, template))


def test_ctx_init_is_honoured_for_four_or_fewer_context_tokens(tmp_path, clip_weights):
    """n_t = 3 with CTX_INIT "a photo of a" (4 tokens): the class text is "a photo of a {name}." and positions 1..3
    carry the context, so the 4th token "a" stays; "X X X {name}." would drop it and change every logit."""
    torch.manual_seed(4)
    clip = build_clip(OAI_TINY)
    torch.save(clip.state_dict(), clip_weights)
    cfg = PromptConfig(vision_tokens=2, text_tokens=3, vision_depth=1, text_depth=2, init="a photo of a")
    original = ViFiCLIP(clip, copy.deepcopy(OAI_TINY), "frozen", prompts=Prompts(cfg, clip))
    save_paper_checkpoint(tmp_path / "short.pth", original, ctx_init="a photo of a")
    model, facts = build_from_checkpoint(tmp_path / "short.pth", clip=str(clip_weights))
    assert facts.template == "a photo of a {}." and model.prompts.cfg.init == "a photo of a"
    torch.testing.assert_close(logits(model, facts.template), logits(original, "a photo of a {}."))
    placeholders = logits(original, "X X X {}.")
    assert not torch.allclose(logits(model, facts.template), placeholders, atol=1e-3)  # what the old import used


def test_supervised_release_config_gives_frames_template_and_train_mode(tmp_path, tiny_model, clip_weights):
    save_paper_checkpoint(tmp_path / "sup.pth", tiny_model, frames=16, use="image", ctx_init="a_video_of")
    model, facts = build_from_checkpoint(tmp_path / "sup.pth", clip=str(clip_weights))
    assert (facts.frames, facts.input_size, facts.train_mode) == (16, 64, "image")
    assert facts.template == "a video of {}."  # '_' is a space inside CTX_INIT (the reference's fine-tune text)
    assert facts.prompt is None and facts.arch_name is None and facts.path == str(tmp_path / "sup.pth")
    torch.testing.assert_close(logits(model, facts.template), logits(tiny_model, "a video of {}."))


def test_release_without_a_config_gets_vifi_defaults(tmp_path, tiny_model, clip_weights):
    save_paper_checkpoint(tmp_path / "bare.pth", tiny_model, config=None)
    _, facts = build_from_checkpoint(tmp_path / "bare.pth", clip=str(clip_weights))
    assert (facts.frames, facts.template, facts.train_mode) == (32, "a photo of a {}.", "both")


@pytest.mark.parametrize("config_args,needle", [
    ({"frames": "16"}, r"DATA\.NUM_FRAMES is '16', not a count"),
    ({"frames": 0}, "NUM_FRAMES is 0"),
    ({"arch": "ViT-B/16"}, r"names ViT-B/16 but its weights have vision image_size 64 \(ViT-B/16: 224\)"),
    ({"arch": "ViT-Q/99"}, "open_clip does not know"),
    ({"use": "everything"}, "USE is 'everything'"),
    ({"CTX_INIT": 7}, "CTX_INIT is 7, not text"),
    ({"PROMPT_MODEL": True}, "PROMPT_MODEL but it holds no prompt tensors"),
])
def test_a_config_that_contradicts_its_weights_is_refused_by_name(tmp_path, tiny_model, clip_weights, config_args,
                                                                   needle):
    save_paper_checkpoint(tmp_path / "odd.pth", tiny_model, **config_args)
    with pytest.raises(VifiError, match=needle):
        build_from_checkpoint(tmp_path / "odd.pth", clip=str(clip_weights))


def test_prompt_sizes_in_the_config_must_match_the_tensors(tmp_path, clip_weights):
    torch.manual_seed(1)
    clip = build_clip(OAI_TINY)
    torch.save(clip.state_dict(), clip_weights)
    cfg = PromptConfig(vision_tokens=5, text_tokens=6, vision_depth=2, text_depth=2)
    original = ViFiCLIP(clip, copy.deepcopy(OAI_TINY), "frozen", prompts=Prompts(cfg, clip))
    save_paper_checkpoint(tmp_path / "p.pth", original, N_CTX_TEXT=16)
    with pytest.raises(VifiError, match="N_CTX_TEXT=16, PROMPT_DEPTH_TEXT=2 but it holds 6 tokens in 2 blocks"):
        build_from_checkpoint(tmp_path / "p.pth", clip=str(clip_weights))


def test_input_size_other_than_the_weights_is_refused(tmp_path, tiny_model, clip_weights):
    config = reference_config(tiny_model)
    config["DATA"]["INPUT_SIZE"] = 224
    save_paper_checkpoint(tmp_path / "big.pth", tiny_model, config=config)
    with pytest.raises(VifiError, match="INPUT_SIZE is 224 but its weights take 64-pixel images"):
        build_from_checkpoint(tmp_path / "big.pth", clip=str(clip_weights))


def test_export_writes_safetensors_that_load_to_the_same_logits(tmp_path, tiny_model, clip_weights):
    save_paper_checkpoint(tmp_path / "vifi.pth", tiny_model, frames=16, use="text", ctx_init="a video of a")
    out = tmp_path / "vifi.safetensors"
    proc = _vifi("export", tmp_path / "vifi.pth", "--out", out, "--clip", clip_weights)
    assert proc.returncode == 0, proc.stderr
    model, facts = build_from_checkpoint(out)
    torch.testing.assert_close(logits(model), logits(tiny_model))
    # the release's own config travels into the metadata
    assert (facts.frames, facts.input_size, facts.train_mode, facts.template) == (16, 64, "text", "a video of a {}.")
    assert facts.source == str(tmp_path / "vifi.pth") and facts.arch == tiny_model.arch
    again = _vifi("export", tmp_path / "vifi.pth", "--out", out, "--clip", clip_weights)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten silently


def test_export_of_a_prompting_release_keeps_its_facts_in_both_files(tmp_path, clip_weights):
    torch.manual_seed(1)
    clip = build_clip(OAI_TINY)
    torch.save(clip.state_dict(), clip_weights)
    cfg = PromptConfig(vision_tokens=2, text_tokens=3, vision_depth=2, text_depth=2, init="a photo of a")
    original = ViFiCLIP(clip, copy.deepcopy(OAI_TINY), "frozen", prompts=Prompts(cfg, clip))
    save_paper_checkpoint(tmp_path / "p.pth", original, frames=8)
    out = tmp_path / "p.safetensors"
    proc = _vifi("export", tmp_path / "p.pth", "--out", out, "--clip", clip_weights)
    assert proc.returncode == 0, proc.stderr
    from vifi.model.checkpoint import read_facts

    base = read_facts(tmp_path / "p.base.safetensors")
    assert (base.frames, base.train_mode, base.template, base.prompt) == (8, "frozen", "a photo of a {}.", None)
    model, facts = build_from_checkpoint(out)
    assert (facts.frames, facts.train_mode, facts.prompt, facts.template) == (8, "prompt", cfg, "a photo of a {}.")
    assert facts.base_path == str((tmp_path / "p.base.safetensors").resolve())
    torch.testing.assert_close(logits(model, facts.template), logits(original, "a photo of a {}."))


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


# ---- the release's own config drives eval and zeroshot (end to end, through the CLI) ---------------------------
CLASSES = ["waving", "jumping", "pouring"]


@pytest.fixture
def videos16(tmp_path):
    """Three 40-frame noise videos: every frame differs, so 16 and 32 sampled frames give different features."""
    import numpy as np

    from tests.conftest import write_video

    rng = np.random.default_rng(0)
    root = tmp_path / "videos"
    for i in range(3):
        write_video(root / f"v{i}.mp4", rng.integers(0, 256, (40, 64, 80, 3), dtype=np.uint8))
    (tmp_path / "labels.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))
    (tmp_path / "list.txt").write_text("".join(f"v{i}.mp4 {i}\n" for i in range(3)))
    return root


def naive_probs(model, root, frames):
    """Softmax over CLASSES of each video at `frames` frames: decode, one forward of the model itself."""
    from vifi.data.annotations import Entry
    from vifi.data.augment import normalise
    from vifi.data.dataset import ClipSpec, EvalClips

    data = EvalClips([Entry(f"v{i}.mp4", i) for i in range(3)], root, ClipSpec(frames, 64))
    tokens = model.tokenize(class_prompts(CLASSES, "a photo of a {}."))
    with torch.no_grad():
        return torch.cat([torch.softmax(model(normalise(data[i]["frames"]), tokens), dim=-1) for i in range(3)])



@pytest.mark.slow
def test_eval_and_zeroshot_use_the_release_frames_and_a_frames_flag_wins_with_one_notice(
        tmp_path, tiny_model, clip_weights, videos16):
    import json

    import pandas as pd

    save_paper_checkpoint(tmp_path / "k400-16f.pth", tiny_model, frames=16)
    at16, at32 = naive_probs(tiny_model, videos16, 16), naive_probs(tiny_model, videos16, 32)
    assert (at16.max(dim=1).values - at32.max(dim=1).values).abs().max() > 1e-4  # frames show in the top score
    common = ["--checkpoint", tmp_path / "k400-16f.pth", "--clip", clip_weights, "--data", tmp_path / "list.txt",
              "--labels", tmp_path / "labels.csv", "--root", videos16, "--workers", "0"]

    default = _vifi("eval", *common, "--out", tmp_path / "e16")
    assert default.returncode == 0, default.stderr
    assert "notice" not in default.stderr
    assert json.loads((tmp_path / "e16" / "results.json").read_text())["frames"] == 16
    scores = pd.read_csv(tmp_path / "e16" / "predictions.csv").sort_values("video")["score"].tolist()
    assert scores == pytest.approx(at16.max(dim=1).values.tolist(), abs=2e-6)

    forced = _vifi("eval", *common, "--frames", "32", "--out", tmp_path / "e32")
    assert forced.returncode == 0, forced.stderr
    notices = [line for line in forced.stderr.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1 and "--frames 32 overrides the 16 frames" in notices[0], forced.stderr
    assert json.loads((tmp_path / "e32" / "results.json").read_text())["frames"] == 32
    scores = pd.read_csv(tmp_path / "e32" / "predictions.csv").sort_values("video")["score"].tolist()
    assert scores == pytest.approx(at32.max(dim=1).values.tolist(), abs=2e-6)

    zs = _vifi("zeroshot", *[videos16 / f"v{i}.mp4" for i in range(3)], "--labels", ",".join(CLASSES),
               "--checkpoint", tmp_path / "k400-16f.pth", "--clip", clip_weights, "--out", tmp_path / "zs.csv")
    assert zs.returncode == 0, zs.stderr
    assert "notice" not in zs.stderr
    table = pd.read_csv(tmp_path / "zs.csv")
    for i in range(3):
        rows = table[table.video == str(videos16 / f"v{i}.mp4")].set_index("label")["prob"]
        assert [rows[c] for c in CLASSES] == pytest.approx(at16[i].tolist(), abs=2e-6)


def test_viz_embeddings_use_the_release_frames(tmp_path, tiny_model, clip_weights, videos16):
    import torch.nn.functional as F

    from vifi.data.annotations import Entry
    from vifi.data.augment import normalise
    from vifi.data.dataset import ClipSpec, EvalClips
    from vifi.viz.embed import embed_videos

    save_paper_checkpoint(tmp_path / "k400-16f.pth", tiny_model, frames=16)
    emb, labels = embed_videos(str(tmp_path / "k400-16f.pth"), str(tmp_path / "list.txt"), str(videos16),
                               frames=None, cache_dir=tmp_path / "cache", clip=str(clip_weights), device="cpu")
    data = EvalClips([Entry(f"v{i}.mp4", i) for i in range(3)], videos16, ClipSpec(16, 64))
    with torch.no_grad():
        naive = torch.cat([F.normalize(tiny_model.head.encode_video(normalise(data[i]["frames"])), dim=-1)
                           for i in range(3)])
    torch.testing.assert_close(torch.from_numpy(emb), naive, atol=1e-5, rtol=0)
    assert labels.tolist() == [0, 1, 2]


def test_prompt_bridge_keeps_the_run_frames_and_says_the_bridge_differs(tmp_path, tiny_model, clip_weights, capsys):
    from vifi.config import DataConfig, ModelConfig
    from vifi.model.factory import build_model

    save_paper_checkpoint(tmp_path / "bridge.pth", tiny_model, frames=16)
    prompt = PromptConfig(vision_tokens=2, text_tokens=2, vision_depth=1, text_depth=1)
    cfg = ModelConfig(train="prompt", init_from=str(tmp_path / "bridge.pth"), clip=str(clip_weights), prompt=prompt)
    model = build_model(cfg, DataConfig(frames=32, input_size=64))
    assert model.base_ref["path"] == str((tmp_path / "bridge.pth").resolve())
    err = capsys.readouterr().err.splitlines()
    assert err == [f"notice: the bridge {tmp_path / 'bridge.pth'} was trained with frames 16; this run uses 32 "
                   "(data.frames; --set data.frames=16 to match)"]
    build_model(cfg, DataConfig(frames=16, input_size=64))
    assert capsys.readouterr().err == ""
