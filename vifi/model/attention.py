"""Self-attention of open_clip's residual blocks as one `scaled_dot_product_attention` call on views of the packed QKV.

open_clip's `ResidualAttentionBlock.attention` goes through `nn.MultiheadAttention`, which (in training, where its
fast path is off) splits the packed projection into three copies, reshapes each, and merges heads again around
the attention kernel. `PackedAttentionBlock.attention` runs the same computation with the module's own
`in_proj_weight` / `in_proj_bias` / `out_proj` — so parameter names and every checkpoint are unchanged — as one
linear, views of its output for q, k and v, one SDPA call, and `out_proj` (docs/performance.md). Blocks are switched
by class (`use_packed_attention`), so `vifi.viz.attention_capture`, which shadows `attention` per block instance,
still reads the probabilities and gives the block back its class's method afterwards.

`sdpa_backend` picks the SDPA kernel family (`train.attention`): auto leaves the choice to PyTorch.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

# train.attention: an SDPA kernel family for the packed path, or `mha`: open_clip's nn.MultiheadAttention path
# (what the packed path replaced; kept to measure one against the other)
ATTENTION_CHOICES = ("auto", "flash", "efficient", "cudnn", "math", "mha")


def _packed_attention(self, q_x: torch.Tensor, k_x=None, v_x=None, attn_mask=None) -> torch.Tensor:
    mha = self.attn
    if (k_x is not None and k_x is not q_x) or (v_x is not None and v_x is not q_x):
        return type(self).__mro__[1].attention(self, q_x, k_x, v_x, attn_mask)  # cross-attention: open_clip's own
    x = q_x if mha.batch_first else q_x.transpose(0, 1)  # [N, L, D]
    n, length, width = x.shape
    heads = mha.num_heads
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)  # [N, L, 3D], one matmul
    q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)  # views [N, h, L, d]
    if attn_mask is not None:  # open_clip's additive float mask: [L, L], or [N*heads, L, L]
        attn_mask = attn_mask.to(q.dtype)
        if attn_mask.dim() == 3:
            attn_mask = attn_mask.view(n, heads, length, -1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                         dropout_p=mha.dropout if self.training else 0.0)
    out = mha.out_proj(out.transpose(1, 2).reshape(n, length, width))
    return out if mha.batch_first else out.transpose(0, 1)


_CLASSES: dict[type, type] = {}


def _packed_class(base: type) -> type:
    if base not in _CLASSES:
        name = f"Packed{base.__name__}"
        _CLASSES[base] = type(name, (base,), {"attention": _packed_attention, "__module__": __name__})
        globals()[name] = _CLASSES[base]  # importable by name: a pickled model finds its class again
    return _CLASSES[base]


def _plain(block: nn.Module) -> bool:
    from open_clip.transformer import ResidualAttentionBlock

    mha = getattr(block, "attn", None)
    return (type(block) is ResidualAttentionBlock and isinstance(mha, nn.MultiheadAttention)
            and mha._qkv_same_embed_dim and mha.in_proj_weight is not None and mha.bias_k is None
            and not mha.add_zero_attn)


def use_packed_attention(model: nn.Module) -> int:
    """Switch every standard open_clip residual block in `model` to the packed SDPA attention; returns how many.
    Parameters and buffers are untouched (same names, same tensors)."""
    switched = 0
    for module in model.modules():
        if _plain(module):
            module.__class__ = _packed_class(type(module))
            switched += 1
    return switched


def use_multihead_attention(model: nn.Module) -> int:
    """Undo `use_packed_attention`: open_clip's own blocks again (`train.attention: mha`); returns how many."""
    switched = 0
    for module in model.modules():
        if type(module) in _CLASSES.values():
            module.__class__ = type(module).__mro__[1]
            switched += 1
    return switched


def sdpa_backend(name: str):
    """A context in which SDPA uses only that kernel family (`auto`, `mha`: PyTorch's own choice)."""
    if name in ("auto", "mha"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name]
    return sdpa_kernel([backend])
