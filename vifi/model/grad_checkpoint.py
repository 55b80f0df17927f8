"""Activation checkpointing of the first N image-tower blocks (docs/performance.md, "Activation checkpointing").

open_clip's `set_grad_checkpointing` recomputes every block of both towers. The text tower runs once per optimizer
step (not per micro-batch), so checkpointing it saves little memory and costs its recomputation; and the memory
per image block is the same for every block, so checkpointing only as many image blocks as memory requires keeps
the rest of the speed. The block's forward is wrapped in place: parameter names (and so checkpoints) do not change.
"""

from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint


def _checkpointed(forward, *args, **kwargs):
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def checkpoint_image_blocks(model, blocks: int | bool) -> int:
    """Recompute the activations of the first `blocks` image blocks in backward (True: all; 0 or False: none,
    undoing an earlier call). Returns how many blocks are checkpointed."""
    resblocks = list(model.clip.visual.transformer.resblocks)
    n = len(resblocks) if blocks is True else min(int(blocks), len(resblocks))
    for i, block in enumerate(resblocks):
        plain = getattr(block, "_vifi_plain_forward", None)
        if i < n and plain is None:
            block._vifi_plain_forward = block.forward
            block.forward = functools.partial(_checkpointed, block.forward)
        elif i >= n and plain is not None:
            block.forward = plain
            del block._vifi_plain_forward
    return n
