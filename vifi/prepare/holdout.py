"""A stratified train/val split of one's own data (`vifi prepare generic --val-fraction F --seed S`).

Every class keeps the same share in val (rounded, at least one video when the class has two or more, never all of
them), so a small class is neither missing from val nor left without training videos. The draw is seeded per
class, so adding a class does not reshuffle the others.
"""

from __future__ import annotations

import numpy as np

from vifi.data.annotations import Entry
from vifi.errors import VifiError


def stratified_split(entries: list[Entry], val_fraction: float, seed: int) -> tuple[list[Entry], list[Entry]]:
    """(train, val), each in the order of `entries`."""
    if not 0 < val_fraction < 1:
        raise VifiError(f"--val-fraction {val_fraction}: give a share between 0 and 1, e.g. 0.2")
    by_class: dict[int, list[int]] = {}
    for i, entry in enumerate(entries):
        by_class.setdefault(entry.label, []).append(i)
    val_rows: set[int] = set()
    for label, rows in by_class.items():
        if len(rows) < 2:
            continue  # one video: it must train
        n_val = min(len(rows) - 1, max(1, round(val_fraction * len(rows))))
        rng = np.random.default_rng([seed, label])
        val_rows.update(rows[j] for j in rng.permutation(len(rows))[:n_val])
    train = [e for i, e in enumerate(entries) if i not in val_rows]
    val = [e for i, e in enumerate(entries) if i in val_rows]
    return train, val
