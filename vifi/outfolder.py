"""Output folders of `vifi prepare` and `vifi splits`: complete or absent, never a mix of two runs.

The folder is checked before any work (a file in the way, an unwritable place, an existing output without
`--overwrite`), built in a temporary sibling, and moved into place only when every file is written; a failed or
interrupted run leaves the previous folder as it was. `--overwrite` replaces only a folder that the same command
wrote (it holds that command's record file), so a mistyped `--out` never deletes someone's data.

The temporary siblings are named `.NAME.<pid>.<random>.partial` (the new folder being built) and `.old` (the
previous folder, moved aside during the swap). A run killed during the swap leaves one of them; the next run of any
command on NAME finishes or rolls back that swap first (`recover`) and says so, so two versions never remain.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vifi import console
from vifi.errors import VifiError
from vifi.fileio import check_output_path
from vifi.run_folder import pid_alive

_SIBLING = re.compile(r"(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.(?P<kind>partial|old)")  # after ".NAME."; no pid: older vifi


def check_writable_place(path: Path, flag: str) -> None:
    """`path` (a folder to create or fill) can be made: no file in the way, the nearest existing folder writable."""
    check_output_path(path, folder=True, flag=flag)  # the one output check (vifi/fileio.py)


def check_out_folder(out: Path, flag: str, overwrite: bool, record: str) -> None:
    """Refuse, before any work, an `out` that cannot be written or holds an earlier output (unless `overwrite`)."""
    check_writable_place(out, flag)
    check_writable_place(out.parent, flag)  # the temporary sibling and the final rename happen in the parent
    recover(out, flag)
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not held:
        return
    if not overwrite:
        raise VifiError(f"{flag} {out} already holds {held[0]}" + (f" and {len(held) - 1} more" if len(held) > 1
                        else "") + "; pass --overwrite to replace that folder, or choose another")
    if not (out / record).is_file():
        raise VifiError(f"{flag} {out} holds files this command did not write (no {record}; first: {held[0]}); "
                        "--overwrite replaces only such outputs: choose another folder")


@contextmanager
def staged_folder(out: Path, flag: str, overwrite: bool, record: str) -> Iterator[Path]:
    """Yield an empty temporary sibling of `out` to fill; on success it replaces `out` in two renames."""
    check_out_folder(out, flag, overwrite, record)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = _sibling(out, "partial")
    except OSError as exc:
        raise VifiError(f"{flag} {out}: cannot create a folder there ({exc.strerror}); choose another place") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the mode mkdir would
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def replaced_when_done(out: Path, overwrite: bool, record: str, *, active: bool = True) -> Iterator[Path]:
    """Where an output that may replace an earlier one is written: `out` itself when it holds no earlier result
    (no `record` file), else (with `overwrite`) a staged sibling swapped in at the end, so the previous result stays
    whole until the new one is complete and nothing of it survives after (evaluation outputs, --wise-ft α folders
    included). `active` False (ranks other than 0): `out` is only a name, nothing is written or swapped."""
    if not active:
        yield out
        return
    if not (out / record).is_file():
        recover(out)
        yield out
        return
    with staged_folder(out, "--out", overwrite, record) as staging:
        yield staging


def _replace_folder(new: Path, out: Path) -> None:
    if not out.exists():
        os.replace(new, out)
        return
    # Move the old folder aside first (a rename cannot replace a non-empty folder), then delete it. Killed at any
    # step, this leaves `out` plus a sibling, or only the `.old` sibling: `recover` finishes or undoes it.
    old = _sibling(out, "old")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _sibling(out: Path, kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=f".{kind}", dir=out.parent))


def leftovers(out: Path) -> list[tuple[Path, str, int | None]]:
    """(path, "partial" | "old", pid or None) of the temporary siblings of `out` that runs left behind."""
    prefix = f".{out.name}."
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = _SIBLING.fullmatch(entry.name[len(prefix):]) if entry.name.startswith(prefix) else None
        if match and entry.is_dir() and not entry.is_symlink():
            found.append((entry, match["kind"], int(match["pid"]) if match["pid"] else None))
    return sorted(found, key=lambda item: item[0].stat().st_mtime_ns)


def recover(out: Path, flag: str = "--out") -> None:
    """Finish or roll back a replacement of `out` that a killed run left half done; one notice when anything is.

    `out` present: the swap had moved the new folder into place (or had not yet moved the old one aside), so the
    `.old` sibling is the previous version, removed. `out` absent and a `.old` sibling: the new folder was never
    moved into place, so the previous one is put back. `.partial` siblings are unfinished builds, removed. Siblings
    of a process that is still running (its pid in the name) are its work in progress and left alone.
    """
    dead = [(path, kind) for path, kind, pid in leftovers(out) if pid is None or not pid_alive(pid)]
    if not dead:
        return
    olds = [path for path, kind in dead if kind == "old" and any(path.iterdir())]
    said = []
    if not out.exists() and olds:
        os.replace(olds.pop(), out)  # the newest previous version (there is one unless runs overlapped)
        said.append(f"restored the previous {out.name} (the new one had not been moved into place)")
    elif olds:
        said.append("removed the previous version (the new one was already in place)")
    if any(kind == "partial" for _, kind in dead):
        said.append("removed an unfinished build")
    for path, _ in dead:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
    console.note(f"{flag} {out}: an earlier run was interrupted while writing this folder; " + "; ".join(said or
                 ["removed its empty temporary folder"]))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
