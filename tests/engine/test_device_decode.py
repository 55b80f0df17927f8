"""GPU decode backends (vifi/data/device_decode.py) on the CPU: the same frame indices, crop boxes and colour
parameters as the CPU training path, the same interface with CPU decoders behind it, and a one-line refusal."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import write_video
from vifi.data.annotations import Entry
from vifi.data.dataset import ClipSpec, TrainClips, collate
from vifi.data.device_decode import ClipDecoder, PlannedClips, check_device_backend
from vifi.errors import VifiError


def _videos(tmp_path):
    """Two 40-frame clips of moving noise-free gradients, 96x72: one H.264 (long GOP), one intra-only MJPEG as
    `vifi prepare --reencode` writes it."""
    import av

    h, w, n = 72, 96, 40
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([(x * 2 + 5 * i) % 256, (y * 3 + 7 * i) % 256, (x + y + 3 * i) % 256], -1)
                       for i in range(n)]).astype(np.uint8)
    write_video(tmp_path / "a.mp4", frames, fps=25)
    path = tmp_path / "b.avi"
    with av.open(str(path), "w") as container:  # as vifi/prepare/reencode.py: mjpeg, yuvj420p, q:v 3
        stream = container.add_stream("mjpeg", rate=25, options={"q:v": "3"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuvj420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return [Entry("a.mp4", 0), Entry("b.avi", 1)]


@pytest.mark.parametrize("backend", ["nvdec", "nvjpeg"])
def test_same_indices_crop_and_colour_params_as_the_cpu_path(tmp_path, backend):
    entries = _videos(tmp_path)
    spec, cpu_spec = ClipSpec(8, 64, backend), ClipSpec(8, 64, "pyav")
    planned = PlannedClips(entries, tmp_path, spec, seed=7, jitter_p=0.8, gray_p=0.2)
    cpu = TrainClips(entries, tmp_path, cpu_spec, seed=7, jitter_p=0.8, gray_p=0.2)
    from vifi.data.sampling import sample_train_indices
    from vifi.data.spatial import draw_train_box

    for epoch in (0, 3):
        for index in ((0, 1) if backend == "nvdec" else (1,)):
            item, ref = planned[(epoch, index)], cpu[(epoch, index)]
            for k in ref["params"]:
                assert torch.equal(item["params"][k], ref["params"][k]), k
            rng = np.random.default_rng([7, epoch, index])  # the CPU path's own draws, in its order
            assert np.array_equal(item["plan"]["indices"].numpy(), sample_train_indices(40, 8, rng))
            assert tuple(item["plan"]["box"].tolist()) == draw_train_box(72, 96, 64, rng)
            assert item["label"] == ref["label"] and item["index"] == ref["index"]


def test_nvdec_interface_with_the_cpu_decoder_gives_the_cpu_paths_clips_exactly(tmp_path):
    entries = _videos(tmp_path)[:1]
    planned = PlannedClips(entries, tmp_path, ClipSpec(8, 64, "nvdec"), seed=3)
    cpu = TrainClips(entries, tmp_path, ClipSpec(8, 64, "pyav"), seed=3)
    batch = collate([planned[(e, 0)] for e in range(3)])
    clips = ClipDecoder("nvdec", torch.device("cpu"), 64)(batch["plans"])
    ref = collate([cpu[(e, 0)] for e in range(3)])["frames"]
    assert clips.dtype == torch.uint8 and clips.shape == ref.shape == (3, 8, 64, 64, 3)
    assert torch.equal(clips, ref)


def test_nvjpeg_interface_on_cpu_decodes_the_planned_jpeg_frames(tmp_path):
    """torchvision's JPEG decoder and FFmpeg's MJPEG decoder + RGB conversion are different code: close, not equal."""
    entries = _videos(tmp_path)[1:]
    planned = PlannedClips(entries, tmp_path, ClipSpec(8, 64, "nvjpeg"), seed=3)
    cpu = TrainClips(entries, tmp_path, ClipSpec(8, 64, "pyav"), seed=3)
    batch = collate([planned[(e, 0)] for e in range(2)])
    assert len(batch["plans"][0]["jpeg"]) == 8  # the sampled frames' packets, nothing else
    clips = ClipDecoder("nvjpeg", torch.device("cpu"), 64)(batch["plans"])
    ref = collate([cpu[(e, 0)] for e in range(2)])["frames"]
    diff = (clips.float() - ref.float()).abs()
    assert clips.shape == ref.shape and diff.mean() < 2.0 and diff.max() <= 40, (diff.mean(), diff.max())


def test_nvjpeg_refuses_a_video_that_is_not_mjpeg(tmp_path):
    entries = _videos(tmp_path)[:1]
    with pytest.raises(VifiError, match=r"nvjpeg reads MJPEG videos .*a\.mp4 is h264"):
        PlannedClips(entries, tmp_path, ClipSpec(8, 64, "nvjpeg"), seed=0)[(0, 0)]


def test_gpu_backends_refused_in_one_line_without_a_gpu(demo_data, tmp_path):
    for backend in ("nvjpeg", "nvdec"):
        with pytest.raises(VifiError, match=rf"data.backend {backend} decodes on the GPU"):
            check_device_backend(backend, torch.device("cpu"))
    check_device_backend("decord", torch.device("cpu"))  # CPU backends: nothing to refuse
    from tests.conftest import finetune_demo_args

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "vifi", *finetune_demo_args(demo_data, str(out),
                                                                             data__backend="nvjpeg"),
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: data.backend nvjpeg decodes on the GPU, and this run has no "
                                                "CUDA device; use data.backend decord (or pyav, torchcodec)"]
    assert not out.exists()


def test_training_step_reads_plans_through_the_device_feed(demo_data):
    """The StepEngine's feed decodes a batch of plans with the decoder it was given (the loop needs no other change)."""
    from vifi.engine.step import DeviceFeed

    calls = []

    def decode(plans):
        calls.append(len(plans))
        return torch.zeros(len(plans), 2, 4, 4, 3, dtype=torch.uint8)

    feed = DeviceFeed(torch.device("cpu"), decode)
    item = {"plans": [{}, {}, {}], "label": torch.tensor([0, 1, 2]), "params": {"p": torch.ones(3)}}
    frames, labels, params = feed(item)
    assert calls == [3] and frames.shape == (3, 2, 4, 4, 3) and torch.equal(labels, item["label"])
