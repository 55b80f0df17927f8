"""Atomic file writes: temp file in the same folder, fsync, rename. A reader never sees half a file.

Outputs that are not regular files (`-` for stdout, a FIFO, /dev/stdout, a terminal) are written through instead:
renaming over them would replace the device or pipe with a regular file (docs/reliability.md). So are paths that
name a file descriptor (/dev/stdout, /dev/fd/N, /proc/self/fd/N, or a link to one) whatever the descriptor is
connected to, a regular file included (`> log`, cron, Slurm --output): the bytes go to that descriptor, at its
offset, and the link is never renamed over (as root, that would replace the system's /dev/stdout).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vifi.errors import VifiError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync it and rename it over `path`.

    On any exception the temporary file is removed and `path` is left exactly as it was.
    """
    path = Path(path)
    if is_stream(path):
        with _written_through(path) as tmp:
            yield tmp
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode a plain open() would
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


STDOUT = "-"
_STD_NAMES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_FD_PATH = re.compile(r"/(?:proc/(?:self|thread-self|(?P<pid>\d+))|dev)/fd/(?P<fd>\d+)")


def descriptor_of(path: str | os.PathLike) -> tuple[int | None, int] | None:
    """(pid or None for this process, fd) when `path` names a file descriptor, directly or through symbolic links;
    else None. The links are followed one at a time: resolving /proc/self/fd/1 whole would give the file behind it."""
    if str(path) == STDOUT:
        return None, 1
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on nested links
        if current in _STD_NAMES:
            return None, _STD_NAMES[current]
        match = _FD_PATH.fullmatch(current)
        if match:
            pid = int(match["pid"]) if match["pid"] else None
            return (None if pid == os.getpid() else pid), int(match["fd"])
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def is_stdout(path: str | os.PathLike | None) -> bool:
    """The output is this process's stdout (`-`, /dev/stdout, /proc/self/fd/1 or a link to one): what goes there
    must be the output alone, so tables move to stderr."""
    return path is not None and descriptor_of(path) == (None, 1)


def is_stream(path: str | os.PathLike) -> bool:
    """`-` (stdout), a path naming a file descriptor, or an existing path that is not a regular file (FIFO,
    character device, socket)."""
    if str(path) == STDOUT or descriptor_of(path) is not None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextmanager
def _written_through(path: Path) -> Iterator[Path]:
    """Yield a private temp file; on success copy its bytes into the stream (a reader sees nothing on failure)."""
    with tempfile.TemporaryDirectory(prefix="vifi-out-") as folder:
        tmp = Path(folder) / "out"
        tmp.touch()
        yield tmp
        named = descriptor_of(path)
        if named is not None and named[0] is None:  # one of this process's descriptors: write to it as it is
            _write_to_descriptor(named[1], tmp)
        elif named is not None:  # another process's descriptor: open it anew, appending (never truncating)
            with open(tmp, "rb") as src, open(path, "ab") as dst:
                shutil.copyfileobj(src, dst)
        else:
            with open(tmp, "rb") as src, open(path, "wb") as dst:  # no O_TRUNC trouble: FIFOs/devices ignore it
                shutil.copyfileobj(src, dst)


def _write_to_descriptor(fd: int, source: Path) -> None:
    """The bytes of `source` written to `fd` at its current offset (after whatever Python buffered for it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    with open(source, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view):]


def check_output_path(path: str | os.PathLike, *, folder: bool, flag: str = "--out",
                      overwrite: bool | None = None) -> None:
    """Refuse an output that cannot be written, before any work: one error naming the flag and what to do.

    `folder`: the output is a folder (run / eval outputs) rather than one file. Streams (`-`, FIFOs, devices,
    descriptors) are fine for file outputs. `overwrite` (file outputs of commands with an --overwrite flag): False
    refuses an existing regular file, so nothing the user had is replaced without --overwrite (README).
    Permissions: os.access on the nearest existing folder (root passes it anywhere, so a read-only file system is
    checked with statvfs too); a regular file on the way fails for everyone.
    """
    path = Path(path)
    if not folder and is_stream(path):
        return
    if folder and str(path) == STDOUT:
        raise VifiError(f"{flag} - (stdout) takes single-file outputs; this command writes a folder of files: "
                        "give a folder")
    if path.exists():
        if folder and not path.is_dir():
            raise VifiError(f"{flag} {path} is a file, not a folder; choose a folder for the outputs")
        if not folder and path.is_dir():
            raise VifiError(f"{flag} {path} is a folder; give a file name")
        if not folder and overwrite is False:
            raise VifiError(f"{flag} {path} exists; pass --overwrite to replace it, or choose another {flag}")
    existing = path if (folder and path.is_dir()) else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise VifiError(f"{flag} {path}: {existing} is a file, so nothing can be created under it; choose another {flag}")
    target = path if path.exists() else existing
    if not os.access(target, os.W_OK | os.X_OK if target.is_dir() else os.W_OK):
        raise VifiError(f"{flag} {path}: no permission to write in {target}; choose a writable place")
    try:
        probe_ok = os.statvfs(existing).f_flag & os.ST_RDONLY == 0
    except OSError:
        probe_ok = True
    if not probe_ok:
        raise VifiError(f"{flag} {path}: {existing} is on a read-only file system; choose a writable place")
    # Some file systems pass both checks and still take no new entries (/proc, /sys): create and remove one.
    try:
        fd, probe = tempfile.mkstemp(prefix=".vifi-probe-", dir=existing)
    except OSError as err:
        raise VifiError(f"{flag} {path}: cannot create files in {existing} ({err.strerror}); choose a writable "
                        "place") from None
    os.close(fd)
    os.unlink(probe)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (checkpoints can be GBs)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_cached(path: str | os.PathLike) -> str:
    """sha256_file, remembered for this process by (real path, size, mtime): a protocol compares one checkpoint
    with many of its results, and a GB checkpoint should be read once, not once per result."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(real)
    return _SHA_MEMO[key]


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
