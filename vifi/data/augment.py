"""Batch colour augmentation and normalisation on the device (GPU when there is one).

Workers hand over uint8 frames plus each video's random draws (`draw_colour_params`), so the result depends only
on (seed, epoch, video) — not on worker count, batch composition or world size — and one batched pass does the
work the reference did per frame through PIL. Float maths without the intermediate uint8 rounding of PIL.
"""

from __future__ import annotations

import numpy as np
import torch

# ImageNet statistics ×255 on 0–255 RGB: what the released ViFi-CLIP weights were trained with (not CLIP's).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.4, 0.4, 0.2, 0.1


def draw_colour_params(t: int, rng: np.random.Generator, jitter_p: float, gray_p: float) -> dict[str, np.ndarray]:
    """Per-video decisions (flip, jitter on/off, grayscale) and per-frame jitter factors and order (SPEC §2.5)."""
    return {
        "flip": np.array(rng.random() < 0.5),
        "jitter": np.array(rng.random() < jitter_p),
        "gray": np.array(rng.random() < gray_p),
        "brightness": rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS, size=t).astype(np.float32),
        "contrast": rng.uniform(1 - CONTRAST, 1 + CONTRAST, size=t).astype(np.float32),
        "saturation": rng.uniform(1 - SATURATION, 1 + SATURATION, size=t).astype(np.float32),
        "hue": rng.uniform(-HUE, HUE, size=t).astype(np.float32),
        "order": np.stack([rng.permutation(4) for _ in range(t)]).astype(np.int64),
    }


_CONSTANTS: dict = {}


def _constants(device: torch.device) -> dict[str, torch.Tensor]:
    """Small constant tensors, made once per device: a tensor built from a Python list on a GPU is a blocking copy
    from pageable memory, which would stall the host once per micro-batch."""
    if device not in _CONSTANTS:
        mean = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)
        _CONSTANTS[device] = {k: v.to(device) for k, v in {
            "mean_255": mean, "inv_std_255": 1.0 / std, "mean_1": mean / 255.0, "inv_std_1": 255.0 / std,
            "neutral": torch.tensor(NEUTRAL, dtype=torch.float32), "ops": torch.arange(4)}.items()}
    return _CONSTANTS[device]


def _stats(device: torch.device, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std) as [3, 1, 1] on `device`, for values in [0, scale] (255 or 1)."""
    c = _constants(device)
    return (c["mean_255"], c["inv_std_255"]) if scale == 255.0 else (c["mean_1"], c["inv_std_1"])


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (0–255) or [0,1] float [..., H, W, 3] channels-last -> normalised float [..., 3, H, W].

    (x − mean)·(1/std) straight from 0–255 values: one conversion pass and one fused subtract-multiply."""
    mean, inv_std = _stats(frames.device, 255.0 if frames.dtype == torch.uint8 else 1.0)
    x = frames.movedim(-1, -3).float()
    return torch.sub(x, mean).mul_(inv_std)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] -> [..., 1, H, W] with torchvision's ITU-R 601 weights."""
    r, g, b = x.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (ratio * a + (1 - ratio) * b).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[..., 3, H, W] in [0,1] -> (h, s, v), each [..., H, W]; torchvision's formulas."""
    r, g, b = x.unbind(-3)
    maxc, _ = x.max(dim=-3)
    minc, _ = x.min(dim=-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Closed form: channel n in (5, 3, 1) is v − v·s·clamp(min(k, 4 − k), 0, 1) with k = (n + 6h) mod 6.

    Equal to the six-sector table torchvision uses (to float rounding), with no index tensor, stack of six
    candidates or one-hot: a handful of elementwise ops that a compiler fuses into one kernel.
    """
    h6 = h * 6.0
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h6 + n, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=-3)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    h, s, v = _rgb_to_hsv(x)
    return _hsv_to_rgb(torch.remainder(h + shift.view(-1, 1, 1), 1.0), s, v).clamp(0, 1)


def adjust(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    """One ColorJitter op on [N, 3, H, W] in [0,1] with a per-image factor [N]."""
    f = factor.view(-1, 1, 1, 1)
    if op == 0:
        return _blend(x, torch.zeros_like(x), f)
    if op == 1:
        mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(x, mean, f)
    if op == 2:
        return _blend(x, _gray(x), f)
    return _shift_hue(x, factor)


NEUTRAL = (1.0, 1.0, 1.0, 0.0)  # factors that leave an image unchanged: blends with ratio 1 are exact identities


def colour_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-frame jitter of [N, 3, H, W] in [0,1]. factors [N, 4] (brightness, contrast, saturation, hue);
    order [N, 4] a permutation per frame.

    Stage k applies, to every frame, op order[:, k] with its factor. Without reading anything back to the host:
    each stage runs the three blends with the frame's factor where the blend is that frame's op and a neutral
    factor elsewhere (ratio 1: `1·x + 0·y` is exactly x), and the hue shift where it is selected.
    """
    constants = _constants(x.device)
    neutral, ops = constants["neutral"].to(factors.dtype), constants["ops"]
    for stage in range(4):
        chosen = order[:, stage:stage + 1] == ops  # [N, 4]; (one_hot would check its input's range on the host)
        stage_factors = torch.where(chosen, factors, neutral)
        for op in range(3):
            x = adjust(x, op, stage_factors[:, op])
        x = torch.where(chosen[:, 3].view(-1, 1, 1, 1), _shift_hue(x, factors[:, 3]), x)
    return x


def augment_batch(frames: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] + per-video params -> normalised float [B, T, 3, H, W] (flip, jitter, gray)."""
    b, t = frames.shape[:2]
    x = frames.float().div_(255.0).movedim(-1, -3)  # [B, T, 3, H, W]
    flip = params["flip"].view(b, 1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
    factors = torch.stack([params["brightness"], params["contrast"], params["saturation"], params["hue"]], dim=-1)
    jittered = colour_jitter(x.flatten(0, 1), factors.flatten(0, 1), params["order"].flatten(0, 1)).view_as(x)
    x = torch.where(params["jitter"].view(b, 1, 1, 1, 1), jittered, x)
    x = torch.where(params["gray"].view(b, 1, 1, 1, 1), _gray(x).expand_as(x), x)
    mean, inv_std = _stats(x.device, 1.0)
    return (x - mean) * inv_std
