"""Attention maps of videos, a row per checkpoint: which frames' patches the image tower looks at.

The maps themselves (`last`, `rollout`, `relevance`) are made in `vifi.viz.attention_maps`; here: the model's input
crop of the video, the class set and class a relevance map explains, and the figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vifi.viz.attention_maps import cls_attention, relevance, rollout

__all__ = ["AttentionRow", "attention_rows", "class_set", "cls_attention", "given_classes", "plot_attention",
           "video_maps"]


@dataclass(frozen=True)
class AttentionRow:
    name: str
    frames: np.ndarray  # uint8 [T, S, S, 3]: the centre crop the model sees
    maps: np.ndarray  # [T, g, g]
    explained: str | None = None  # relevance: the class whose logit the maps explain


def split_classes(text: str) -> list[str]:
    """`--classes "a,b"`: names in order, each once."""
    from vifi.zeroshot import unique_names

    return unique_names(text.split(","), "--classes")


def given_classes(method: str, label: str | None, labels_csv: str | None, classes: str | None) -> list[str] | None:
    """The class set the flags give (--labels CSV or --classes "a,b"), or None; refuses class flags that a method
    other than relevance would ignore, and both sources at once."""
    from vifi.errors import VifiError

    flags = [flag for flag, value in (("--label", label), ("--labels", labels_csv), ("--classes", classes))
             if value is not None]
    if method != "relevance" and flags:
        raise VifiError(f"{flags[0]} chooses the class a relevance map explains; add --method relevance "
                        f"(--method {method} does not depend on a class)")
    if labels_csv is not None and classes is not None:
        raise VifiError('give the classes with one of --labels CSV or --classes "a,b", not both')
    if labels_csv is not None:
        from vifi.data.annotations import read_label_csv

        return read_label_csv(labels_csv)
    return split_classes(classes) if classes is not None else None


def class_set(recorded: tuple[str, ...] | list[str], checkpoint: str, given: list[str] | None,
              label: str | None) -> list[str]:
    """The classes a relevance map is scored against: `given` (--labels/--classes), else the checkpoint's own.

    One-line errors before any computation: no class set at all, or a --label outside it."""
    from vifi.errors import VifiError

    names = list(given) if given is not None else list(recorded)
    if not names:
        raise VifiError(f"{checkpoint} records no class names, and --method relevance explains a class: give the "
                        'classes with --labels CSV or --classes "a,b"')
    if label is not None and label not in names:
        where = "the given classes" if given is not None else f"the classes {checkpoint} was trained on"
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        raise VifiError(f"--label {label!r} is not one of {where} ({shown}); pick one of them")
    return names


def model_input(video: Path, frames: int, input_size: int) -> torch.Tensor:
    """uint8 [T, S, S, 3]: the frames of `video` as evaluation feeds them (segment centres, resize, centre crop)."""
    from vifi.data.annotations import Entry
    from vifi.data.dataset import ClipSpec, EvalClips
    from vifi.errors import VifiError

    item = EvalClips([Entry(str(Path(video).resolve()), 0)], "/", ClipSpec(frames, input_size))[0]
    if item["failed"]:
        raise VifiError(item["failed"])
    return item["frames"][0]


def video_maps(model, shown: torch.Tensor, method: str, *, text_features: torch.Tensor | None = None,
               target: int | None = None) -> tuple[torch.Tensor, int | None]:
    """(maps [T, g, g], the class explained or None) of one video's frames, uint8 [T, S, S, 3] on the model's
    device. `relevance` needs the label set's `text_features`; `target` None explains the predicted class."""
    from vifi.data.augment import normalise

    videos = normalise(shown[None])
    if method == "last":
        return cls_attention(model, videos)[0], None
    if method == "rollout":
        return rollout(model, videos)[0], None
    maps, chosen, _ = relevance(model, videos[0], text_features, target)
    return maps, chosen


def attention_rows(checkpoints: list[str], video: Path, *, frames: int | None, method: str = "last",
                   label: str | None = None, classes: list[str] | None = None, device=None,
                   clip=None) -> list[AttentionRow]:
    """One row per checkpoint. T = `frames`, else the checkpoint's frames. `relevance` explains `label`, else each
    model's predicted class, among `classes`, else the classes the checkpoint records."""
    from vifi.engine.evaluate import class_text_features
    from vifi.engine.runtime import setup_runtime
    from vifi.model.checkpoint import build_from_checkpoint
    from vifi.model.facts import inference_inputs

    runtime = setup_runtime(device, "fp32")
    loaded = []
    for ckpt in checkpoints:  # every model and class set first: a wrong --label stops before any map is made
        model, facts = build_from_checkpoint(ckpt, clip=clip)
        names = class_set(facts.class_names, str(ckpt), classes, label) if method == "relevance" else None
        loaded.append((ckpt, model.to(runtime.device).eval(), facts, names))
    rows = []
    for ckpt, model, facts, names in loaded:
        # `frames` is a column count: each frame's `last`/`rollout` map depends on that frame alone (the image tower
        # sees frames one by one), so fewer frames than the model was trained with draw no notice. A relevance map
        # explains the logit of the frames shown (docs/design.md).
        shown = model_input(video, frames or facts.frames, facts.input_size).to(runtime.device)
        text, target = None, None
        if names is not None:
            text = class_text_features(model, names, inference_inputs(facts).template, runtime)
            target = names.index(label) if label is not None else None
        maps, chosen = video_maps(model, shown, method, text_features=text, target=target)
        rows.append(AttentionRow(Path(str(ckpt)).name, shown.cpu().numpy(), maps.cpu().numpy(),
                                 names[chosen] if names is not None else None))
    return rows


def plot_attention(rows, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    n_rows, n_cols = len(rows), rows[0].frames.shape[0]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 2.1 * n_rows + 0.6), squeeze=False)
    for r, row in enumerate(rows):
        frames = row.frames
        size = frames.shape[1]
        up = F.interpolate(torch.from_numpy(row.maps)[:, None], size=(size, size), mode="bilinear",
                           align_corners=False)[:, 0]
        for c in range(n_cols):
            ax = axes[r][c]
            heat = up[c].numpy()
            heat = (heat - heat.min()) / (heat.max() - heat.min() + 1e-12)
            ax.imshow(frames[c])
            ax.imshow(heat, cmap="jet", alpha=0.45)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {c + 1}", fontsize=9)
        ylabel = row.name if row.explained is None else f"{row.name}\n{row.explained}"
        axes[r][0].set_ylabel(ylabel, fontsize=9 if row.explained is None else 7, rotation=90)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
