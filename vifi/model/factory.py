"""Build the ViFi-CLIP model a run config asks for."""

from __future__ import annotations

from vifi.config import ModelConfig
from vifi.errors import VifiError
from vifi.model.backbone import load_clip
from vifi.model.vifi_clip import ViFiCLIP


def build_model(cfg: ModelConfig) -> ViFiCLIP:
    if cfg.train == "prompt":
        from vifi.model.checkpoint import add_prompts, build_from_checkpoint, resolve_checkpoint

        if not cfg.init_from:
            raise VifiError("prompting learns on top of a fine-tuned checkpoint (the bridge): pass --bridge CKPT "
                            "(or set model.init_from)")
        base = resolve_checkpoint(cfg.init_from)
        model, meta = build_from_checkpoint(base, "frozen", cfg.clip)
        if meta.get("train_mode") == "prompt" or model.prompts is not None:
            raise VifiError(f"{base} is a prompt artifact; the bridge must be a fine-tuned model checkpoint")
        add_prompts(model, cfg.prompt, base)
        model.set_train_mode("prompt")
        return model
    if cfg.init_from:
        from vifi.model.checkpoint import build_from_checkpoint

        model, _ = build_from_checkpoint(cfg.init_from, cfg.train, cfg.clip)
        return model
    clip, arch = load_clip(cfg.arch, cfg.clip)
    return ViFiCLIP(clip, arch, cfg.train)


def load_for_inference(checkpoint: str | None, clip: str | None, arch: str = "ViT-B-16"):
    """(frozen model, metadata) from a checkpoint (vifi, prompt artifact, run folder, paper .pth + `clip`), or plain
    CLIP from `clip` weights alone, which gets the paper's template."""
    if checkpoint:
        from vifi.model.checkpoint import build_from_checkpoint

        return build_from_checkpoint(checkpoint, clip=clip)
    if not clip:
        raise VifiError("give --checkpoint (a vifi or paper checkpoint) or --clip (plain CLIP weights)")
    model, arch_cfg = load_clip(arch, clip)
    return ViFiCLIP(model, arch_cfg, "frozen"), {"prompt_template": "a photo of a {}."}


def prompt_template(cfg: ModelConfig) -> str | None:
    """None means bare class names (vanilla zero-shot)."""
    if cfg.vanilla:
        return None
    if cfg.train == "prompt":
        from vifi.model.prompts import Prompts

        return Prompts.template_for(cfg.prompt)
    if "{}" not in cfg.prompt_template:
        raise VifiError(f"model.prompt_template {cfg.prompt_template!r} must contain '{{}}' where the class name goes")
    return cfg.prompt_template
