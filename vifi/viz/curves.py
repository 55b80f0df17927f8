"""Training curves of one or more run folders: loss and learning rate per step (log.csv), accuracy per evaluation
(summary.csv), one line per run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vifi.errors import VifiError


def read_run(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    log, summary = run / "log.csv", run / "summary.csv"
    if not log.is_file():
        raise VifiError(f"{run} has no log.csv: give run folders written by `vifi finetune` / `vifi prompt`")
    from vifi.viz import read_table

    what = "give run folders written by `vifi finetune` / `vifi prompt`"
    steps = read_table(log, ("step", "loss", "lr"), what)
    evals = (read_table(summary, ("step", "top1"), what) if summary.is_file()
             else pd.DataFrame(columns=["epoch", "step", "top1", "top5"]))
    return steps, evals.dropna(subset=["top1"])


def plot_curves(runs: list[Path], out: Path, smooth: int = 1) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.4))
    for run in runs:
        steps, evals = read_run(run)
        name = run.name
        loss = steps["loss"].rolling(smooth, min_periods=1).mean() if smooth > 1 else steps["loss"]
        ax_loss.plot(steps["step"], loss, label=name, linewidth=1.4)
        ax_lr.plot(steps["step"], steps["lr"], label=name, linewidth=1.4)
        if len(evals):
            ax_acc.plot(evals["step"], evals["top1"], marker="o", label=f"{name} top-1", linewidth=1.4)
    ax_loss.set(title="training loss" + (f" (mean of {smooth} steps)" if smooth > 1 else ""), xlabel="optimizer step",
                ylabel="loss")
    ax_acc.set(title="evaluation accuracy", xlabel="optimizer step", ylabel="top-1 (%)")
    ax_lr.set(title="learning rate", xlabel="optimizer step", ylabel="lr")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
