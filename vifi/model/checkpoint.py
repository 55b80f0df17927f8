"""vifi checkpoints: one safetensors file of CLIP weights whose metadata holds the architecture and run facts.

The architecture travels with the weights, so `vifi eval --checkpoint X` rebuilds the model without the config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vifi.errors import VifiError
from vifi.fileio import atomic_path

FORMAT = "vifi-clip/1"


def save_weights(path: str | Path, model, extra: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.clip.state_dict().items()}
    meta = {"format": FORMAT, "arch": json.dumps(model.arch), "train_mode": model.train_mode}
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise VifiError(f"{path} is not a readable safetensors checkpoint ({str(exc).splitlines()[0][:120]})") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A weights file, or a run folder (its final weights, else its latest complete checkpoint)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "final.safetensors", path / "final.safetensors"):
            if candidate.is_file():
                return candidate
        pointer = path / "checkpoints" / "latest.json"
        if pointer.is_file():
            return path / "checkpoints" / json.loads(pointer.read_text())["weights"]
        raise VifiError(f"{path} is a folder without vifi checkpoints (expected checkpoints/final.safetensors)")
    if not path.is_file():
        raise VifiError(f"checkpoint not found: {path}")
    return path


def load_weights_into(model, path: str | Path) -> dict[str, str]:
    """Load a vifi checkpoint into `model`; a different architecture is a user error naming the first mismatch."""
    from safetensors.torch import load_file

    path = resolve_checkpoint(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise VifiError(f"{path} is not a vifi checkpoint (use `vifi export` for other formats)")
    state = load_file(str(path))
    own = model.clip.state_dict()
    for key, value in own.items():
        if key not in state:
            raise VifiError(f"checkpoint {path} lacks '{key}': it is of another architecture than {model.arch_name()}")
        if state[key].shape != value.shape:
            raise VifiError(f"checkpoint {path} is of another architecture: '{key}' has shape "
                            f"{tuple(state[key].shape)}, the model expects {tuple(value.shape)}")
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise VifiError(f"checkpoint {path} has keys this model lacks (first: {unexpected[0]})")
    model.clip.load_state_dict(state)
    return meta


def build_from_checkpoint(path: str | Path, train_mode: str = "frozen"):
    """A ViFiCLIP with the architecture and weights stored in a vifi checkpoint."""
    from vifi.model.backbone import build_clip
    from vifi.model.vifi_clip import ViFiCLIP

    path = resolve_checkpoint(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise VifiError(f"{path} is not a vifi checkpoint (use `vifi export` for other formats)")
    arch = json.loads(meta["arch"])
    model = ViFiCLIP(build_clip(arch), arch, train_mode)
    load_weights_into(model, path)
    return model, meta
