"""Any open_clip ViT, not only ViT-B/16: every train mode and deep prompts build and run (on the meta device: shapes
and parameter sets without allocating ViT-L weights), OpenAI-layout weights are recognised, and the larger-backbone
recipes resolve `train.checkpointing: auto` from the memory estimate."""

import types

import pytest
import torch

from vifi.config import PromptConfig, load_config
from vifi.engine.runtime import Runtime
from vifi.model.backbone import arch_config, build_clip, infer_arch_from_state_dict
from vifi.model.prompts import Prompts
from vifi.model.vifi_clip import ViFiCLIP

ARCHS = ["ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"]


def _meta_model(arch: str) -> ViFiCLIP:
    cfg = arch_config(arch)
    with torch.device("meta"):
        return ViFiCLIP(build_clip(cfg), cfg, "both")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_train_mode_and_prompts_run_on_the_architecture(arch):
    model = _meta_model(arch)
    size = model.arch["vision_cfg"]["image_size"]
    tokens = model.tokenize(["a photo of a cat.", "a photo of a dog.", "a photo of a car."]).to("meta")
    image = {n for n, _ in model.named_parameters() if n.startswith("clip.visual.")}
    text = {n for n, _ in model.named_parameters() if not n.startswith("clip.visual.") and n != "clip.logit_scale"}
    text.discard("clip.token_embedding.weight")  # the token table is never fine-tuned (ViFiCLIP._is_trainable)
    for mode, trains in (("both", image | text), ("image", image), ("text", text)):
        model.set_train_mode(mode)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable - {"clip.logit_scale"} == trains, mode
    with torch.device("meta"):
        videos = torch.empty(2, 3, 3, size, size)
        assert model.head(videos, model.encode_text(tokens, length=8)).shape == (2, 3)
        model.attach_prompts(Prompts(PromptConfig(vision_tokens=4, text_tokens=4, vision_depth=3, text_depth=3),
                                     model.clip))
        model.set_train_mode("prompt")
        logits = model.head(videos, model.encode_text(tokens, length=8))
    assert logits.shape == (2, 3)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("prompts.", "head.vision_prompts.")) for n in trainable)
    width = {"vision": model.arch["vision_cfg"]["width"], "text": model.arch["text_cfg"]["width"]}
    for tower in ("vision", "text"):
        prompts = getattr(model.prompts, tower)
        assert prompts.tokens.shape == prompts.for_block(2).shape == (4, width[tower])


@pytest.mark.parametrize("arch", ARCHS)
def test_openai_layout_weights_of_the_architecture_are_recognised(arch):
    cfg = arch_config(arch)
    with torch.device("meta"):
        sd = build_clip(cfg).state_dict()
    got = infer_arch_from_state_dict(sd)
    assert got["embed_dim"] == cfg["embed_dim"]
    for key in ("image_size", "layers", "width", "patch_size"):
        assert got["vision_cfg"][key] == cfg["vision_cfg"][key], key
    for key in ("context_length", "vocab_size", "width", "heads", "layers"):
        assert got["text_cfg"][key] == cfg["text_cfg"][key], key


@pytest.mark.parametrize("name,arch,size", [("k400-b32", "ViT-B-32", 224), ("k400-l14", "ViT-L-14", 224),
                                            ("k400-l14-336", "ViT-L-14-336", 336)])
def test_larger_backbone_recipes_are_k400_with_another_backbone(name, arch, size):
    cfg, k400 = load_config(name), load_config("k400")
    assert (cfg.model.arch, cfg.data.input_size, cfg.train.checkpointing) == (arch, size, "auto")
    assert size == arch_config(arch)["vision_cfg"]["image_size"]
    same = lambda c: (c.train.model_dump(exclude={"checkpointing"}), c.data.frames, c.model.clip, c.model.train,  # noqa: E731
                      c.eval.model_dump())
    assert same(cfg) == same(k400)


def _fake_cuda(monkeypatch, gib: float) -> Runtime:
    props = types.SimpleNamespace(total_memory=int(gib * 2 ** 30))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    return Runtime(device=torch.device("cuda"), precision="bf16")


@pytest.mark.parametrize("gib", [80, 40])
def test_checkpointing_auto_takes_the_plan_for_the_gpu(monkeypatch, gib):
    from vifi.model.memory import Shape, plan_memory
    from vifi.runs import _auto_checkpointing

    cfg = load_config("k400-l14", ["train.compile=false"])
    model = _meta_model("ViT-L-14")
    resolved = _auto_checkpointing(cfg, _fake_cuda(monkeypatch, gib), model, 400, text_tokens=12)
    plan = plan_memory(Shape.of(arch_config("ViT-L-14")), device_gib=gib, frames=32, classes=400, batch=256)
    assert plan.checkpoint_blocks > 0
    assert (resolved.train.checkpointing, resolved.train.micro_batch) == (plan.checkpoint_blocks, plan.micro_batch)
    fixed = _auto_checkpointing(load_config("k400-l14", ["train.micro_batch=4", "train.compile=false"]),
                                _fake_cuda(monkeypatch, gib), model, 400, text_tokens=12)
    assert fixed.train.micro_batch == 4  # a micro-batch the user set is kept


def test_checkpointing_auto_on_cpu_is_none():
    from vifi.runs import _auto_checkpointing

    cfg = load_config("k400-l14")
    resolved = _auto_checkpointing(cfg, Runtime(device=torch.device("cpu"), precision="fp32"), _meta_model("ViT-B-32"),
                                   400, text_tokens=12)
    assert resolved.train.checkpointing is False and resolved.train.micro_batch == "auto"
