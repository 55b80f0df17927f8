"""Build the ViFi-CLIP model a run config asks for."""

from __future__ import annotations

from pathlib import Path

from vifi.config import DataConfig, ModelConfig
from vifi.errors import VifiError
from vifi.model.backbone import HF_HUB, arch_config, check_clip_source, load_clip
from vifi.model.facts import CheckpointFacts, check_arch_input_size, check_training_inputs, plain_clip
from vifi.model.vifi_clip import ViFiCLIP


def build_model(cfg: ModelConfig, data: DataConfig | None = None) -> ViFiCLIP:
    """The model a run trains. Starting from a checkpoint, the run keeps its own frames and input size (`data`), as
    the reference's configs do, with one notice when the checkpoint was trained with others."""
    check_model_source(cfg)
    if cfg.train == "prompt":
        from vifi.model.checkpoint import add_prompts, build_from_checkpoint, resolve_checkpoint

        base = resolve_checkpoint(cfg.init_from)
        model, facts = build_from_checkpoint(base, "frozen", cfg.clip)
        if facts.train_mode == "prompt" or model.prompts is not None:
            raise VifiError(f"{base} is a prompt artifact; the bridge must be a fine-tuned model checkpoint")
        _check_run_inputs(facts, data, "the bridge")
        add_prompts(model, cfg.prompt, base)
        model.set_train_mode("prompt")
        return model
    if cfg.init_from:
        from vifi.model.checkpoint import build_from_checkpoint

        model, facts = build_from_checkpoint(cfg.init_from, cfg.train, cfg.clip)
        _check_run_inputs(facts, data, "model.init_from")
        return model
    clip, arch = load_clip(cfg.arch, cfg.clip)
    if data is not None:  # weights from a file give their own architecture: checked once they are read
        check_arch_input_size(arch, f"--clip {cfg.clip}" if cfg.clip else f"architecture {cfg.arch}",
                              data.input_size)
    return ViFiCLIP(clip, arch, cfg.train)


def check_model_source(cfg: ModelConfig, input_size: int | None = None) -> None:
    """What `build_model` refuses about where the weights come from, and an architecture named by `model.arch` that
    does not take `input_size` crops, found without reading any weights: a run calls it before it touches its folder
    or its data."""
    if cfg.train == "prompt" and not cfg.init_from:
        raise VifiError("prompting learns on top of a fine-tuned checkpoint (the bridge): pass --bridge CKPT "
                        "(or set model.init_from)")
    if cfg.init_from:
        return
    check_clip_source(cfg.arch, cfg.clip)
    named = cfg.clip is None or not (cfg.clip.startswith(HF_HUB) or Path(cfg.clip).exists())  # None or a tag
    if input_size is not None and named and not cfg.arch.startswith(HF_HUB):
        check_arch_input_size(arch_config(cfg.arch), f"architecture {cfg.arch}", input_size)


def _check_run_inputs(facts: CheckpointFacts, data: DataConfig | None, role: str) -> None:
    if data is not None:
        check_training_inputs(facts, data.frames, data.input_size, role)


def load_for_inference(checkpoint: str | None, clip: str | None, arch: str = "ViT-B-16"):
    """(frozen model, its CheckpointFacts) from a checkpoint (vifi, prompt artifact, run folder, paper .pth + `clip`),
    or plain CLIP from `clip` weights alone, whose facts are the paper's zero-shot defaults."""
    if checkpoint:
        from vifi.model.checkpoint import build_from_checkpoint

        return build_from_checkpoint(checkpoint, clip=clip)
    if not clip:
        raise VifiError("give --checkpoint (a vifi or paper checkpoint) or --clip (plain CLIP weights)")
    model, arch_cfg = load_clip(arch, clip)
    return ViFiCLIP(model, arch_cfg, "frozen"), plain_clip(arch_cfg)


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
