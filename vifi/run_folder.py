"""The run folder: one owner of its layout, its state (started / finished), its lock and its clearing.

Layout (docs/reliability.md): config.yaml, log.csv, summary.csv, results.{csv,md,json}, predictions.csv, failed.txt,
run.log, checkpoints/ (ckpt-*.safetensors/.state.pt, latest.json, final.safetensors). Every module that reads or
writes one of these names asks this type for the path, so the names live in one place.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import struct
import sys
import time
from pathlib import Path

from vifi.errors import VifiError

LOCK_NAME = ".vifi.lock"  # kept between runs: deleting a lock file another process may be opening would race

# The lock files this process holds (real path -> descriptor). A POSIX record lock is released when the process
# closes ANY descriptor of the file, so the file is opened once per process and never again while it is held.
_HELD: dict[str, int] = {}


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
        """Hold an exclusive lock on the folder until this process exits (or `unlock`).

        A POSIX record lock (`fcntl.lockf`, F_SETLK) belongs to this process alone: forked children (DataLoader
        workers) do not inherit it, so a kill -9 of this process frees the folder at once even while orphaned
        workers live on (an flock would stay held by them). The kernel drops it when the process dies, however it
        dies. The file's text (pid, host, command) only serves the message of the run that is refused.
        """
        if self._lock_fd is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.lock_file)
        if key in _HELD:  # opening the file again and closing it would drop the lock this process holds
            raise VifiError(f"{self.path} is in use by this process already (pid {os.getpid()}); choose another "
                            "--out")
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(3):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise VifiError(f"{self.path}: cannot lock {self.lock_file} ({exc.strerror}); choose another "
                                    "--out") from None
                owner = _lock_owner(fd)
                if owner == 0 and attempt < 2:  # the holder ended between the two calls: try again
                    continue
                holder = _describe_holder(fd, owner)
                os.close(fd)  # this process holds no lock on the file (checked above), so nothing is released
                raise VifiError(f"{self.path} is in use by another run ({holder}); wait for it to finish, stop it, "
                                f"or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        os.fsync(fd)
        self._lock_fd = fd
        _HELD[key] = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the record lock
            _HELD.pop(os.path.realpath(self.lock_file), None)
            self._lock_fd = None

    def holder(self) -> dict:
        """What the lock file records (pid, host, command, since); read through the held descriptor if this
        process holds the lock (opening the file anew and closing it would release it)."""
        if self._lock_fd is not None:
            return _read_record(self._lock_fd)
        key = os.path.realpath(self.lock_file)
        if key in _HELD:
            return _read_record(_HELD[key])
        try:
            return json.loads(self.lock_file.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    # ---- clearing -------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove a previous run's files (--overwrite). Call only once every new input has been validated."""
        for path in self.run_files():
            path.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)  # else the old run's curves would mix with the new


def _read_record(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


_FLOCK = "hhqqi"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (+ padding, given below)


def _lock_owner(fd: int) -> int | None:
    """The pid holding a conflicting record lock on the file (F_GETLK), 0 if none now, None if unknown."""
    try:
        probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0) + bytes(16)
        l_type, _, _, _, pid = struct.unpack_from(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    except (OSError, struct.error):
        return None
    if l_type == fcntl.F_UNLCK:
        return 0
    return pid if pid > 0 else None  # -1: an open-file-description lock, no owning process


def pid_alive(pid: int) -> bool:
    """A process with this pid exists on this host (a zombie counts until reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _describe_holder(fd: int, owner: int | None) -> str:
    """Who holds the lock, never a dead process: the record names the holder only when the kernel agrees (or, for
    another host, when it cannot be asked); a record left by a dead run while a new one is starting is ignored."""
    info = _read_record(fd)
    pid, here = info.get("pid"), info.get("host") == socket.gethostname()
    recorded = f"pid {pid} on {info.get('host')} since {info.get('since')}: {info.get('command')}"
    if info and not here:
        return recorded
    if info and (pid == owner or (owner is None and isinstance(pid, int) and pid_alive(pid))):
        return recorded
    if owner:
        return f"pid {owner} on {socket.gethostname()}, just starting"
    return "a process that is just starting"
