"""DataLoader worker set-up shared by every loader of the engine."""

from __future__ import annotations

import atexit
import multiprocessing
import signal

# Signals a cluster or a terminal sends to the whole process group to stop a run (docs/reliability.md).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def ignore_stop_signals(_worker_id: int) -> None:
    """worker_init_fn: workers ignore the stop signals, so only the main process reacts (checkpoint, exit).

    Schedulers (Slurm, Kubernetes) and Ctrl-C signal the whole process group; a worker that died of the signal
    would make the main process fail with "DataLoader worker killed by signal" before it could save anything.
    The workers still end with the main process: PyTorch stops them when the loader goes away.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def init_worker(worker_id: int, then=None) -> None:
    """The engine's worker_init_fn (vifi/engine/loaders.py): stop signals ignored, then the caller's own init."""
    ignore_stop_signals(worker_id)
    if then is not None:
        then(worker_id)


def _kill_leftover_workers() -> None:
    """At exit, multiprocessing stops live daemonic children with SIGTERM and then waits for them; loader workers
    ignore SIGTERM, so a loader not read to its end would make the process hang at exit. Registered after
    multiprocessing's own exit hook, this runs first and ends such workers with SIGKILL (they hold nothing to save)."""
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


atexit.register(_kill_leftover_workers)
