"""Where the image tower looks, per frame: three maps of the class token over the image patches (docs/design.md).

- `last`: the last block's attention of the class token to the patches, heads averaged.
- `rollout` (Abnar & Zuidema, 2020): per block, heads averaged, A' = ½A + ½I with rows renormalised; the product
  A'_L ··· A'_1 says how much of each input token reaches each output token through attention and residuals.
- `relevance` (Chefer, Gur & Wolf, 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and
  Encoder-Decoder Transformers"): R = I; for each block in order, Ā = mean over heads of relu(∇A ⊙ A), with ∇A the
  gradient of one class's video logit with respect to that block's attention A, and R ← R + Ā·R. Unlike the other
  two it depends on the class being explained.

Each map is the class token's row of the final matrix restricted to the patches; deep vision prompt tokens (after
the patches) are left out of the map. Before a block that replaces the prompt tokens with its own, their rows of
the running matrix are reset to identity rows: the new tokens are fresh inputs that carry nothing from earlier blocks.
"""

from __future__ import annotations

from typing import Callable

import torch

from vifi.viz.attention_capture import captured_attention


def _grid(visual) -> int:
    return int(visual.grid_size[0])


def _class_row_over_patches(matrix: torch.Tensor, grid: int) -> torch.Tensor:
    """[N, L, L] -> [N, g, g]: row 0 (class token), columns of the patches (1 .. g²), prompts after them left out."""
    return matrix[:, 0, 1:1 + grid * grid].reshape(-1, grid, grid)


def _replaced_slots(head) -> Callable[[int], slice | None]:
    """Token slots whose content block i replaces (deep vision prompts), else None."""
    prompts = head.vision_prompts
    if prompts is None:
        return lambda i: None
    n = prompts.n_tokens
    return lambda i: slice(-n, None) if prompts.for_block(i) is not None else None


def propagate(mixers: list[torch.Tensor], replaced: Callable[[int], slice | None] = lambda i: None) -> torch.Tensor:
    """R = I; for block i: rows of replaced slots reset to identity rows, then R ← M_i · R. [N, L, L] each."""
    n, length = mixers[0].shape[0], mixers[0].shape[-1]
    eye = torch.eye(length, dtype=mixers[0].dtype, device=mixers[0].device)
    r = eye.expand(n, length, length).clone()
    for i, mixer in enumerate(mixers):
        slots = replaced(i)
        if slots is not None:
            r[:, slots] = eye[slots]
        r = mixer @ r
    return r


def rollout_mixers(probs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Abnar & Zuidema's per-block matrices: heads averaged, half identity (the residual), rows summing to 1."""
    mixers = []
    for a in probs:
        a = a.mean(dim=1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        mixers.append(a / a.sum(dim=-1, keepdim=True))
    return mixers


def relevance_mixers(probs: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Chefer et al.'s per-block I + Ā, Ā = mean over heads of relu(∇A ⊙ A): R + Ā·R = (I + Ā)·R."""
    mixers = []
    for a, g in zip(probs, grads):
        bar = (g * a).clamp(min=0).mean(dim=1)
        mixers.append(bar + torch.eye(bar.shape[-1], dtype=bar.dtype, device=bar.device))
    return mixers


@torch.no_grad()
def cls_attention(model, videos: torch.Tensor) -> torch.Tensor:
    """`last`: [B, T, g, g] attention of the class token to each patch in the last block, heads averaged."""
    b, t = videos.shape[:2]
    with captured_attention(model.head.visual.transformer) as probs:
        model.head.encode_frames(videos.flatten(0, 1))
    maps = _class_row_over_patches(probs[-1].mean(dim=1), _grid(model.head.visual))
    return maps.reshape(b, t, *maps.shape[1:]).float()


@torch.no_grad()
def rollout(model, videos: torch.Tensor) -> torch.Tensor:
    """`rollout`: [B, T, g, g]."""
    b, t = videos.shape[:2]
    with captured_attention(model.head.visual.transformer) as probs:
        model.head.encode_frames(videos.flatten(0, 1))
    r = propagate(rollout_mixers(probs), _replaced_slots(model.head))
    maps = _class_row_over_patches(r, _grid(model.head.visual))
    return maps.reshape(b, t, *maps.shape[1:]).float()


def relevance(model, video: torch.Tensor, text_features: torch.Tensor, target: int | None = None):
    """`relevance` of one video [T, 3, H, W] for class `target` (None: the predicted class).

    Returns (maps [T, g, g], the class explained, the video's logits [C]). The score is the video's logit, so each
    frame's map has gradients through the mean over frames: every frame shown takes part in the prediction.
    """
    head = model.head
    with torch.enable_grad(), captured_attention(head.visual.transformer) as probs:
        # The weights may all be frozen; a leaf input that wants gradients puts every attention in the graph.
        x = video[None].detach().clone().requires_grad_(True)
        logits = head(x, text_features)[0]
        chosen = int(logits.argmax()) if target is None else int(target)
        grads = torch.autograd.grad(logits[chosen], probs)
    with torch.no_grad():
        r = propagate(relevance_mixers([p.detach() for p in probs], list(grads)), _replaced_slots(head))
        maps = _class_row_over_patches(r, _grid(head.visual)).float()
    return maps, chosen, logits.detach().float()
