import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from vifi.data.augment import MEAN, STD, augment_batch, colour_jitter, draw_colour_params, normalise

OPS = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]


def test_batched_per_frame_jitter_equals_torchvision_frame_by_frame():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    rng = np.random.default_rng(0)
    p = draw_colour_params(6, rng, 1.0, 0.0)
    factors = torch.tensor(np.stack([p["brightness"], p["contrast"], p["saturation"], p["hue"]], 1))
    order = torch.tensor(p["order"])
    ours = colour_jitter(x, factors, order)
    for i in range(6):
        naive = x[i]
        for op in order[i].tolist():
            naive = OPS[op](naive, float(factors[i, op]))
        torch.testing.assert_close(ours[i], naive, rtol=1e-4, atol=1e-4)


def test_normalise_uses_imagenet_statistics_times_255():
    frames = torch.full((1, 2, 2, 3), 200, dtype=torch.uint8)
    out = normalise(frames)
    expect = [(200 - m) / s for m, s in zip(MEAN, STD)]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expect), rtol=1e-5, atol=1e-5)


def test_augment_flip_and_gray_per_video():
    frames = torch.zeros(2, 1, 4, 4, 3, dtype=torch.uint8)
    frames[:, :, :, 0, 0] = 255  # red left column
    params = {k: torch.tensor(v) for k, v in draw_colour_params(1, np.random.default_rng(0), 0, 0).items()}
    batch = {k: torch.stack([v, v]) for k, v in params.items()}
    batch["flip"] = torch.tensor([True, False])
    batch["jitter"] = torch.tensor([False, False])
    batch["gray"] = torch.tensor([False, True])
    out = augment_batch(frames, batch)
    red = (255 - MEAN[0]) / STD[0]
    assert torch.isclose(out[0, 0, 0, 0, 3], torch.tensor(red))  # flipped: red now in the right column
    gray = 0.2989 * 255
    assert torch.isclose(out[1, 0, 1, 0, 0], torch.tensor((gray - MEAN[1]) / STD[1]), atol=1e-3)
