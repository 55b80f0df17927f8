"""The torchcodec decoding backend (PyTorch's FFmpeg decoder; CPU here, CUDA capable): the same frames for the
same indices as decord and PyAV, asked for in one batched call per video. Optional: `pip install torchcodec`, and
it needs the system's FFmpeg libraries (docs/data.md has the measured speed beside decord and PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vifi.errors import VifiError


def _decoder(path: str):
    from vifi.data.decoding import DecodeError

    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as exc:  # the package, or the FFmpeg libraries it loads, are missing
        why = " ".join(str(exc).split())[:300]
        raise VifiError(f"--backend torchcodec: torchcodec cannot be loaded ({why}); pip install torchcodec and "
                        "install FFmpeg's shared libraries, or use --backend decord") from None
    try:
        # NHWC: FFmpeg's native layout, the [K, H, W, 3] uint8 the other backends return; exact seeks index
        # frames as decord and PyAV count them
        return VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact")
    except Exception as exc:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError for bad files
        raise DecodeError(f"cannot decode video {path}: {' '.join(str(exc).split())[:200]}") from None


def count_frames(path: str | Path) -> int:
    return len(_decoder(str(path)))


def read_frames(path: str | Path, indices_fn) -> tuple[np.ndarray, np.ndarray]:
    """(frames [K, H, W, 3] uint8, indices) for the indices `indices_fn(num_frames)` selects."""
    from vifi.data.decoding import DecodeError

    path = str(path)
    decoder = _decoder(path)
    n = len(decoder)
    if n == 0:
        raise DecodeError(f"video {path} has no frames")
    indices = np.asarray(indices_fn(n)).reshape(-1)
    unique, inverse = np.unique(indices, return_inverse=True)  # each frame decoded once, however often it is used
    try:
        frames = decoder.get_frames_at(unique.tolist()).data.numpy()
    except Exception as exc:  # noqa: BLE001
        raise DecodeError(f"cannot decode frames of {path}: {' '.join(str(exc).split())[:200]}") from None
    return frames[inverse], indices
