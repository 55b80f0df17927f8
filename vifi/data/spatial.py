"""Per-video spatial geometry, done in the data workers on uint8 frames (SPEC §2.5–2.6).

Training: short side to int(256/224*size), TSN multi-scale crop (same box for all frames), resize to size×size.
Test: short side to int(256/224*size) + centre crop (1 crop), or short side to size + 3 crops along the long side.
Colour work (flip, jitter, grayscale, normalisation) happens on the device in `vifi.data.augment`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SCALES = (1.0, 0.875, 0.75, 0.66)


def train_short_side(size: int) -> int:
    return int(256 / 224 * size)


def short_side_dims(h: int, w: int, short: int) -> tuple[int, int]:
    """(h, w) after `resize_short_side`: min = short, long side int(long*short/s + 0.5)."""
    if min(h, w) == short:
        return h, w
    if h <= w:
        return short, int(w * short / h + 0.5)
    return int(h * short / w + 0.5), short


def resize_short_side(frames: torch.Tensor, short: int) -> torch.Tensor:
    """uint8 [T,H,W,3] -> uint8 [T,h,w,3] with min(h,w) = short; long side int(long*short/s + 0.5), bilinear."""
    h, w = frames.shape[1:3]
    new_h, new_w = short_side_dims(h, w, short)
    if (new_h, new_w) == (h, w):
        return frames
    return resize(frames, new_h, new_w)


def resize(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def multiscale_crop_box(h: int, w: int, size: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of the TSN MultiScaleCrop: 10 size pairs, 5 fixed offsets, 3-px snap to size."""
    base = min(h, w)
    sides = [int(base * s) for s in SCALES]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1]
    crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
    w_step, h_step = (w - crop_w) // 4, (h - crop_h) // 4
    offsets = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step)]
    left, top = offsets[int(rng.integers(len(offsets)))]
    return top, left, crop_h, crop_w


def train_geometry(frames: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    return apply_train_box(frames, size, draw_train_box(frames.shape[1], frames.shape[2], size, rng))


def draw_train_box(h: int, w: int, size: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The crop box of a training clip whose decoded frames are h×w: drawn before any pixel is decoded, so that a
    worker can draw it and the GPU apply it (vifi/data/device_decode.py)."""
    return multiscale_crop_box(*short_side_dims(h, w, train_short_side(size)), size, rng)


def apply_train_box(frames: torch.Tensor, size: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    """uint8 [T,H,W,3] on any device: short side to train_short_side(size), crop `box`, resize to size×size."""
    top, left, ch, cw = box
    frames = resize_short_side(frames, train_short_side(size))
    return resize(frames[:, top:top + ch, left:left + cw], size, size)


def centre_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top:top + size, left:left + size]


def test_views(frames: torch.Tensor, size: int, crops: int) -> list[torch.Tensor]:
    """Spatial views of one clip: [centre crop] or [left/top, right/bottom, middle] crops (reference order)."""
    if crops == 1:
        return [centre_crop(resize_short_side(frames, train_short_side(size)), size)]
    if crops != 3:
        raise ValueError("crops must be 1 or 3")
    frames = resize_short_side(frames, size)
    h, w = frames.shape[1:3]
    step = (max(h, w) - size) // 2
    views = []
    for off in (0, 2 * step, step):
        views.append(frames[:, off:off + size, :size] if h > w else frames[:, :size, off:off + size])
    return views
