"""vifi from Python: load a model once, then encode videos and texts or classify, through the CLI's own code paths.

    model = vifi.load("runs/k400")                   # what `vifi eval --checkpoint` takes (docs/api.md)
    v = model.encode_video(["a.mp4"])                # = the rows `vifi index` stores
    df = model.classify(["a.mp4"], ["juggling", "cooking"])   # = `vifi zeroshot --out -`

Loading: `vifi.model.factory.load_for_inference` (zeroshot's); frames, input size and template:
`vifi.model.facts.inference_inputs` (every inference command's); video embeddings:
`vifi.search.build.video_embeddings` on the evaluation's decoded views (EvalClips), as `vifi index`; classification:
`vifi.zeroshot.classify`. Mistakes raise the typed `vifi.errors` exceptions with the CLI's one-line messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence, Union

import pandas as pd
import torch
import torch.nn.functional as F

from vifi.errors import InputError, VideoError
from vifi.model.facts import DEFAULT_FRAMES, CheckpointFacts, InferenceInputs

VideoLike = Union[str, os.PathLike, torch.Tensor]


def load(checkpoint: str | os.PathLike | None = None, *, clip: str | None = None, arch: str = "ViT-B-16",
         device: str | None = None, frames: int | None = None, template: str | None = None,
         vanilla: bool = False, cache_dir: str | os.PathLike | None = None) -> "Model":
    """A frozen model ready for inference.

    `checkpoint`: a run folder, a vifi `.safetensors`, a prompt artifact, a paper `.pth` (with `clip=`, the CLIP
    weights its token table comes from) or `hf-hub:ORG/NAME[/FILE]`; None with `clip=` alone: plain CLIP.
    `device`: None = CUDA when present, else CPU. `frames`, `template`, `vanilla`: as the CLI flags, overriding
    the checkpoint's facts (with the same notice on stderr). `cache_dir`: where Hub and open_clip downloads are
    looked up and stored (`--cache-dir`; default the Hugging Face cache, HF_HOME / HF_HUB_CACHE).
    """
    from vifi.config import check_cli_values
    from vifi.model.factory import load_for_inference
    from vifi.model.facts import inference_inputs

    check_cli_values(frames=frames, device=device, template=template)
    if cache_dir is not None:
        from vifi.model.pretrained import set_cache_dir

        set_cache_dir(cache_dir)
    net, facts = load_for_inference(None if checkpoint is None else str(checkpoint), clip, arch)
    return Model(net, facts, inference_inputs(facts, frames=frames, template=template, vanilla=vanilla), device)


def read_video(path: str | os.PathLike, frames: int = DEFAULT_FRAMES, views: str = "1x1", *, size: int = 224,
               backend: str = "decord") -> torch.Tensor:
    """uint8 [views, T, 3, H, W]: the frames evaluation feeds a model (uniform clips, short side to `size`, centre
    or three crops), views = CLIPS×CROPS of `views` ("1x1", "4x3")."""
    from vifi.inference_flags import check_backend, parse_views

    clips, crops = parse_views(views)
    return _read(Path(path), frames, size, clips, crops, check_backend(backend)).permute(0, 1, 4, 2, 3)


def _read(path: Path, frames: int, size: int, clips: int, crops: int, backend: str) -> torch.Tensor:
    """uint8 [V, T, H, W, 3] through EvalClips (what eval, zeroshot and index decode with)."""
    from vifi.data.annotations import Entry
    from vifi.data.dataset import ClipSpec, EvalClips

    if not path.is_file():
        raise VideoError(f"video not found: {path}")
    if frames < 1:
        raise InputError(f"frames {frames}: must be at least 1")
    item = EvalClips([Entry(str(path.resolve()), 0)], "/", ClipSpec(frames, size, backend), clips, crops)[0]
    if item["failed"]:
        raise VideoError(item["failed"])
    return item["frames"]


class Model:
    """A loaded vifi model (from `vifi.load`). `net` is the ViFiCLIP module, `facts` what its checkpoint records."""

    def __init__(self, net, facts: CheckpointFacts, inputs: InferenceInputs, device: str | None = None):
        from vifi.engine.runtime import setup_runtime

        self.runtime = setup_runtime(device, "auto")
        self.net = net.to(self.runtime.device).eval()
        self.facts = facts
        self.inputs = inputs
        self._device = device

    @property
    def frames(self) -> int:
        """Frames per clip the model is fed (the checkpoint's, unless `load(frames=)` said otherwise)."""
        return self.inputs.frames

    @property
    def input_size(self) -> int:
        return self.inputs.input_size

    @property
    def template(self) -> str | None:
        """The class-name template texts go through; None = bare texts."""
        return self.inputs.template

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes the checkpoint was trained on, () when it does not record them."""
        return self.facts.class_names

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def __repr__(self) -> str:
        return (f"vifi.Model({self.facts.path or 'plain CLIP'}, frames={self.frames}, input_size={self.input_size}, "
                f"template={self.template!r}, device={self.device})")

    @torch.no_grad()
    def encode_video(self, videos: VideoLike | Sequence[VideoLike], *, views: str = "1x1", batch: int = 8,
                     backend: str = "decord") -> torch.Tensor:
        """float32 [N, D] on the CPU, L2-normalised: one row per video, as `vifi index` stores it (each view
        normalised, views averaged, normalised again). A video is a path, or a tensor from `read_video`
        (uint8 [V, T, 3, H, W] with H = W = input_size)."""
        from vifi.inference_flags import check_backend, parse_views
        from vifi.search.build import video_embeddings

        clips, crops = parse_views(views)
        check_backend(backend)
        if batch < 1:
            raise InputError(f"batch {batch}: must be at least 1")
        items = _as_list(videos)
        rows = []
        for start in range(0, len(items), batch):
            decoded = [self._frames_of(v, clips, crops, backend) for v in items[start:start + batch]]
            if len({tuple(d.shape) for d in decoded}) > 1:
                raise InputError("videos in one call must have the same views and frames: "
                                 f"got shapes {sorted({tuple(d.shape) for d in decoded})}")
            rows.append(video_embeddings(self.net, torch.stack(decoded), self.runtime))
        return torch.cat(rows)

    def _frames_of(self, video: VideoLike, clips: int, crops: int, backend: str) -> torch.Tensor:
        """uint8 [V, T, H, W, 3] (channels last, as the video head's input pipeline takes it)."""
        if isinstance(video, torch.Tensor):
            if video.dtype != torch.uint8 or video.dim() != 5 or video.shape[2] != 3:
                raise InputError(f"a video tensor must be uint8 [views, T, 3, H, W] (from vifi.read_video); got "
                                 f"{str(video.dtype).removeprefix('torch.')} {list(video.shape)}")
            if tuple(video.shape[-2:]) != (self.input_size, self.input_size):
                raise InputError(f"a video tensor is {video.shape[-2]}x{video.shape[-1]}, the model takes "
                                 f"{self.input_size}x{self.input_size}: read it with "
                                 f"vifi.read_video(path, frames=model.frames, size=model.input_size)")
            return video.permute(0, 1, 3, 4, 2)
        return _read(Path(video), self.frames, self.input_size, clips, crops, backend)

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str], *, template: bool = True) -> torch.Tensor:
        """float32 [M, D] on the CPU, L2-normalised: each text inside the model's template (as its class names
        were trained; `template=False` encodes the texts as written)."""
        from vifi.engine.evaluate import class_text_features

        names = [texts] if isinstance(texts, str) else list(texts)
        if not names or not all(isinstance(t, str) and t.strip() for t in names):
            raise InputError("texts must be one or more non-empty strings")
        features = class_text_features(self.net, names, self.template if template else None, self.runtime)
        return F.normalize(features, dim=-1).cpu()

    def classify(self, videos: str | os.PathLike | Iterable[str | os.PathLike], labels: str | Sequence[str], *,
                 views: str = "1x1", batch: int = 4, backend: str = "decord",
                 skip_undecodable: bool = False) -> pd.DataFrame:
        """One row per (video, label): video, label, prob, each video's rows most probable first: the rows of
        `vifi zeroshot --out -`. `videos`: files or folders; `labels`: a list, or "a,b,c" as `--labels` takes."""
        from vifi.inference_flags import check_backend, parse_views
        from vifi.zeroshot import classify, collect_videos, parse_labels, unique_names

        names = parse_labels(labels, None) if isinstance(labels, str) else unique_names(list(labels),
                                                                                         "the label list")
        if batch < 1:
            raise InputError(f"batch {batch}: must be at least 1")
        paths = collect_videos([os.fspath(v) for v in _as_list(videos)])
        return classify(paths, names, self.net, self.inputs, views=parse_views(views), device=self._device,
                        batch=batch, backend=check_backend(backend), skip_undecodable=skip_undecodable)


def _as_list(videos) -> list:
    if isinstance(videos, (str, os.PathLike, torch.Tensor)):
        return [videos]
    items = list(videos)
    if not items:
        raise VideoError("no videos given")
    return items
