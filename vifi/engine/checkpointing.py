"""Training checkpoints: weights (safetensors) + state (optimizer, scaler, progress), then a pointer written last.

checkpoints/ckpt-{step}.safetensors, checkpoints/ckpt-{step}.state.pt, checkpoints/latest.json. A checkpoint
exists only once latest.json names it; a crash while writing leaves the previous one intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vifi.errors import VifiError
from vifi.fileio import atomic_path, write_json_atomic
from vifi.model.checkpoint import save_weights
from vifi.run_folder import RunFolder


def checkpoint_dir(run_dir: Path) -> Path:
    return RunFolder(run_dir).checkpoints


def save_training_checkpoint(run_dir: Path, model, optimizer, scaler, progress: dict[str, Any], keep_last: int,
                             extra_meta: dict[str, Any]) -> None:
    folder = checkpoint_dir(run_dir)
    stem = f"ckpt-{progress['step']:07d}"
    try:
        save_weights(folder / f"{stem}.safetensors", model, extra_meta)
        with atomic_path(folder / f"{stem}.state.pt") as tmp:
            torch.save({"optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "progress": progress}, tmp)
        write_json_atomic(RunFolder(run_dir).latest, {**progress, "weights": f"{stem}.safetensors",
                                                   "state": f"{stem}.state.pt"})
    except OSError as exc:
        previous = read_latest(run_dir)
        if previous is None or previous["weights"] != f"{stem}.safetensors":
            for suffix in (".safetensors", ".state.pt"):  # a half-finished set is not a checkpoint
                (folder / f"{stem}{suffix}").unlink(missing_ok=True)
        where = f"the previous checkpoint ({previous['weights']}) is intact" if previous else "no earlier checkpoint exists"
        raise VifiError(f"could not write checkpoint {stem} in {folder} ({exc.strerror or exc}); {where}") from None
    _prune(folder, keep_last, keep=stem)


def _prune(folder: Path, keep_last: int, keep: str) -> None:
    stems = sorted({p.name.split(".")[0] for p in folder.glob("ckpt-*.safetensors")})
    for stem in stems[:-max(keep_last, 1)]:
        if stem == keep:
            continue
        for suffix in (".safetensors", ".state.pt"):
            (folder / f"{stem}{suffix}").unlink(missing_ok=True)


def read_latest(run_dir: Path) -> dict[str, Any] | None:
    return RunFolder(run_dir).read_latest()


def load_training_state(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    latest = read_latest(run_dir)
    if latest is None:
        raise VifiError(f"--resume: {run_dir} has no complete checkpoint (checkpoints/latest.json); start without --resume")
    state = torch.load(checkpoint_dir(run_dir) / latest["state"], map_location="cpu", weights_only=True)
    return latest, state
