"""vifi checkpoints: one safetensors file of CLIP weights (or of prompt tensors) whose metadata is the checkpoint's
facts (vifi.model.facts): architecture, train mode, frames, input size, template, prompt sizes, base.

The facts travel with the weights, so `vifi eval --checkpoint X` rebuilds and feeds the model without the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from vifi.errors import CheckpointError
from vifi.fileio import atomic_path, sha256_file
from vifi.model.facts import CheckpointFacts, describe, from_metadata, to_metadata

FORMAT = "vifi-clip/1"
HUB_PREFIX = "hf-hub:"
PROMPT_FORMAT = "vifi-prompts/1"  # prompt tensors only, bound to the base checkpoint they were learned on


def save_weights(path: str | Path, model, facts: CheckpointFacts | Mapping[str, Any] | None = None) -> None:
    """Weights + the checkpoint's facts as metadata. A prompting model saves its prompt tensors only (bound to its
    base by path + hash); any other model all CLIP weights.

    `facts`: the record, or the run facts (frames, template, ...) as keywords of `facts.describe`.
    """
    write_weights(path, *weights_snapshot(model, facts))


def weights_snapshot(model, facts: CheckpointFacts | Mapping[str, Any] | None = None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(host copies of the tensors `save_weights` writes, its metadata): what a checkpoint written later, in the
    background, holds — the model may change in place meanwhile (vifi/engine/checkpointing.py)."""
    if not isinstance(facts, CheckpointFacts):
        facts = describe(model, **dict(facts or {}))
    if facts.arch != model.arch:
        raise ValueError("facts describe another architecture than the model being saved")
    if facts.train_mode == "prompt":
        if model.prompts is None or facts.prompt != model.prompts.cfg or not facts.base_sha256:
            raise ValueError("prompt facts need the model's prompts and the base they were learned on")
        state, fmt = model.prompts.state_dict(), PROMPT_FORMAT
    else:
        state, fmt = model.clip.state_dict(), FORMAT
    # copy=True: on CPU .cpu() would return the live tensor itself
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    return tensors, {"format": fmt, **to_metadata(facts)}


def write_weights(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({str(exc).splitlines()[0][:120]})") from None


def read_facts(path: str | Path) -> CheckpointFacts:
    """The facts of a vifi checkpoint or prompt artifact file."""
    meta = read_metadata(path)
    if meta.get("format") not in (FORMAT, PROMPT_FORMAT):
        raise CheckpointError(f"{path} is not a vifi checkpoint (use `vifi export` for other formats)")
    return from_metadata(meta, str(path))


def resolve_checkpoint(path: str | Path) -> Path:
    """A weights file, a run folder (its final weights, else its latest complete checkpoint), or
    `hf-hub:ORG/NAME[/FILE]`: that file of a Hub repository, through huggingface_hub's cache (docs/api.md)."""
    from vifi.run_folder import RunFolder

    if str(path).startswith(HUB_PREFIX):
        from vifi.model.pretrained import fetch_hub_checkpoint

        return fetch_hub_checkpoint(str(path)[len(HUB_PREFIX):])
    path = Path(path)
    if path.is_dir():
        run = RunFolder(path)
        for candidate in (run.final_weights, path / run.final_weights.name):  # a run folder, or its checkpoints/
            if candidate.is_file():
                return candidate
        if run.started:
            return run.checkpoints / run.read_latest()["weights"]
        raise CheckpointError(f"{path} is a folder without vifi checkpoints (expected checkpoints/final.safetensors)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_weights_into(model, path: str | Path) -> CheckpointFacts:
    """Load a vifi checkpoint into `model`; a different architecture is a user error naming the first mismatch."""
    from safetensors.torch import load_file

    path = resolve_checkpoint(path)
    facts = read_facts(path)
    if facts.train_mode == "prompt":
        _check_same_base(model, facts, path)
        model.prompts.load_state_dict(_checked_state(load_file(str(path)), model.prompts.state_dict(), path,
                                                     "prompt sizes"))
        return facts
    model.clip.load_state_dict(_checked_state(load_file(str(path)), model.clip.state_dict(), path,
                                              f"the architecture {model.arch_name()} (another architecture)"))
    return facts


def _check_same_base(model, facts: CheckpointFacts, path: Path) -> None:
    if model.prompts is None:
        raise CheckpointError(f"{path} holds prompts only; load it with `vifi eval --checkpoint {path}` (it names its base)")
    own = model.base_ref.get("sha256")
    if own != facts.base_sha256:
        raise CheckpointError(f"prompt artifact {path} was learned on base {facts.base_path} "
                        f"(sha256 {(facts.base_sha256 or '?')[:12]}), not on this model's base "
                        f"{model.base_ref.get('path')} (sha256 {(own or '?')[:12]})")


def _checked_state(state: dict, own: dict, path: Path, what: str) -> dict:
    """`state` if it has exactly `own`'s keys and shapes, else a user error naming the first mismatch."""
    for key, value in own.items():
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks '{key}': it does not match {what}")
        if state[key].shape != value.shape:
            raise CheckpointError(f"checkpoint {path} does not match {what}: '{key}' has shape "
                            f"{tuple(state[key].shape)}, the model expects {tuple(value.shape)}")
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise CheckpointError(f"checkpoint {path} has keys this model lacks (first: {unexpected[0]})")
    return state


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: 8-byte little-endian header length, then a JSON object
    return len(head) == 9 and head[8:9] == b"{"


def build_from_checkpoint(path: str | Path, train_mode: str = "frozen", clip: str | None = None):
    """(ViFiCLIP, its CheckpointFacts) from a vifi checkpoint, a vifi prompt artifact (with its base) or a paper
    release `.pth`.

    `clip`: CLIP weights, needed only by paper releases (they lack the token-embedding table).
    """
    from vifi.model.backbone import build_clip
    from vifi.model.vifi_clip import ViFiCLIP

    path = resolve_checkpoint(path)
    if not is_safetensors(path):
        from vifi.model.paper_import import load_paper_checkpoint

        model, facts = load_paper_checkpoint(path, clip)
        if train_mode != "prompt":
            model.set_train_mode(train_mode if model.prompts is None else "frozen")
        return model, facts
    facts = read_facts(path)
    if facts.train_mode == "prompt":
        base = Path(facts.base_path or "")
        if not base.is_file():
            raise CheckpointError(f"prompt artifact {path} needs its base checkpoint {base}, which is not there")
        model, _ = build_from_checkpoint(base, "frozen", clip)
        add_prompts(model, facts.prompt, base)
        load_weights_into(model, path)
        model.set_train_mode("prompt" if train_mode == "prompt" else "frozen")
        return model, facts
    model = ViFiCLIP(build_clip(facts.arch), facts.arch, "frozen" if train_mode == "prompt" else train_mode)
    load_weights_into(model, path)
    return model, facts


def add_prompts(model, cfg, base_path: str | Path) -> None:
    """Attach fresh prompts to `model`, bound to the checkpoint file it was built from."""
    from vifi.model.prompts import Prompts

    model.attach_prompts(Prompts(cfg, model.clip))
    model.base_ref = {"path": str(Path(base_path).resolve()), "sha256": sha256_file(base_path)}
