"""The documented resize deviation (docs/design.md "Deviations"): torch bilinear vs OpenCV's fixed-point
INTER_LINEAR, which the reference used. Runs where OpenCV is installed (it is not a dependency)."""

import numpy as np
import pytest
import torch

from vifi.data.spatial import resize

cv2 = pytest.importorskip("cv2")


def _textured(h, w, rng):
    base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8)
    big = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big.astype(int) + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8)


def test_one_resize_differs_from_opencv_by_at_most_one_grey_level_on_a_minority_of_pixels():
    rng = np.random.default_rng(0)
    fractions = []
    for h, w in [(240, 320), (360, 480), (720, 1280)]:
        frame = _textured(h, w, rng)
        nh, nw = 256, int(w * 256 / h + 0.5)
        ours = resize(torch.from_numpy(frame[None]), nh, nw).numpy()[0].astype(int)
        ref = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(int)
        diff = np.abs(ours - ref)
        assert diff.max() <= 1
        fractions.append((diff > 0).mean())
    assert 0.05 < np.mean(fractions) < 0.15  # measured 0.126 (OpenCV 5.0, torch 2.14)
