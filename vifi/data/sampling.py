"""Temporal sampling: which frame indices of an N-frame video feed a T-frame clip (SPEC §2.4)."""

from __future__ import annotations

import numpy as np


def sample_train_indices(num_frames: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """TSN segments: index_i = i*a + u_i with a = N // T, u_i uniform in [0, a); for N < T, round(i*N/T).

    The last N mod T frames are never drawn; that is the reference behaviour the released weights saw.
    """
    a = num_frames // t
    if a > 0:
        idx = np.arange(t) * a + rng.integers(0, a, size=t)
    else:
        idx = np.round(np.arange(t) * num_frames / t).astype(np.int64)  # numpy rounds half to even
    return idx % num_frames


def sample_test_indices(num_frames: int, t: int, clips: int = 1, clip_index: int = 0) -> np.ndarray:
    """Deterministic segment centres: floor(i*a + a/2) with a = N / T.

    With k clips, clip c shifts the position inside each segment to (c + 0.5)/k, so the k clips tile every segment
    evenly (k = 1 is exactly the reference formula).
    """
    a = num_frames / t
    idx = np.floor(np.arange(t) * a + a * (clip_index + 0.5) / clips).astype(np.int64)
    return idx % num_frames


def sample_view_indices(num_frames: int, t: int, clips: int, reference_multiclip: bool,
                        rng: np.random.Generator | None) -> np.ndarray:
    """[clips, T] indices for evaluation. `reference_multiclip` draws each clip with the training formula, as the
    reference code does for k > 1 (non-deterministic there; seeded here)."""
    if clips > 1 and reference_multiclip:
        return np.stack([sample_train_indices(num_frames, t, rng) for _ in range(clips)])
    return np.stack([sample_test_indices(num_frames, t, clips, c) for c in range(clips)])
