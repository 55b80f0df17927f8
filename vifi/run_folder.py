"""The run folder: one owner of its layout, its state (started / finished), its lock and its clearing.

Layout (docs/reliability.md): config.yaml, log.csv, summary.csv, results.{csv,md,json}, predictions.csv, failed.txt,
run.log, checkpoints/ (ckpt-*.safetensors/.state.pt, latest.json, final.safetensors). Every module that reads or
writes one of these names asks this type for the path, so the names live in one place.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from vifi.errors import VifiError

LOCK_NAME = ".vifi.lock"  # kept between runs: deleting a lock file another process may be opening would race


class RunFolder:
    """Paths and state of one run folder (finetune / prompt), or of an evaluation's output folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # ---- layout ---------------------------------------------------------------------------------------------
    config = property(lambda self: self.path / "config.yaml")
    log = property(lambda self: self.path / "log.csv")
    summary = property(lambda self: self.path / "summary.csv")
    results_csv = property(lambda self: self.path / "results.csv")
    results_md = property(lambda self: self.path / "results.md")
    results_json = property(lambda self: self.path / "results.json")
    predictions = property(lambda self: self.path / "predictions.csv")
    failed = property(lambda self: self.path / "failed.txt")
    run_log = property(lambda self: self.path / "run.log")
    per_class = property(lambda self: self.path / "per_class.csv")
    confusion = property(lambda self: self.path / "confusion.csv")
    checkpoints = property(lambda self: self.path / "checkpoints")
    tensorboard = property(lambda self: self.path / "tensorboard")  # --report-to tensorboard
    wandb_id = property(lambda self: self.path / "wandb-id.txt")  # --report-to wandb: one W&B run per folder
    latest = property(lambda self: self.checkpoints / "latest.json")
    final_weights = property(lambda self: self.checkpoints / "final.safetensors")
    lock_file = property(lambda self: self.path / LOCK_NAME)

    def run_files(self) -> tuple[Path, ...]:
        """Files a run writes at the top of the folder (what --overwrite removes, with checkpoints/)."""
        return (self.config, self.log, self.summary, self.results_csv, self.results_md, self.results_json,
                self.predictions, self.failed, self.run_log, self.per_class, self.confusion, self.wandb_id)

    # ---- state ----------------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.results_json.is_file()

    @property
    def started(self) -> bool:
        """A complete checkpoint exists (latest.json is written last, so it names a whole set)."""
        return self.latest.is_file()

    def read_latest(self) -> dict | None:
        return json.loads(self.latest.read_text()) if self.latest.is_file() else None

    # ---- lock -----------------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Hold an advisory lock on the folder until this process exits (or `unlock`).

        flock is released by the kernel when the process dies, even by kill -9, so no stale lock is ever left;
        the file's text (pid, host, command) only serves the message of the run that is refused.
        """
        if self._lock_fd is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise VifiError(f"{self.path} is in use by another run ({holder}); wait for it to finish, stop it, "
                            f"or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # ---- clearing -------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove a previous run's files (--overwrite). Call only once every new input has been validated."""
        for path in self.run_files():
            path.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)  # else the old run's curves would mix with the new


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that is just starting"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: {info.get('command')}"
