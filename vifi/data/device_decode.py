"""Training clips decoded on the GPU (`data.backend: nvjpeg | nvdec`), with the CPU path's exact draws.

The CPU path (vifi.data.dataset.TrainClips) decodes, samples and crops in the workers. Here the workers only read
what the GPU needs and draw the clip's random numbers, in the same order from the same seeded generator
(seed, epoch, index): the frame indices (from the container's frame count), the crop box (from the frame size in
the stream header) and the colour parameters. The main process then decodes those frames on the GPU and applies
the same geometry (vifi.data.spatial.apply_train_box) there:

- `nvjpeg`: for videos re-encoded to intra-only MJPEG (`vifi prepare --reencode`): the workers demux the JPEG
  packets of the sampled frames (no decoding) and `torchvision.io.decode_jpeg(device="cuda")` decodes them in one
  batched call.
- `nvdec`: for raw H.264/HEVC: NVIDIA's PyNvVideoCodec decodes the sampled frame indices of the file on the GPU
  (`pip install 'vifi[gpu-decode]'`).

Evaluation keeps decoding on the CPU (EvalClips), with decord. Without a CUDA device these backends are refused in
one line; tests run the same interface with the CPU behind it (`ClipDecoder(..., torch.device("cpu"))`: JPEG
decoded by torchvision on the CPU, H.264 by PyAV).
"""

from __future__ import annotations

import numpy as np
import torch

from vifi.data.augment import draw_colour_params
from vifi.data.dataset import TrainClips
from vifi.data.decoding import DecodeError, clean_reason
from vifi.data.sampling import sample_train_indices
from vifi.data.spatial import apply_train_box, draw_train_box
from vifi.errors import VifiError

GPU_BACKENDS = ("nvjpeg", "nvdec")


def check_device_backend(backend: str, device: torch.device) -> None:
    """One-line refusal of a GPU decode backend where it cannot run, before any work."""
    if backend not in GPU_BACKENDS:
        return
    if device.type != "cuda":
        raise VifiError(f"data.backend {backend} decodes on the GPU, and this run has no CUDA device; use "
                        "data.backend decord (or pyav, torchcodec)")
    if backend == "nvdec":
        import importlib.util

        if importlib.util.find_spec("PyNvVideoCodec") is None:
            raise VifiError("data.backend nvdec needs NVIDIA's PyNvVideoCodec: pip install 'vifi[gpu-decode]' "
                            "(or PyNvVideoCodec), or use data.backend decord")


def stream_header(path: str) -> tuple[int, int, int, str]:
    """(frames, height, width, codec) of the first video stream, from the container: no frame is decoded.

    The frame count is the header's, else the number of packets: for intra-only MJPEG one packet is one frame."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DecodeError(f"cannot decode video {path}: no video stream")
            stream = container.streams.video[0]
            n = int(stream.frames) or sum(1 for p in container.demux(stream) if p.size)
            ctx = stream.codec_context
            return n, int(ctx.height), int(ctx.width), ctx.name
    except av.error.FFmpegError as exc:
        raise DecodeError(f"cannot decode video {path}: {clean_reason(exc)}") from None


def jpeg_packets(path: str, indices: np.ndarray) -> list[torch.Tensor]:
    """The JPEG bytes of frames `indices` of an intra-only MJPEG video (packets in frame order), as uint8 tensors."""
    import av

    wanted = set(indices.tolist())
    found: dict[int, torch.Tensor] = {}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if stream.codec_context.name != "mjpeg":
                raise DecodeError(f"data.backend nvjpeg reads MJPEG videos (vifi prepare --reencode); {path} is "
                                  f"{stream.codec_context.name}: use data.backend nvdec or decord for it")
            i = 0
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if i in wanted:
                    found[i] = torch.frombuffer(bytearray(bytes(packet)), dtype=torch.uint8)
                i += 1
                if len(found) == len(wanted):
                    break
    except av.error.FFmpegError as exc:
        raise DecodeError(f"cannot decode video {path}: {clean_reason(exc)}") from None
    missing = wanted - set(found)
    if missing:
        raise DecodeError(f"cannot decode frames of {path}: frame {max(missing)} asked for, the video has fewer")
    return [found[i] for i in indices.tolist()]


class PlannedClips(TrainClips):
    """TrainClips for the GPU backends: items hold the plan of a clip (indices, crop box, JPEG bytes or the path)
    and its colour parameters; `ClipDecoder` turns a batch of plans into uint8 [B, T, S, S, 3] on the device."""

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        entry = self.entries[index]
        path = str(self.root / entry.path)
        rng = np.random.default_rng([self.seed, epoch, index])  # the draws of TrainClips, in its order
        t = self.spec.frames
        n, h, w, _ = stream_header(path)
        if n == 0:
            raise DecodeError(f"video {path} has no frames")
        indices = sample_train_indices(n, t, rng)
        box = draw_train_box(h, w, self.spec.size, rng)
        params = {k: torch.from_numpy(np.asarray(v)) for k, v in
                  draw_colour_params(t, rng, self.jitter_p, self.gray_p).items()}
        plan = {"path": path, "indices": torch.from_numpy(np.asarray(indices, dtype=np.int64)),
                "box": torch.tensor(box, dtype=torch.long)}
        if self.spec.backend == "nvjpeg":
            plan["jpeg"] = jpeg_packets(path, indices)
        return {"plan": plan, "label": entry.label, "index": index, "params": params}


class ClipDecoder:
    """Batches of plans -> uint8 [B, T, S, S, 3] on `device`: decode the planned frames there, then the training
    geometry (vifi.data.spatial.apply_train_box). On a CPU device (tests) the same steps run with CPU decoders."""

    def __init__(self, backend: str, device: torch.device, size: int):
        if backend not in GPU_BACKENDS:
            raise ValueError(f"not a device decode backend: {backend}")
        self.backend, self.device, self.size = backend, device, size

    def __call__(self, plans: list[dict]) -> torch.Tensor:
        return torch.stack([apply_train_box(self._frames(p), self.size, tuple(p["box"].tolist())) for p in plans])

    def _frames(self, plan: dict) -> torch.Tensor:
        """uint8 [T, H, W, 3] of the planned indices, on the device."""
        if self.backend == "nvjpeg":
            from torchvision.io import ImageReadMode, decode_jpeg

            images = decode_jpeg(plan["jpeg"], mode=ImageReadMode.RGB, device=self.device)  # list of [3, H, W]
            return torch.stack(images).permute(0, 2, 3, 1)
        indices = plan["indices"].numpy()
        unique, inverse = np.unique(indices, return_inverse=True)
        if self.device.type != "cuda":  # the CPU behind the same interface: PyAV's decoder
            from vifi.data.decoding import read_frames

            frames, _ = read_frames(plan["path"], lambda n: unique, "pyav")
            return torch.from_numpy(frames)[torch.from_numpy(inverse)].to(self.device)
        decoded = self._nvdec_decoder(plan["path"]).get_batch_frames_by_index(unique.tolist())
        frames = torch.stack([torch.from_dlpack(f) for f in decoded])  # RGB, [K, H, W, 3] on the GPU
        return frames[torch.from_numpy(inverse).to(self.device)]

    def _nvdec_decoder(self, path: str):
        import PyNvVideoCodec as nvc

        return nvc.SimpleDecoder(path, gpu_id=self.device.index or 0, use_device_memory=True,
                                 output_color_type=nvc.OutputColorType.RGB)
