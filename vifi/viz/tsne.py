"""t-SNE of video embeddings, one panel per model, with a separability figure in each title (the paper's figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def separability(emb: np.ndarray, labels: np.ndarray, k: int = 5) -> dict:
    """Silhouette (cosine) and leave-one-out k-NN accuracy (cosine) in the embedding space itself, not the 2-D map."""
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import KNeighborsClassifier

    out = {"silhouette": float(silhouette_score(emb, labels, metric="cosine")) if len(set(labels)) > 1 else 0.0}
    k = min(k, len(labels) - 1)
    knn = KNeighborsClassifier(n_neighbors=k + 1, metric="cosine").fit(emb, labels)
    neighbours = knn.kneighbors(emb, return_distance=False)[:, 1:]  # drop the video itself
    votes = labels[neighbours]
    pred = np.array([np.bincount(v, minlength=labels.max() + 1).argmax() for v in votes])
    out["knn_acc"] = float((pred == labels).mean() * 100)
    out["k"] = k
    return out


def tsne_2d(emb: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(max(2, min(30, (len(emb) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed).fit_transform(emb)


def plot_tsne(panels: list[tuple[str, np.ndarray, np.ndarray, dict]], class_names: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.4), squeeze=False)
    classes = sorted({int(c) for _, _, labels, _ in panels for c in labels})
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for ax, (name, xy, labels, score) in zip(axes[0], panels):
        for i, c in enumerate(classes):
            sel = labels == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(i % cmap.N), label=class_names[c], alpha=0.85,
                       edgecolors="none")
        ax.set_title(f"{name}\nsilhouette {score['silhouette']:.3f} · {score['k']}-NN acc {score['knn_acc']:.1f} % "
                     "(cosine, full embedding)", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    fig.tight_layout()
    extra = []
    if len(classes) <= 20:
        handles, names = axes[0][0].get_legend_handles_labels()
        longest = max(len(n) for n in names)
        width_in = fig.get_size_inches()[0]
        ncol = max(1, min(len(classes), int(width_in / (0.075 * longest + 0.5))))  # columns that fit the width
        extra.append(fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=ncol,
                                fontsize=9, frameon=False, markerscale=1.6))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight", bbox_extra_artists=extra)
    plt.close(fig)
