"""How much of an attention map lies on the demo's moving shape: the map's mean over the shape's pixels divided by
its mean over the background, per video (docs/design.md, "Attention maps"). The demo draws its shapes, so the masks
are exact; they travel through the same frame sampling, resize and centre crop as the pixels the model sees."""

from __future__ import annotations

from pathlib import Path

import torch


def mask_in_crop(masks, size: int, frames: int) -> torch.Tensor:
    """The shape masks [N, H, W] at the sampled frames, through the model's resize and centre crop: [T, S, S]."""
    from vifi.data.sampling import sample_test_indices
    from vifi.data.spatial import test_views

    picked = torch.from_numpy(masks[sample_test_indices(len(masks), frames)])
    as_video = picked.to(torch.uint8).mul(255)[..., None].expand(-1, -1, -1, 3)  # a white-on-black video
    return test_views(as_video, size, 1)[0][..., 0] > 127


def inside_over_outside(maps: torch.Tensor, inside: torch.Tensor) -> float:
    """Mean of the map over the shape's pixels / mean over the background's (each patch's value on its pixels); 1
    for a map that is zero everywhere (relevance can be: no attention raised the score), which prefers neither."""
    scale = inside.shape[-1] // maps.shape[-1]
    pixels = maps.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    if not pixels.any():
        return 1.0
    return float(pixels[inside].mean() / pixels[~inside].mean())


def demo_mask_ratios(checkpoint, root: Path, *, train_per_class: int, test_per_class: int, seed: int = 0,
                     frames: int = 8, methods=("last", "rollout", "relevance")) -> dict[str, list[float]]:
    """Per method, the ratio of every held-out demo video under `root` (the demo's videos/ folder, written by
    `generate_demo` with the same sizes and seed), each explained for the model's predicted class."""
    from vifi.data.demo import demo_videos
    from vifi.engine.evaluate import class_text_features
    from vifi.engine.runtime import setup_runtime
    from vifi.model.checkpoint import build_from_checkpoint
    from vifi.model.facts import inference_inputs
    from vifi.viz.attention import model_input, video_maps

    model, facts = build_from_checkpoint(checkpoint)
    model.eval()
    text = class_text_features(model, list(facts.class_names), inference_inputs(facts).template,
                               setup_runtime("cpu", "fp32"))
    ratios = {method: [] for method in methods}
    for split, rel, _, _, masks in demo_videos(train_per_class, test_per_class, seed):
        if split != "test":
            continue
        shown = model_input(Path(root) / rel, frames, facts.input_size)
        inside = mask_in_crop(masks, facts.input_size, frames)
        for method in methods:
            maps, _ = video_maps(model, shown, method, text_features=text)
            ratios[method].append(inside_over_outside(maps, inside))
    return ratios
