"""ViFi-CLIP on open_clip's CLIP: frames through the image tower, mean over time, cosine with class prompts.

Shapes: videos [B, T, 3, H, W] (normalised float), video features [B, D], text features [C, D].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TRAIN_MODES = ("both", "image", "text", "frozen", "prompt")


def class_prompts(names: list[str], template: str | None) -> list[str]:
    """Texts for the classes: the template filled with the raw name, or the bare name (vanilla zero-shot)."""
    if template is None:
        return list(names)
    return [template.format(name) for name in names]


class VideoHead(nn.Module):
    """The part of the model a video batch flows through: image tower + logit scale.

    Kept as its own module so DDP can wrap exactly what runs once per micro-batch, while the text tower runs once
    per optimizer step outside it.
    """

    def __init__(self, visual: nn.Module, logit_scale: nn.Parameter):
        super().__init__()
        self.visual = visual
        self.logit_scale = logit_scale
        self.vision_prompts = None  # TowerPrompts when bridge-and-prompt adds vision prompts

    def encode_frames(self, images: torch.Tensor) -> torch.Tensor:
        if self.vision_prompts is None:
            return self.visual(images)
        from vifi.model.prompts import prompted_image_features

        return prompted_image_features(self.visual, images, self.vision_prompts)

    def encode_video(self, videos: torch.Tensor) -> torch.Tensor:
        b, t = videos.shape[:2]
        frames = self.encode_frames(videos.flatten(0, 1))  # [B*T, D], projected, unnormalised
        return frames.view(b, t, -1).mean(dim=1)

    def forward(self, videos: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        video = F.normalize(self.encode_video(videos), dim=-1)
        text = F.normalize(text_features, dim=-1)
        return self.logit_scale.exp() * video @ text.t().to(video.dtype)


class ViFiCLIP(nn.Module):
    def __init__(self, clip: nn.Module, arch: dict[str, Any], train_mode: str = "both", prompts=None):
        super().__init__()
        self.clip = clip
        self.arch = arch
        self.head = VideoHead(clip.visual, clip.logit_scale)
        self.prompts = None
        self.base_ref: dict[str, str] = {}  # path and sha256 of the checkpoint prompts are learned on
        if prompts is not None:
            self.attach_prompts(prompts)
        self.set_train_mode(train_mode)

    def attach_prompts(self, prompts) -> None:
        """Add deep prompts (vifi.model.prompts.Prompts); the CLIP weights stay as they are."""
        self.prompts = prompts
        self.head.vision_prompts = prompts.vision

    def arch_name(self) -> str:
        v, t = self.arch["vision_cfg"], self.arch["text_cfg"]
        return f"ViT(width {v['width']}, {v['layers']} layers, patch {v['patch_size']}) / text(width {t['width']}, {t['layers']} layers)"

    # ---- trainable parameters -------------------------------------------------------------------------------
    def set_train_mode(self, mode: str) -> None:
        if mode not in TRAIN_MODES:
            raise ValueError(f"train mode must be one of {TRAIN_MODES}")
        if mode == "prompt" and self.prompts is None:
            raise ValueError("train mode 'prompt' needs prompts attached first")
        self.train_mode = mode
        for name, param in self.clip.named_parameters():
            param.requires_grad_(self._is_trainable(name, mode))
        if self.prompts is not None:
            self.prompts.requires_grad_(mode == "prompt")

    @staticmethod
    def _is_trainable(name: str, mode: str) -> bool:
        if name.startswith("token_embedding"):
            return False  # the reference embeds the prompts once; the token table is never fine-tuned
        if mode == "both":
            return True
        if mode == "image":
            return name.startswith("visual.")
        if mode == "text":
            return not name.startswith("visual.") and name != "logit_scale"
        return False

    @property
    def text_trainable(self) -> bool:
        if self.train_mode == "prompt":
            return self.prompts.text is not None
        return self.train_mode in ("both", "text")

    @property
    def image_trainable(self) -> bool:
        if self.train_mode == "prompt":
            return self.prompts.vision is not None
        return self.train_mode in ("both", "image")

    # ---- text side ------------------------------------------------------------------------------------------
    def class_texts(self, names: list[str], template: str | None) -> list[str]:
        """The class prompts this model is evaluated and trained with.

        With deep prompts attached (bridge-and-prompt), "_" in class names becomes a space, as the reference's
        prompt learner does (docs/design.md); in fine-tuning modes names are used as they are.
        """
        if self.prompts is not None:
            names = [name.replace("_", " ") for name in names]
        return class_prompts(names, template)

    def tokenize(self, texts: list[str], what: str = "class prompt") -> torch.Tensor:
        import open_clip

        ctx = self.clip.context_length
        tokens = open_clip.tokenize(texts, context_length=ctx)
        # open_clip truncates silently (EOT forced into the last slot); the reference treats that as an error.
        too_long = [t for t, row in zip(texts, tokens) if row[-1] != 0]
        if too_long:
            from vifi.errors import VifiError

            raise VifiError(f"{what} longer than {ctx} tokens: {too_long[0][:80]!r}")
        return tokens

    def encode_text(self, tokens: torch.Tensor, truncate: bool = True, length: int | None = None) -> torch.Tensor:
        """Text features [C, D] of token ids [C, ctx].

        With `truncate`, the causal transformer runs only up to the longest prompt's EOT: under the causal mask no
        position attends to later ones, so the features at every EOT are exactly those of the 77-token run.
        `length` (that EOT + 1, computed once from host tokens) saves the device→host read of finding it.
        """
        clip = self.clip
        eot = tokens.argmax(dim=-1)  # EOT has the largest id
        if length is None:
            length = int(eot.max()) + 1 if truncate else tokens.shape[1]
        mask = clip.attn_mask[:length, :length]
        if self.prompts is not None and self.prompts.text is not None:
            from vifi.model.prompts import prompted_text_features

            x = prompted_text_features(clip, tokens, self.prompts.text, length, mask)
        else:
            cast = clip.transformer.get_cast_dtype()
            with torch.no_grad():
                x = clip.token_embedding(tokens[:, :length]).to(cast)
            x = x + clip.positional_embedding[:length].to(cast)
            x = clip.transformer(x, attn_mask=mask)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ clip.text_projection

    # ---- full forward ---------------------------------------------------------------------------------------
    def forward(self, videos: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [B, C]; the naive path that recomputes the text every call (reference behaviour)."""
        return self.head(videos, self.encode_text(tokens))
