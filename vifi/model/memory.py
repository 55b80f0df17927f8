"""How much GPU memory one training step of an architecture takes, and the micro-batch and activation
checkpointing that fit a device (docs/performance.md, "Memory estimate and larger backbones").

The estimate is a sum of terms that scale the way the tensors do:
- optimizer state: 16 bytes per trainable parameter (fp32 weight, gradient, AdamW's two moments), 4 per frozen one;
- image activations: per image block that is not checkpointed, `ACT_BYTES[mode] × frames × tokens × width`
  (what autograd keeps for one block under bf16 autocast); a checkpointed block keeps only its bf16 input
  (2 bytes × tokens × width); when every block is checkpointed, one block's activations come back during backward;
- everything else (text tower activations for the class prompts, inputs, logits, allocator slack): `OTHER_BYTES`
  per (class × text token × text width × text layer) of a trainable text tower plus the clip's frames in uint8,
  fp32 and bf16.

The per-token coefficients were fitted to the peak memory measured on an H200 with ViT-B/16 at 32 frames
(docs/bench/h200-2026-11-30.jsonl); `tests/model/test_memory.py` checks the estimate against each of those rows.
Other architectures are extrapolations of the same terms: not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2 ** 30
# Bytes autograd keeps per image token and unit of width in one transformer block (bf16 autocast, SDPA attention),
# least-squares fits to the H200 rows (eager: no / 4 / all 12 blocks checkpointed; compiled: none and 8 blocks at
# micro-batch 16, none at 32); with these rounded values every row is reproduced within 0.17 GiB.
ACT_BYTES = {"eager": 44.3, "compiled": 33.0}
# Everything that is neither optimizer state nor image-block activations, per class-token-width-layer of the text
# tower: the second coefficient of the same fits (3.2 GiB eager, 1.9 GiB compiled at 400 classes of 12 tokens).
OTHER_BYTES = {"eager": 110.7, "compiled": 64.0}
BENCH_TEXT_TOKENS = 12  # longest prompt of `vifi bench train`'s Kinetics-like class names (EOT included)
MAX_MICRO_BATCH = 16  # more clips per micro-batch bought nothing measurable on the H200 (docs/performance.md)


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know of an architecture (read off its open_clip config)."""

    image_blocks: int
    image_tokens: int  # patches + class token
    image_width: int
    image_params: int
    text_layers: int
    text_width: int
    text_params: int
    image_size: int

    @classmethod
    def of(cls, arch: dict[str, Any]) -> "Shape":
        import torch

        from vifi.model.backbone import build_clip

        with torch.device("meta"):  # exact parameter counts without allocating the weights
            clip = build_clip(arch)
        image = sum(p.numel() for p in clip.visual.parameters())
        vision = arch["vision_cfg"]
        grid = vision["image_size"] // vision["patch_size"]
        return cls(image_blocks=vision["layers"], image_tokens=grid * grid + 1, image_width=vision["width"],
                   image_params=image, text_layers=arch["text_cfg"]["layers"], text_width=arch["text_cfg"]["width"],
                   text_params=sum(p.numel() for p in clip.parameters()) - image, image_size=vision["image_size"])


def train_step_bytes(shape: Shape, *, frames: int, micro_batch: int, classes: int, checkpoint_blocks: int = 0,
                     mode: str = "both", compiled: bool = False, text_tokens: int = BENCH_TEXT_TOKENS) -> float:
    """Estimated peak bytes of one training step on one device. `mode`: both | image | text | prompt."""
    kernel = "compiled" if compiled else "eager"
    image_grads = mode in ("both", "image", "prompt")  # prompts enter every image block: all activations are kept
    text_grads = mode in ("both", "text", "prompt")
    trainable = (shape.image_params if mode in ("both", "image") else 0) + \
                (shape.text_params if mode in ("both", "text") else 0)
    states = 16 * trainable + 4 * (shape.image_params + shape.text_params - trainable)
    n_frames = frames * micro_batch
    per_block = ACT_BYTES[kernel] * n_frames * shape.image_tokens * shape.image_width
    ckpt = min(checkpoint_blocks, shape.image_blocks)
    image = 0.0
    if image_grads:
        image = (shape.image_blocks - ckpt) * per_block + ckpt * 2 * n_frames * shape.image_tokens * shape.image_width
        if ckpt == shape.image_blocks:
            image += per_block  # the block being recomputed in backward
    text = OTHER_BYTES[kernel] * classes * text_tokens * shape.text_width * shape.text_layers if text_grads else 0.0
    inputs = n_frames * 3 * shape.image_size ** 2 * (1 + 4 + 2)
    return states + image + text + inputs


@dataclass(frozen=True)
class MemoryPlan:
    micro_batch: int
    checkpoint_blocks: int
    estimate_gib: float
    budget_gib: float

    @property
    def checkpointing(self) -> int | bool:
        """The value of train.checkpointing this plan means."""
        return self.checkpoint_blocks if self.checkpoint_blocks else False


def plan_memory(shape: Shape, *, device_gib: float, frames: int, classes: int, batch: int, mode: str = "both",
                compiled: bool = False, mix_group: int = 4, headroom: float = 0.9, min_micro_batch: int = 8,
                text_tokens: int = BENCH_TEXT_TOKENS) -> MemoryPlan:
    """The micro-batch and number of checkpointed image blocks for one device of `device_gib`.

    Policy (docs/performance.md): checkpointing costs about a third of a block's compute per checkpointed block
    (measured: 8 of 12 blocks = 84.6 % of full speed), so the fewest checkpointed blocks win, at the largest
    micro-batch up to 16 that still has `min_micro_batch` clips (small micro-batches starve the GPU); only when
    no number of checkpointed blocks fits that is the micro-batch lowered. Micro-batches are whole mix groups
    that divide `batch` (the clips one device sees per optimizer step).
    """
    from vifi.errors import VifiError

    budget = device_gib * headroom * GIB
    step = max(1, mix_group)
    sizes = [m for m in range(min(MAX_MICRO_BATCH, batch), 0, -1) if m % step == 0 and batch % m == 0]
    if not sizes:
        raise VifiError(f"no micro-batch of whole mix groups of {step} divides the {batch} clips per device and step")

    def fits(micro: int, blocks: int) -> float | None:
        need = train_step_bytes(shape, frames=frames, micro_batch=micro, classes=classes, checkpoint_blocks=blocks,
                                mode=mode, compiled=compiled, text_tokens=text_tokens)
        return need if need <= budget else None

    tiers = [[m for m in sizes if m >= min_micro_batch], [m for m in sizes if m < min_micro_batch]]
    for tier in tiers:
        for blocks in range(shape.image_blocks + 1):
            for micro in tier:
                need = fits(micro, blocks)
                if need is not None:
                    return MemoryPlan(micro, blocks, need / GIB, budget / GIB)
    least = train_step_bytes(shape, frames=frames, micro_batch=sizes[-1], classes=classes,
                             checkpoint_blocks=shape.image_blocks, mode=mode, compiled=compiled,
                             text_tokens=text_tokens)
    raise VifiError(f"not even a micro-batch of {sizes[-1]} clips fits {device_gib:g} GiB even with every "
                    f"image block checkpointed (estimate {least / GIB:.1f} GiB); use fewer frames, a smaller "
                    "architecture or a larger device")
