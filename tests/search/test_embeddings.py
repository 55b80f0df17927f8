"""The index's video embedding: one vector per video, views averaged (no model file, no subprocess)."""

import torch
import torch.nn.functional as F

from vifi.data.augment import normalise
from vifi.engine.runtime import setup_runtime
from vifi.search.build import video_embeddings


def test_views_are_normalised_averaged_and_normalised_again(tiny_model):
    tiny_model.eval()
    frames = torch.randint(0, 256, (2, 3, 4, 64, 64, 3), dtype=torch.uint8)  # [b, V, T, H, W, 3]
    got = video_embeddings(tiny_model, frames, setup_runtime("cpu"))
    with torch.no_grad():
        for b in range(2):
            views = [F.normalize(tiny_model.head.encode_video(normalise(frames[b, v:v + 1])), dim=-1)[0]
                     for v in range(3)]
            naive = torch.stack(views).mean(dim=0)
            torch.testing.assert_close(got[b], naive / naive.norm(), atol=1e-5, rtol=0)
    single = video_embeddings(tiny_model, frames[:, :1], setup_runtime("cpu"))  # one view: the head's output
    with torch.no_grad():
        torch.testing.assert_close(single, F.normalize(tiny_model.head.encode_video(normalise(frames[:, 0])), dim=-1),
                                   atol=1e-5, rtol=0)
