"""Thumbnails for `vifi serve`: the frame shown at a time, decoded by the project's decoder (vifi.data.decoding,
as displayed: rotation applied) and encoded as JPEG with PIL."""

from __future__ import annotations

import io

import numpy as np


def frame_rate(path: str) -> float:
    """The video stream's average frame rate from the container header (no decoding); 0 when it records none."""
    import av

    from vifi.data.decoding import DecodeError, clean_reason

    try:
        with av.open(path) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
    except av.error.FFmpegError as exc:
        raise DecodeError(f"cannot decode video {path}: {clean_reason(exc)}") from None
    return float(rate) if rate else 0.0


def frame_at(path: str, seconds: float) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the frame on screen at `seconds` (the last one past the end)."""
    from vifi.data.decoding import read_frames

    fps = frame_rate(path)
    frames, _ = read_frames(path, lambda n: [min(n - 1, int(seconds * fps + 1e-6))], backend="decord")
    return frames[0]


def thumbnail(path: str, seconds: float, width: int) -> bytes:
    """JPEG bytes of `frame_at`, scaled to `width` pixels wide (never up)."""
    from PIL import Image

    image = Image.fromarray(frame_at(path, seconds))
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()
