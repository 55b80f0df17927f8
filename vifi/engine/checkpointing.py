"""Training checkpoints: weights (safetensors) + state (optimizer, scaler, progress), then a pointer written last.

checkpoints/ckpt-{step}.safetensors, checkpoints/ckpt-{step}.state.pt, checkpoints/latest.json. A checkpoint
exists only once latest.json names it; a crash while writing leaves the previous one intact.

Rank 0 writes in a background thread (`CheckpointWriter`) from host copies taken when the checkpoint is asked for,
so training goes on while the files are written (docs/performance.md); one write at a time, in order.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from vifi.errors import VifiError
from vifi.fileio import atomic_path, write_json_atomic
from vifi.model.checkpoint import weights_snapshot, write_weights
from vifi.run_folder import RunFolder


def checkpoint_dir(run_dir: Path) -> Path:
    return RunFolder(run_dir).checkpoints


def save_training_checkpoint(run_dir: Path, model, optimizer, scaler, progress: dict[str, Any], keep_last: int,
                             extra_meta: dict[str, Any]) -> None:
    """Take the checkpoint and write it now (CheckpointWriter writes the same snapshot in the background)."""
    write_snapshot(run_dir, snapshot(model, optimizer, scaler, progress, extra_meta), keep_last)


def _host_copy(obj):
    """`obj` with every tensor copied to host memory (copy=True: on CPU .cpu() would return the live tensor)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_copy(v) for v in obj)
    return obj


def snapshot(model, optimizer, scaler, progress: dict[str, Any], extra_meta: dict[str, Any]) -> dict[str, Any]:
    """Everything a training checkpoint holds, as host copies: the run may change the live tensors right after."""
    tensors, metadata = weights_snapshot(model, extra_meta)
    return {"weights": tensors, "metadata": metadata, "progress": dict(progress),
            "state": {"optimizer": _host_copy(optimizer.state_dict()),
                      "scaler": scaler.state_dict() if scaler is not None else None, "progress": dict(progress)}}


def write_snapshot(run_dir: Path, snap: dict[str, Any], keep_last: int) -> None:
    folder = checkpoint_dir(run_dir)
    progress = snap["progress"]
    stem = f"ckpt-{progress['step']:07d}"
    try:
        write_weights(folder / f"{stem}.safetensors", snap["weights"], snap["metadata"])
        with atomic_path(folder / f"{stem}.state.pt") as tmp:
            torch.save(snap["state"], tmp)
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


class CheckpointWriter:
    """Writes training checkpoints in a background thread, one at a time and in order.

    `save` takes the host copy at once (the only part the training loop waits for), then returns while a thread
    writes the files; a write that fails is raised at the next `save` or `wait`. The thread is not a daemon, so a
    normal exit finishes the write; a crash or SIGKILL mid-write leaves the previous checkpoint, since latest.json
    is replaced last and every file atomically.
    """

    def __init__(self, background: bool = True):
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, run_dir: Path, model, optimizer, scaler, progress: dict[str, Any], keep_last: int,
             extra_meta: dict[str, Any]) -> None:
        self.wait()
        snap = snapshot(model, optimizer, scaler, progress, extra_meta)
        if not self.background:
            write_snapshot(run_dir, snap, keep_last)
            return

        def write():
            try:
                write_snapshot(run_dir, snap, keep_last)
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread at the next wait
                self._error = exc
        self._thread = threading.Thread(target=write, name=f"vifi-checkpoint-{progress['step']}")
        self._thread.start()

    def wait(self) -> None:
        """Until the last checkpoint asked for is on disk; raises what its write raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error


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
