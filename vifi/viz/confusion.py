"""The confusion matrix an evaluation wrote (confusion.csv) as a picture: rows true classes, columns predicted,
each row normalised to the share of that class's videos so that rare and frequent classes read alike."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vifi.errors import VifiError


def read_confusion(source: Path) -> pd.DataFrame:
    """confusion.csv itself, or the folder of `vifi eval` / `vifi finetune` that holds it."""
    path = source / "confusion.csv" if source.is_dir() else source
    if not path.is_file():
        raise VifiError(f"{source} holds no confusion.csv: give an evaluation or run folder written by this vifi "
                        "version (or the CSV itself)")
    from vifi.viz import read_table

    what = "give the confusion.csv that `vifi eval` / `vifi finetune` writes (or its folder)"
    matrix = read_table(path, (), what, index_col=0)
    # A square table of counts whose rows and columns name the same classes; anything else (summary.csv,
    # per_class.csv of the same folder) would be drawn as nonsense or crash the plot.
    counts = matrix.apply(pd.to_numeric, errors="coerce")
    values = counts.to_numpy()
    square = len(matrix) > 0 and list(map(str, matrix.index)) == list(map(str, matrix.columns))
    if not square or counts.isna().to_numpy().any() or (values < 0).any() or (values % 1 != 0).any():
        raise VifiError(f"{path} is not a confusion matrix (a square table of video counts, true classes by "
                        f"predicted classes); {what}")
    return counts.astype("int64")


def plot_confusion(matrix: pd.DataFrame, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = matrix.to_numpy()
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    n = len(matrix)
    side = min(30.0, max(7.0, 0.35 * n + 3))
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if n <= 60:  # beyond that, names overlap and the picture is read by its diagonal
        ax.set_xticks(range(n), matrix.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(n), matrix.index, fontsize=7)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
