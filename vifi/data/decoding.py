"""Video decoding backends. Both return uint8 frames [K, H, W, 3] (RGB), as displayed, for the requested indices.

decord is the default (one batched `get_batch` per video); PyAV is the fallback and gives the same frames for the
same indices (it decodes sequentially and converts to RGB only the frames asked for). Where decord fails on a video
that PyAV reads (rotated phone videos, some small H.264 sizes), that video is decoded with PyAV, with one notice.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np

from vifi.errors import VideoError


# File suffixes treated as videos when a folder is scanned (prepare, zeroshot).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv")


class DecodeError(VideoError):
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
        raise DecodeError(f"cannot decode video {path}: {clean_reason(exc)}") from None


def clean_reason(exc: BaseException) -> str:
    """One short reason for a decoding failure, without library internals (source paths, timestamps, addresses)."""
    if isinstance(exc, IndexError):
        return "no video stream"
    strerror = getattr(exc, "strerror", None)
    if strerror:  # PyAV: "[Errno 1094995529] Invalid data found when processing input: 'x.mp4'" -> the middle
        return str(strerror)
    lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    # decord: "[15:12:47] /github/workspace/src/....cc:171: Check failed: ..." -> "Check failed: ..."
    text = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[-1] if lines[-1].startswith("[") else lines[0])
    return text.strip()[:160]


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
    if backend in ("nvjpeg", "nvdec"):  # GPU backends decode training clips only; the rest reads on the CPU
        backend = "decord"
    if backend != "decord":
        return backend
    if _DECORD_OK is None:
        try:
            _import_decord()
            _DECORD_OK = True
        except ImportError:
            _DECORD_OK = False
            from vifi import console

            console.note("notice: decord is not installed on this platform; decoding with PyAV (same frames, slower)")
    return "decord" if _DECORD_OK else "pyav"


def count_frames(path: str | Path, backend: str = "decord") -> int:
    path = str(path)
    if backend == "torchcodec":
        from vifi.data import torchcodec_backend

        return torchcodec_backend.count_frames(path)
    if resolve_backend(backend) == "decord":
        try:
            return len(_decord_reader(path))
        except DecodeError:
            pass  # PyAV may read what decord cannot; it raises the clean reason if it cannot either
    import av

    try:
        with av.open(path) as container:
            return sum(1 for _ in container.decode(_video_stream(container, path)))
    except av.error.FFmpegError as exc:
        raise DecodeError(f"cannot decode video {path}: {clean_reason(exc)}") from None


def read_frames(path: str | Path, indices_fn, backend: str = "decord") -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames `indices_fn(num_frames)` selects. Returns (frames [K,H,W,3] uint8, indices).

    `indices_fn` is called exactly once per video (training draws from a stateful generator in it).
    """
    path = str(path)
    if backend == "torchcodec":
        from vifi.data import torchcodec_backend

        return torchcodec_backend.read_frames(path, indices_fn)
    if resolve_backend(backend) == "pyav":
        return _read_frames_pyav(path, indices_fn)
    indices = None
    try:
        reader = _decord_reader(path)
        n = len(reader)
        if n == 0:
            raise DecodeError(f"video {path} has no frames")
        indices = np.asarray(indices_fn(n)).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        try:
            frames = reader.get_batch(unique.tolist()).asnumpy()
        except Exception as exc:  # noqa: BLE001
            raise DecodeError(f"cannot decode frames of {path}: {clean_reason(exc)}") from None
        return frames[inverse], indices
    except DecodeError as decord_error:
        # PyAV raises its own clean reason when it cannot read the video either
        frames, indices = _read_frames_pyav(path, indices_fn if indices is None else None, indices)
        _notice_fallback(path, decord_error)
        return frames, indices


_NOTICED: set[str] = set()


def _notice_fallback(path: str, error: DecodeError) -> None:
    if path not in _NOTICED:  # once per video and process: training reads each video every epoch
        _NOTICED.add(path)
        reason = str(error).split(f"{path}: ", 1)[-1]
        from vifi import console

        console.note(f"notice: decord cannot decode {path} ({reason}); decoded it with PyAV (same frames)")


def _video_stream(container, path: str):
    if not container.streams.video:
        raise DecodeError(f"cannot decode video {path}: no video stream")
    return container.streams.video[0]


def to_displayed_rgb(frame) -> np.ndarray:
    """One decoded frame -> RGB uint8 as displayed (the container's rotation applied, as decord and players do)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def _read_frames_pyav(path: str, indices_fn=None, indices=None):
    """Decode sequentially; convert to RGB only the frames at the sampled indices (a full 1080p video in RGB is GBs).

    The frame count comes from the container (header, else a packet count) so that the indices can be drawn before
    decoding; if the decoder then yields a different count, the video is decoded again with the decoded count.
    """
    import av

    try:
        if indices is None:
            with av.open(path) as container:
                stream = _video_stream(container, path)
                n = int(stream.frames) or sum(1 for p in container.demux(stream) if p.size)
            if n == 0:
                raise DecodeError(f"video {path} has no frames")
            indices = np.asarray(indices_fn(n)).reshape(-1)
            frames, total = _decode_at(path, indices)
            if total != n and total > 0:  # the container's count was wrong: draw again with the decoded count
                indices = np.asarray(indices_fn(total)).reshape(-1)
                frames, total = _decode_at(path, indices)
        else:
            frames, total = _decode_at(path, indices)
    except av.error.FFmpegError as exc:
        raise DecodeError(f"cannot decode video {path}: {clean_reason(exc)}") from None
    if total == 0:
        raise DecodeError(f"video {path} has no frames")
    if len(indices) and (indices.min() < 0 or indices.max() >= total):
        raise DecodeError(f"cannot decode frames of {path}: frame {int(indices.max())} asked for, only {total} "
                          "decodable")
    return np.stack([frames[i] for i in indices.tolist()]), indices


def _decode_at(path: str, indices: np.ndarray) -> tuple[dict[int, np.ndarray], int]:
    """(RGB frames at `indices`, number of frames decoded), decoding the whole stream from a fresh open."""
    import av

    wanted = set(indices.tolist())
    frames, total = {}, 0
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(_video_stream(container, path))):
            if i in wanted:
                frames[i] = to_displayed_rgb(frame)
            total = i + 1
    return frames, total
