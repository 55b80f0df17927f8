"""Video decoding backends. Both return uint8 frames [K, H, W, 3] (RGB) for the requested indices.

decord is the default (one batched `get_batch` per video); PyAV is the fallback and gives the same frames for the
same indices (it decodes sequentially and keeps the frames asked for).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from vifi.errors import VifiError


# File suffixes treated as videos when a folder is scanned (prepare, zeroshot).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv")


class DecodeError(VifiError):
    pass


def _import_decord():
    # decord ships its own FFmpeg libraries; loaded before PyAV's, they shadow PyAV's encoders (libvpx fails to
    # open). Importing PyAV first keeps both working in one process.
    import av  # noqa: F401
    import decord

    # FFmpeg's own log lines ("moov atom not found") would duplicate our one-line DecodeError on stderr.
    decord.logging.set_level(decord.logging.QUIET)
    return decord


def _decord_reader(path: str):
    decord = _import_decord()

    try:
        with _native_stderr_silenced():
            return decord.VideoReader(path, num_threads=1)
    except Exception as exc:  # noqa: BLE001 - decord raises its own error types
        raise DecodeError(f"cannot decode video {path}: {str(exc).splitlines()[0][:160]}") from None


@contextlib.contextmanager
def _native_stderr_silenced():
    """decord's C++ logger prints "ERROR opening ..." to fd 2 before raising; our DecodeError says it in one line."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_DECORD_OK: bool | None = None


def resolve_backend(backend: str) -> str:
    """`decord` when it is importable, else `pyav` (same frames for the same indices), with a one-time notice."""
    global _DECORD_OK
    if backend != "decord":
        return backend
    if _DECORD_OK is None:
        try:
            _import_decord()
            _DECORD_OK = True
        except ImportError:
            _DECORD_OK = False
            import sys

            print("notice: decord is not installed on this platform; decoding with PyAV (same frames, slower)",
                  file=sys.stderr)
    return "decord" if _DECORD_OK else "pyav"


def count_frames(path: str | Path, backend: str = "decord") -> int:
    path = str(path)
    if resolve_backend(backend) == "decord":
        return len(_decord_reader(path))
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, IndexError) as exc:
        raise DecodeError(f"cannot decode video {path}: {exc}") from None


def read_frames(path: str | Path, indices_fn, backend: str = "decord") -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames `indices_fn(num_frames)` selects. Returns (frames [K,H,W,3] uint8, indices)."""
    path = str(path)
    if resolve_backend(backend) == "decord":
        reader = _decord_reader(path)
        n = len(reader)
        if n == 0:
            raise DecodeError(f"video {path} has no frames")
        indices = np.asarray(indices_fn(n)).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        try:
            frames = reader.get_batch(unique.tolist()).asnumpy()
        except Exception as exc:  # noqa: BLE001
            raise DecodeError(f"cannot decode frames of {path}: {str(exc).splitlines()[0][:160]}") from None
        return frames[inverse], indices
    return _read_frames_pyav(path, indices_fn)


def _read_frames_pyav(path: str, indices_fn):
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as exc:
        raise DecodeError(f"cannot decode video {path}: {exc}") from None
    if not decoded:
        raise DecodeError(f"video {path} has no frames")
    indices = np.asarray(indices_fn(len(decoded))).reshape(-1)
    return np.stack([decoded[i] for i in indices]), indices
