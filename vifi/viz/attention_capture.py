"""Attention probabilities of every block of an open_clip transformer, kept in the autograd graph.

open_clip's `ResidualAttentionBlock.attention` calls `nn.MultiheadAttention(..., need_weights=False)`, so the
probabilities are never materialised (fused kernels). While `captured_attention` is active, each block's `attention`
is replaced by the same computation written out — q, k, v from the module's own `in_proj` weights, scaled dot
product, softmax, the values, `out_proj` — with the softmax probabilities appended to a list. No weight is copied or
changed, and on exit the blocks use their class's method again, so the model computes what it computed before.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def _check_supported(block: nn.Module, index: int) -> None:
    from vifi.errors import VifiError

    mha = getattr(block, "attn", None)
    plain = (isinstance(mha, nn.MultiheadAttention) and mha._qkv_same_embed_dim and mha.bias_k is None
             and not mha.add_zero_attn and hasattr(block, "attention"))
    if not plain:
        raise VifiError(f"attention maps need open_clip's standard residual blocks; block {index} of this image "
                        f"tower is a {type(block).__name__}, which they cannot read")


def _explicit_attention(mha: nn.MultiheadAttention, store: list[torch.Tensor]):
    """`ResidualAttentionBlock.attention` as plain tensor operations; probabilities [N, heads, Lq, Lk] go to `store`."""

    def attention(q_x, k_x=None, v_x=None, attn_mask=None):
        k_x = q_x if k_x is None else k_x
        v_x = q_x if v_x is None else v_x
        if not mha.batch_first:  # blocks of a sequence-first transformer get [L, N, D]
            q_x, k_x, v_x = q_x.transpose(0, 1), k_x.transpose(0, 1), v_x.transpose(0, 1)
        n, lq, width = q_x.shape
        heads = mha.num_heads
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None, None, None)

        def split_heads(x, w, b):  # [N, L, D] -> [N, heads, L, D/heads]
            return F.linear(x, w, b).view(n, x.shape[1], heads, width // heads).transpose(1, 2)

        q, k, v = split_heads(q_x, w_q, b_q), split_heads(k_x, w_k, b_k), split_heads(v_x, w_v, b_v)
        scores = (q * (width // heads) ** -0.5) @ k.transpose(-2, -1)
        if attn_mask is not None:  # open_clip passes it as an additive float mask, [Lq, Lk] or [N*heads, Lq, Lk]
            scores = scores + (attn_mask.view(n, heads, lq, -1) if attn_mask.dim() == 3 else attn_mask)
        probs = scores.softmax(dim=-1)
        store.append(probs)
        out = (probs @ v).transpose(1, 2).reshape(n, lq, width)
        out = mha.out_proj(out)
        return out if mha.batch_first else out.transpose(0, 1)

    return attention


@contextmanager
def captured_attention(transformer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward of `transformer` appends its blocks' probabilities, block by block, to the
    yielded list ([N, heads, L, L] each, N = images). Gradients flow through them when the forward tracks any."""
    blocks = list(transformer.resblocks)
    for i, block in enumerate(blocks):
        _check_supported(block, i)
    store: list[torch.Tensor] = []
    try:
        for block in blocks:
            # An instance attribute shadows the class's method for this block only.
            block.attention = _explicit_attention(block.attn, store)
        yield store
    finally:
        for block in blocks:
            block.__dict__.pop("attention", None)
