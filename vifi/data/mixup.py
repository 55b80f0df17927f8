"""Mixup / CutMix with label smoothing on a device batch (SPEC §2.7), with an explicit torch.Generator."""

from __future__ import annotations

import torch


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), on)


def mix_batch(videos: torch.Tensor, labels: torch.Tensor, num_classes: int, *, mixup_alpha: float,
              cutmix_alpha: float, switch_prob: float, smoothing: float,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """videos [B, T, 3, H, W] -> (mixed videos, soft targets [B, C]).

    One λ per batch. CutMix (probability `switch_prob` when both are on) pastes one box, the same for all frames,
    from the flipped batch; λ is then the kept area. Mixup blends with the flipped batch. The partner is the batch
    reversed, as in timm's Mixup (the reference's implementation).
    """
    targets = smooth_one_hot(labels, num_classes, smoothing)
    use_mix, use_cut = mixup_alpha > 0, cutmix_alpha > 0
    if not (use_mix or use_cut):
        return videos, targets
    do_cut = use_cut and (not use_mix or float(torch.rand((), generator=generator)) < switch_prob)
    alpha = cutmix_alpha if do_cut else mixup_alpha
    lam = _beta(alpha, generator)
    partner = videos.flip(0)
    if do_cut:
        h, w = videos.shape[-2:]
        cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy = int(torch.randint(0, h, (1,), generator=generator))
        cx = int(torch.randint(0, w, (1,), generator=generator))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        videos = videos.clone()
        videos[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        videos = videos * lam + partner * (1.0 - lam)
    targets = targets * lam + targets.flip(0) * (1.0 - lam)
    return videos, targets


def _beta(alpha: float, gen: torch.Generator) -> float:
    # Beta(a, a) from two Gamma draws with our own generator (torch.distributions has no generator argument).
    g1 = torch._standard_gamma(torch.tensor([alpha], dtype=torch.float64), generator=gen)
    g2 = torch._standard_gamma(torch.tensor([alpha], dtype=torch.float64), generator=gen)
    return float(g1 / (g1 + g2))


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()
