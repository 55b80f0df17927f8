"""Output folders of `vifi prepare` and `vifi splits`: complete or absent, never a mix of two runs.

The folder is checked before any work (a file in the way, an unwritable place, an existing output without
`--overwrite`), built in a temporary sibling, and moved into place only when every file is written; a failed or
interrupted run leaves the previous folder as it was. `--overwrite` replaces only a folder that the same command
wrote (it holds that command's record file), so a mistyped `--out` never deletes someone's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vifi.errors import VifiError
from vifi.fileio import check_output_path


def check_writable_place(path: Path, flag: str) -> None:
    """`path` (a folder to create or fill) can be made: no file in the way, the nearest existing folder writable."""
    check_output_path(path, folder=True, flag=flag)  # the one output check (vifi/fileio.py)


def check_out_folder(out: Path, flag: str, overwrite: bool, record: str) -> None:
    """Refuse, before any work, an `out` that cannot be written or holds an earlier output (unless `overwrite`)."""
    check_writable_place(out, flag)
    check_writable_place(out.parent, flag)  # the temporary sibling and the final rename happen in the parent
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
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise VifiError(f"{flag} {out}: cannot create a folder there ({exc.strerror}); choose another place") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the mode mkdir would
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(new: Path, out: Path) -> None:
    if not out.exists():
        os.replace(new, out)
        return
    # Move the old folder aside first (a rename cannot replace a non-empty folder), then delete it.
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
