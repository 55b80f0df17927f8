"""Where vifi's output goes: the one owner of stdout and stderr.

stdout carries only the results a user asked for (a table, CSV or JSON), so `vifi … --out - | sort` works;
progress, notices and warnings go to stderr. `--quiet` silences notices and progress (not warnings or results).
Under torchrun only rank 0 speaks: every rank would otherwise print the same line with its local numbers.
A run can mirror everything it says on stderr into a file (`run.log` in the run folder).
"""

from __future__ import annotations

import os
import sys
from typing import IO

_quiet = False
_stdout_reserved = False  # --json / --out -: stdout carries one machine-readable result, tables move to stderr
_mirror: IO[str] | None = None


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


def reserve_stdout(reserved: bool = True) -> None:
    """stdout will carry a machine-readable result (--json, --out -): human tables go to stderr instead."""
    global _stdout_reserved
    _stdout_reserved = bool(reserved)


def is_main_rank() -> bool:
    """Rank 0 of a torchrun job, or a plain process (torchrun sets RANK before Python starts)."""
    return os.environ.get("RANK", "0") == "0"


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def result(text: str) -> None:
    """Results the user asked for, on stdout (rank 0 only; not silenced by --quiet)."""
    if not is_main_rank():
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    """A notice or progress line on stderr; silenced by --quiet."""
    if _quiet or not is_main_rank():
        return
    _err_line(message)


def warn(message: str) -> None:
    """A warning on stderr (`warning: …`); shown even with --quiet, because it changes what the numbers mean."""
    if not is_main_rank():
        return
    _err_line(f"warning: {message}")


def _err_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
    mirror_line(line)


def mirror_line(line: str) -> None:
    """Copy one line into the run log, if one is open (progress bars call this for their plain lines)."""
    if _mirror is not None:
        _mirror.write(line.rstrip("\n") + "\n")
        _mirror.flush()


def print_rich(renderable, *, to_stdout: bool) -> None:
    """A rich table: on stdout when it is the result asked for (and stdout is not reserved for JSON/CSV),
    else on stderr (then silenced by --quiet)."""
    to_stdout = to_stdout and not _stdout_reserved
    if not is_main_rank() or (_quiet and not to_stdout):
        return
    from rich.console import Console

    console = Console(file=sys.stdout if to_stdout else sys.stderr, record=_mirror is not None)
    console.print(renderable)
    if _mirror is not None:
        mirror_line(console.export_text())


def start_mirror(path: str | os.PathLike) -> None:
    """From now on append every stderr notice, warning and table to `path` (a run's `run.log`), on rank 0.

    Not a context manager on purpose: the run folder is validated (and cleared on --overwrite) inside the run,
    so the mirror can only start there; a later start_mirror or the end of the process closes it.
    """
    global _mirror
    stop_mirror()
    if is_main_rank():
        _mirror = open(path, "a", encoding="utf-8")


def stop_mirror() -> None:
    global _mirror
    if _mirror is not None:
        _mirror.close()
        _mirror = None
