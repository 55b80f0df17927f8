"""The attention-on-the-shape figures of docs/design.md ("Attention maps") for a demo run:
    python scripts/attention_mask_ratios.py runs/demo [runs/demo-untrained ...]
Each run's held-out demo videos (its demo-data/videos, the demo's default sizes), 8 frames, predicted class."""

import sys
from pathlib import Path

import numpy as np

from vifi.viz.mask_ratios import demo_mask_ratios

for run in sys.argv[1:]:
    ratios = demo_mask_ratios(run, Path(run) / "demo-data" / "videos", train_per_class=40, test_per_class=10)
    for method, values in ratios.items():
        v = np.array(values)
        print(f"{run}\t{method}\tmean {v.mean():.2f}\tmedian {np.median(v):.2f}\tabove 1: {(v > 1).sum()} of {len(v)}")
