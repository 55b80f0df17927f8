"""Build open_clip's CLIP and load weights into it: OpenAI TorchScript archives, state dicts, open_clip tags.

An architecture is described by a plain dict (`embed_dim`, `vision_cfg`, `text_cfg`, `quick_gelu`) so it can be
stored inside our checkpoints and rebuilt without any registry.
"""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path
from typing import Any

import torch

from vifi.errors import VifiError

# A tiny random-init CLIP for tests and the demo: real open_clip code, real tokenizer, small widths.
TINY_CLIP: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    "quick_gelu": True,
}


def arch_config(arch: str) -> dict[str, Any]:
    """The architecture dict of `arch`: "tiny", or any open_clip model name (e.g. "ViT-B-16")."""
    if arch == "tiny":
        return copy.deepcopy(TINY_CLIP)
    if arch.startswith(HF_HUB):  # through vifi's Hub access: a quick reachability check and one-line errors
        from vifi.model.pretrained import hub_model_config

        return _vifi_arch(hub_model_config(arch[len(HF_HUB):], f"--arch {arch}"), arch)
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise VifiError(f"unknown architecture '{arch}'; use 'tiny' or an open_clip name such as ViT-B-16")
    cfg = copy.deepcopy(cfg)
    # OpenAI CLIP (the paper's backbone) was trained with QuickGELU.
    cfg.setdefault("quick_gelu", True)
    keep = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"}
    return {k: v for k, v in cfg.items() if k in keep}


def build_clip(cfg: dict[str, Any]) -> torch.nn.Module:
    """open_clip's CLIP with its residual blocks on the packed-QKV SDPA attention (vifi/model/attention.py): the same
    parameters and results, fewer copies."""
    import open_clip

    from vifi.model.attention import use_packed_attention

    model = open_clip.CLIP(**copy.deepcopy(cfg))
    use_packed_attention(model)
    return model


def infer_arch_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture of an OpenAI-layout ViT CLIP state dict, read off the tensor shapes (64-wide heads, QuickGELU)."""
    try:
        conv = sd["visual.conv1.weight"]
        width = conv.shape[0]
        patch = conv.shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        v_layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
        t_width = sd["ln_final.weight"].shape[0]
        t_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
        cfg = {
            "embed_dim": sd["text_projection"].shape[1],
            "vision_cfg": {"image_size": patch * grid, "layers": v_layers, "width": width, "patch_size": patch,
                           "head_width": 64},
            "text_cfg": {"context_length": sd["positional_embedding"].shape[0],
                         "vocab_size": sd["token_embedding.weight"].shape[0], "width": t_width,
                         "heads": max(1, t_width // 64), "layers": t_layers},
            "quick_gelu": True,
        }
    except KeyError as exc:
        raise VifiError(f"weights are not a ViT CLIP state dict in OpenAI/open_clip layout (missing {exc})") from None
    return cfg


def clip_from_state_dict(sd: dict[str, torch.Tensor], source: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """CLIP built for the architecture the shapes of `sd` describe, holding exactly those weights."""
    cfg = infer_arch_from_state_dict(sd)
    model = build_clip(cfg)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    missing = [k for k in missing if k != "attn_mask"]
    if missing or unexpected:
        raise VifiError(f"{source} does not fit the CLIP its shapes describe ({cfg['vision_cfg']['width']} wide): "
                        f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model, cfg


def read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file without running any code from it."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if _is_torchscript(path):
        # OpenAI's archive is TorchScript; loading it builds modules from the archive's own code, which is
        # the format's design. Only explicitly given local files reach this.
        return {k: v for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad file, reported in one line
        raise VifiError(f"cannot read weights from {path}: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise VifiError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in zf.namelist())


def check_clip_source(arch: str, weights: str | None, allow_random: bool = False) -> None:
    """What `load_clip` refuses about where the weights come from, found without reading or fetching anything: a run
    calls it before it touches its folder or its data (generating the demo, checking every val video)."""
    if weights is None:
        if arch != "tiny" and not arch.startswith(HF_HUB) and not allow_random:
            raise VifiError(f"no CLIP weights for architecture {arch}: pass --clip PATH (OpenAI .pt, state dict or "
                            "safetensors), an open_clip tag such as --clip openai, or --clip hf-hub:ORG/NAME")
        return
    if weights.startswith(HF_HUB) or Path(weights).exists():
        return
    if "/" in weights or "\\" in weights or Path(weights).suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise VifiError(f"--clip {weights}: file not found; give a local weight file, an open_clip tag (e.g. openai) "
                        "or hf-hub:ORG/NAME")


def load_clip(arch: str, weights: str | None, allow_random: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build CLIP for `arch` and load `weights`: a local file, an open_clip pretrained tag of `arch`, or
    `hf-hub:org/name` (whose own config then gives the architecture; `arch` may also be given that way).

    A real architecture without weights is refused unless `allow_random`, so nobody evaluates noise by accident.
    """
    check_clip_source(arch, weights, allow_random)
    if weights is None and arch.startswith(HF_HUB):
        weights = arch
    if weights is None:
        cfg = arch_config(arch)
        return build_clip(cfg), cfg
    if weights.startswith(HF_HUB):
        from vifi.model.pretrained import fetch_hub_model

        model_cfg, path = fetch_hub_model(weights[len(HF_HUB):])
        cfg = _vifi_arch(model_cfg, weights)
        return _load_into(build_clip(cfg), path, weights), cfg
    path = Path(weights)
    if path.exists():
        sd = read_weight_file(path)
        sd = {k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}
        return clip_from_state_dict(sd, str(path))
    from vifi.model.pretrained import fetch_tag_weights, tag_quick_gelu

    cfg = arch_config(arch)
    cfg["quick_gelu"] = tag_quick_gelu(arch, weights)  # the activation the tag's weights were trained with
    path = fetch_tag_weights(arch, weights)
    return _load_into(build_clip(cfg), path, f"--clip {weights}"), cfg


HF_HUB = "hf-hub:"


def _vifi_arch(model_cfg: dict[str, Any], source: str) -> dict[str, Any]:
    """The architecture dict vifi stores, from an open_clip model config; only open_clip's own ViT towers."""
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    if "timm_model_name" in vision or "hf_model_name" in text or "embed_dim" not in model_cfg:
        raise VifiError(f"{source}: vifi drives open_clip's own ViT image and text towers; this model uses "
                        f"{vision.get('timm_model_name') or text.get('hf_model_name') or 'another layout'}")
    cfg = {k: copy.deepcopy(model_cfg[k]) for k in ("embed_dim", "vision_cfg", "text_cfg")}
    cfg["quick_gelu"] = bool(model_cfg.get("quick_gelu", False))
    return cfg


def _load_into(model: torch.nn.Module, path: Path, source: str) -> torch.nn.Module:
    import open_clip

    try:
        open_clip.load_checkpoint(model, str(path))  # open_clip's conversions (old layouts, position resizing)
    except Exception as exc:  # noqa: BLE001 - a file that does not fit is the user's to fix
        raise VifiError(f"{source}: the weights in {path} do not fit the architecture: "
                        f"{' '.join(str(exc).split())[:500]}") from None
    return model
