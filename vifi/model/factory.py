"""Build the ViFi-CLIP model a run config asks for."""

from __future__ import annotations

from vifi.config import ModelConfig
from vifi.errors import VifiError
from vifi.model.backbone import load_clip
from vifi.model.vifi_clip import ViFiCLIP


def build_model(cfg: ModelConfig) -> ViFiCLIP:
    if cfg.init_from:
        from vifi.model.checkpoint import build_from_checkpoint

        model, _ = build_from_checkpoint(cfg.init_from, cfg.train)
        return model
    clip, arch = load_clip(cfg.arch, cfg.clip)
    return ViFiCLIP(clip, arch, cfg.train)


def prompt_template(cfg: ModelConfig) -> str | None:
    """None means bare class names (vanilla zero-shot)."""
    if cfg.vanilla:
        return None
    if "{}" not in cfg.prompt_template:
        raise VifiError(f"model.prompt_template {cfg.prompt_template!r} must contain '{{}}' where the class name goes")
    return cfg.prompt_template
