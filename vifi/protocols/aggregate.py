"""Protocol arithmetic: mean ± std over splits/seeds and the base-to-novel harmonic mean.

std is the sample standard deviation (ddof 1) over the splits or seeds; 0 for a single value.
HM follows the paper: 2·B·N/(B+N) of the seed-averaged base and novel accuracies, not the mean of per-seed HMs.
"""

from __future__ import annotations

import math

import pandas as pd


def harmonic_mean(base: float, novel: float) -> float:
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        raise ValueError("mean_std of no values")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def pm(mean: float, std: float, n: int) -> str:
    """"mean ± std"; one value has no spread to show, so just the value (not "± 0.00")."""
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"


def summarise(protocol: str, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset (per K for few-shot) from the per-split/seed rows of `runs`."""
    rows = []
    if protocol == "base2novel":
        for dataset, group in runs.groupby("dataset", sort=False):
            b_mean, b_std = mean_std(group["base_top1"].tolist())
            n_mean, n_std = mean_std(group["novel_top1"].tolist())
            rows.append({"dataset": dataset, "seeds": len(group), "base": pm(b_mean, b_std, len(group)),
                         "novel": pm(n_mean, n_std, len(group)), "HM": round(harmonic_mean(b_mean, n_mean), 2),
                         "base_mean": b_mean, "novel_mean": n_mean})
    elif protocol == "fewshot":
        for (dataset, k), group in runs.groupby(["dataset", "K"], sort=False):
            mean, std = mean_std(group["top1"].tolist())
            rows.append({"dataset": dataset, "K": k, "draws": len(group), "top1": pm(mean, std, len(group)), "top1_mean": mean})
    else:  # zeroshot, supervised: one row per dataset over its splits
        for dataset, group in runs.groupby("dataset", sort=False):
            t1_mean, t1_std = mean_std(group["top1"].tolist())
            t5_mean, t5_std = mean_std(group["top5"].tolist())
            rows.append({"dataset": dataset, "splits": len(group), "top1": pm(t1_mean, t1_std, len(group)),
                         "top5": pm(t5_mean, t5_std, len(group)), "top1_mean": t1_mean})
    return pd.DataFrame(rows)
