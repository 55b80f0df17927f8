"""Deep vision + language prompts ("bridge and prompt", SPEC §1.4), driving open_clip's own transformer blocks.

Vision: n_v tokens appended after the positional embedding (so without one), before `ln_pre`; before block i in
1..D_v-1 the last n_v tokens are replaced by that block's own tokens. Text: n_t context vectors at positions
1..n_t, before the positional embedding (so with one); before block i in 1..D_t-1 positions 1..n_t are replaced.
Blocks at or past the depth carry the previous block's prompt outputs forward. Nothing of open_clip is copied:
we call its embedding layers, norms and residual blocks in order and only splice tokens between them.
"""

from __future__ import annotations

import torch
from torch import nn

from vifi.config import PromptConfig


class TowerPrompts(nn.Module):
    """`tokens` enter before block 0; `deep[i-1]` replaces the prompt slots before block i (1 ≤ i < depth)."""

    def __init__(self, n_tokens: int, depth: int, width: int, init: torch.Tensor | None = None):
        super().__init__()
        first = torch.empty(n_tokens, width).normal_(std=0.02) if init is None else init.detach().clone()
        self.tokens = nn.Parameter(first)
        self.deep = nn.ParameterList([nn.Parameter(torch.empty(n_tokens, width).normal_(std=0.02))
                                      for _ in range(depth - 1)])

    @property
    def n_tokens(self) -> int:
        return self.tokens.shape[0]

    def for_block(self, i: int) -> torch.Tensor | None:
        return self.deep[i - 1] if 1 <= i <= len(self.deep) else None


class Prompts(nn.Module):
    """The only trainable tensors of a prompting run: `vision.*` and `text.*`."""

    def __init__(self, cfg: PromptConfig, clip: nn.Module):
        super().__init__()
        self.cfg = cfg
        v_width = clip.visual.conv1.weight.shape[0]
        t_width = clip.ln_final.weight.shape[0]
        for depth, blocks, tower in ((cfg.vision_depth, len(clip.visual.transformer.resblocks), "vision"),
                                     (cfg.text_depth, len(clip.transformer.resblocks), "text")):
            if depth > blocks:
                from vifi.errors import VifiError

                raise VifiError(f"model.prompt.{tower}_depth {depth} exceeds the {blocks} blocks of the {tower} tower")
        self.vision = TowerPrompts(cfg.vision_tokens, cfg.vision_depth, v_width) if cfg.vision_depth else None
        self.text = None
        if cfg.text_depth:
            init = _init_from_phrase(clip, cfg) if self._uses_init_phrase() else None
            self.text = TowerPrompts(cfg.text_tokens, cfg.text_depth, t_width, init)

    def _uses_init_phrase(self) -> bool:
        return _uses_init_phrase(self.cfg)

    @staticmethod
    def template_for(cfg: PromptConfig) -> str:
        """Class-name prompt: `"X X … X {name}."`, or `"<init phrase> {name}."` when the context starts from it."""
        if not cfg.text_depth:
            return "a photo of a {}."
        prefix = init_phrase(cfg) if _uses_init_phrase(cfg) else " ".join(["X"] * cfg.text_tokens)
        return prefix + " {}."


def init_phrase(cfg: PromptConfig) -> str:
    """The context init phrase as the reference's prompt learner reads it: "_" becomes a space."""
    return cfg.init.replace("_", " ").strip()


def _uses_init_phrase(cfg: PromptConfig) -> bool:
    # The reference initialises from the phrase only for n_t ≤ 4; every shipped preset (10, 16) is random.
    return bool(init_phrase(cfg)) and cfg.text_tokens <= 4


def _init_from_phrase(clip: nn.Module, cfg: PromptConfig) -> torch.Tensor:
    import open_clip

    ids = open_clip.tokenize([init_phrase(cfg)])[0]
    with torch.no_grad():
        return clip.token_embedding(ids[1:1 + cfg.text_tokens]).float()


def _run_blocks(transformer: nn.Module, x: torch.Tensor, splice, attn_mask=None) -> torch.Tensor:
    """open_clip's Transformer.forward with `splice(i, x)` applied before block i."""
    batch_first = getattr(transformer, "batch_first", True)
    for i, block in enumerate(transformer.resblocks):
        x = splice(i, x)
        if batch_first:
            x = block(x, attn_mask=attn_mask)
        else:
            x = block(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)
    return x


def prompted_image_features(visual: nn.Module, images: torch.Tensor, prompts: TowerPrompts) -> torch.Tensor:
    """Projected class-token features [N, D] of images [N, 3, H, W] with deep vision prompts."""
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    n = prompts.n_tokens
    x = torch.cat([x, prompts.tokens.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x)

    def splice(i, h):
        deep = prompts.for_block(i)
        if deep is None:
            return h
        return torch.cat([h[:, :-n], deep.to(h.dtype).expand(h.shape[0], -1, -1)], dim=1)

    x = _run_blocks(visual.transformer, x, splice)
    pooled, _ = visual._pool(x)  # ln_post, then the class token: only token 0 is read out
    return pooled @ visual.proj if visual.proj is not None else pooled


def prompted_text_features(clip: nn.Module, tokens: torch.Tensor, prompts: TowerPrompts, length: int,
                           attn_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states [C, length, W] of the text tower with the context at positions 1..n_t (before ln_final)."""
    cast = clip.transformer.get_cast_dtype()
    n = prompts.n_tokens
    with torch.no_grad():
        emb = clip.token_embedding(tokens[:, :length]).to(cast)
    ctx = prompts.tokens.to(cast).expand(emb.shape[0], -1, -1)
    x = torch.cat([emb[:, :1], ctx, emb[:, 1 + n:]], dim=1)
    x = x + clip.positional_embedding[:length].to(cast)

    def splice(i, h):
        deep = prompts.for_block(i)
        if deep is None:
            return h
        return torch.cat([h[:, :1], deep.to(h.dtype).expand(h.shape[0], -1, -1), h[:, 1 + n:]], dim=1)

    return _run_blocks(clip.transformer, x, splice, attn_mask=attn_mask)
