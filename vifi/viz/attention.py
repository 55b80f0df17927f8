"""Attention of the class token to the image patches in the LAST block of the image tower, per sampled frame.

Last layer, heads averaged: we capture the input of the last residual block and call that block's own `ln_1` and
`attn` (nn.MultiheadAttention) with need_weights=True, so the weights are exactly the ones the model computes.
(Attention rollout over layers is a common alternative; the last layer is what the paper's figure shows.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def cls_attention(model, videos: torch.Tensor) -> torch.Tensor:
    """[B, T, g, g] attention of the class token to each patch (softmax row restricted to the patches)."""
    visual = model.head.visual
    last = visual.transformer.resblocks[-1]
    captured = {}
    handle = last.register_forward_pre_hook(lambda m, args: captured.__setitem__("x", args[0]))
    b, t = videos.shape[:2]
    try:
        model.head.encode_frames(videos.flatten(0, 1))
    finally:
        handle.remove()
    x = captured["x"]
    if not getattr(visual.transformer, "batch_first", True):
        x = x.transpose(0, 1)
    h = last.ln_1(x)
    _, weights = last.attn(h, h, h, need_weights=True, average_attn_weights=True)  # [N, L, L]
    grid = visual.grid_size[0] if hasattr(visual, "grid_size") else int(round((weights.shape[-1] - 1) ** 0.5))
    patches = weights[:, 0, 1:1 + grid * grid]  # prompts (if any) sit after the patches and are left out
    return patches.reshape(b, t, grid, grid).float()


def attention_rows(checkpoints: list[str], video: Path, *, frames: int | None, device=None, clip=None):
    """For each checkpoint: (name, display frames uint8 [T, S, S, 3], attention [T, g, g]); T = `frames`, else the
    checkpoint's frames."""
    from vifi.data.annotations import Entry
    from vifi.data.augment import normalise
    from vifi.data.dataset import ClipSpec, EvalClips
    from vifi.engine.runtime import setup_runtime
    from vifi.errors import VifiError
    from vifi.model.checkpoint import build_from_checkpoint

    runtime = setup_runtime(device, "fp32")
    rows = []
    for ckpt in checkpoints:
        model, facts = build_from_checkpoint(ckpt, clip=clip)
        model.to(runtime.device).eval()
        # `frames` is a column count, not a model input: each frame's attention depends on that frame alone (the
        # image tower sees frames one by one), so showing fewer frames than the model was trained with is no
        # contradiction and gets no notice.
        item = EvalClips([Entry(str(Path(video).resolve()), 0)], "/",
                         ClipSpec(frames or facts.frames, facts.input_size))[0]
        if item["failed"]:
            raise VifiError(item["failed"])
        shown = item["frames"][0]  # [T, S, S, 3] uint8, the centre crop the model sees
        att = cls_attention(model, normalise(shown[None].to(runtime.device)))[0].cpu()
        rows.append((Path(str(ckpt)).name if not Path(str(ckpt)).is_dir() else Path(str(ckpt)).name, shown.numpy(),
                     att.numpy()))
    return rows


def plot_attention(rows, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    n_rows, n_cols = len(rows), rows[0][1].shape[0]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 2.1 * n_rows + 0.6), squeeze=False)
    for r, (name, frames, att) in enumerate(rows):
        size = frames.shape[1]
        up = F.interpolate(torch.from_numpy(att)[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
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
        axes[r][0].set_ylabel(name, fontsize=9, rotation=90)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
