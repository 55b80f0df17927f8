"""Progress reporting on stderr: rich bars on a terminal, plain periodic lines otherwise (logs, CI, Slurm).

stdout stays free for results (see vifi/console.py); `--quiet` and ranks other than 0 show no progress.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from vifi import console


class _PlainBar:
    def __init__(self, description: str, total: int, every_s: float = 10.0):
        self.description, self.total, self.done = description, total, 0
        self.every_s, self.last = every_s, 0.0
        self.start = time.monotonic()

    def advance(self, n: int = 1, info: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            extra = f" {info}" if info else ""
            console.note(f"{self.description}: {self.done}/{self.total} ({now - self.start:.0f}s){extra}")


class _SilentBar:
    def advance(self, n: int = 1, info: str = "") -> None:
        pass


class _RichBar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def advance(self, n: int = 1, info: str = "") -> None:
        self.progress.update(self.task, advance=n, info=info)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    if not enabled or console.is_quiet() or not console.is_main_rank():  # silent, final line included
        yield _SilentBar()
        return
    if not console.stderr_is_terminal():
        yield _PlainBar(description, total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False,
                  console=Console(stderr=True)) as progress:
        yield _RichBar(progress, progress.add_task(description, total=total, info=""))


def map_with_progress(fn, jobs: list, *, workers: int, description: str, show_progress: bool = True) -> list:
    """[fn(job) for job in jobs], in order, in `workers` processes (1: in this one), with a progress bar."""
    results = []
    with progress_bar(description, len(jobs), enabled=show_progress) as bar:
        if workers <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.advance(1)
        else:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(fn, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers)))):
                    results.append(result)
                    bar.advance(1)
    return results
