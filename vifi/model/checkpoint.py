"""vifi checkpoints: one safetensors file of CLIP weights whose metadata holds the architecture and run facts.

The architecture travels with the weights, so `vifi eval --checkpoint X` rebuilds the model without the config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vifi.errors import VifiError
from vifi.fileio import atomic_path, sha256_file

FORMAT = "vifi-clip/1"
PROMPT_FORMAT = "vifi-prompts/1"  # prompt tensors only, bound to the base checkpoint they were learned on


def save_weights(path: str | Path, model, extra: dict[str, Any] | None = None) -> None:
    """A prompting model saves its prompt tensors and its base's path + hash; any other model all CLIP weights."""
    from safetensors.torch import save_file

    if model.train_mode == "prompt":
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.prompts.state_dict().items()}
        meta = {"format": PROMPT_FORMAT, "arch": json.dumps(model.arch), "train_mode": "prompt",
                "prompt": model.prompts.cfg.model_dump_json(), "base_path": model.base_ref["path"],
                "base_sha256": model.base_ref["sha256"]}
    else:
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
    if meta.get("format") == PROMPT_FORMAT:
        _check_same_base(model, meta, path)
        model.prompts.load_state_dict(_checked_state(load_file(str(path)), model.prompts.state_dict(), path,
                                                     "prompt sizes"))
        return meta
    if meta.get("format") != FORMAT:
        raise VifiError(f"{path} is not a vifi checkpoint (use `vifi export` for other formats)")
    model.clip.load_state_dict(_checked_state(load_file(str(path)), model.clip.state_dict(), path,
                                              f"the architecture {model.arch_name()} (another architecture)"))
    return meta


def _check_same_base(model, meta: dict[str, str], path: Path) -> None:
    if model.prompts is None:
        raise VifiError(f"{path} holds prompts only; load it with `vifi eval --checkpoint {path}` (it names its base)")
    own = model.base_ref.get("sha256")
    if own != meta.get("base_sha256"):
        raise VifiError(f"prompt artifact {path} was learned on base {meta.get('base_path')} "
                        f"(sha256 {meta.get('base_sha256', '?')[:12]}), not on this model's base "
                        f"{model.base_ref.get('path')} (sha256 {(own or '?')[:12]})")


def _checked_state(state: dict, own: dict, path: Path, what: str) -> dict:
    """`state` if it has exactly `own`'s keys and shapes, else a user error naming the first mismatch."""
    for key, value in own.items():
        if key not in state:
            raise VifiError(f"checkpoint {path} lacks '{key}': it does not match {what}")
        if state[key].shape != value.shape:
            raise VifiError(f"checkpoint {path} does not match {what}: '{key}' has shape "
                            f"{tuple(state[key].shape)}, the model expects {tuple(value.shape)}")
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise VifiError(f"checkpoint {path} has keys this model lacks (first: {unexpected[0]})")
    return state


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: 8-byte little-endian header length, then a JSON object
    return len(head) == 9 and head[8:9] == b"{"


def build_from_checkpoint(path: str | Path, train_mode: str = "frozen", clip: str | None = None):
    """A ViFiCLIP from a vifi checkpoint, a vifi prompt artifact (with its base) or a paper release `.pth`.

    `clip`: CLIP weights, needed only by paper releases (they lack the token-embedding table).
    """
    from vifi.model.backbone import build_clip
    from vifi.model.vifi_clip import ViFiCLIP

    path = resolve_checkpoint(path)
    if not is_safetensors(path):
        from vifi.model.paper_import import load_paper_checkpoint

        model, meta = load_paper_checkpoint(path, clip)
        if train_mode != "prompt":
            model.set_train_mode(train_mode if model.prompts is None else "frozen")
        return model, meta
    meta = read_metadata(path)
    if meta.get("format") == PROMPT_FORMAT:
        from vifi.config import PromptConfig

        base = Path(meta["base_path"])
        if not base.is_file():
            raise VifiError(f"prompt artifact {path} needs its base checkpoint {base}, which is not there")
        model, _ = build_from_checkpoint(base, "frozen", clip)
        add_prompts(model, PromptConfig.model_validate_json(meta["prompt"]), base)
        load_weights_into(model, path)
        model.set_train_mode("prompt" if train_mode == "prompt" else "frozen")
        return model, meta
    if meta.get("format") != FORMAT:
        raise VifiError(f"{path} is not a vifi checkpoint (use `vifi export` for other formats)")
    arch = json.loads(meta["arch"])
    model = ViFiCLIP(build_clip(arch), arch, "frozen" if train_mode == "prompt" else train_mode)
    load_weights_into(model, path)
    return model, meta


def add_prompts(model, cfg, base_path: str | Path) -> None:
    """Attach fresh prompts to `model`, bound to the checkpoint file it was built from."""
    from vifi.model.prompts import Prompts

    model.attach_prompts(Prompts(cfg, model.clip))
    model.base_ref = {"path": str(Path(base_path).resolve()), "sha256": sha256_file(base_path)}
