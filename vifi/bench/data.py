"""`vifi bench data`: decoded + sampled + cropped frames/s of the training data path, per worker and in total.

What a worker does per clip is exactly the training path (TrainClips: decode T training-sampled frames, reference
geometry, colour parameters); colour jitter itself runs batched on the GPU and is not part of the worker cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from vifi.data.annotations import Entry
from vifi.data.dataset import ClipSpec, TrainClips, collate


def loader_throughput(entries: list[Entry], root: str | Path, *, frames: int, size: int, workers: int, clips: int,
                      backend: str = "decord", seed: int = 0) -> dict:
    """Clips/s and frames/s through a DataLoader with `workers` processes (0 = in the main process).

    GPU decode backends (nvjpeg, nvdec): the workers plan, the main process decodes each clip on the GPU (as in
    training), and the time includes that decoding."""
    from vifi.data.device_decode import GPU_BACKENDS, ClipDecoder, PlannedClips, check_device_backend

    if backend in GPU_BACKENDS:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        check_device_backend(backend, device)
        dataset, decoder = PlannedClips(entries, root, ClipSpec(frames, size, backend), seed), ClipDecoder(
            backend, device, size)
    else:
        dataset, decoder = TrainClips(entries, root, ClipSpec(frames, size, backend), seed), None
    keys = [(0, i % len(entries)) for i in range(clips)]
    loader = DataLoader(_KeyDataset(dataset, keys), batch_size=1, num_workers=workers,
                        collate_fn=collate, prefetch_factor=4 if workers else None)
    it = iter(loader) if decoder is None else _decoded(iter(loader), decoder)
    warm = min(max(workers, 1), clips - 1) if clips > 1 else 0
    for _ in range(warm):  # start-up (fork, first decoder init) is not throughput
        next(it)
    start, cpu_start = time.perf_counter(), time.process_time()
    n = 0
    for _ in it:
        n += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    clips_per_s = n / elapsed if elapsed > 0 else float("nan")
    procs = max(workers, 1)
    record = {"workers": workers, "clips": n, "frames": frames, "size": size, "backend": backend,
              "clips_per_s": clips_per_s, "frames_per_s": clips_per_s * frames,
              "frames_per_s_per_worker": clips_per_s * frames / procs}
    if workers == 0:
        # In-process, the CPU time of every decoding thread is this process's: frames per CPU-second is what one
        # dedicated core would give, unlike wall time on a host shared with other jobs (docs/performance.md).
        record["frames_per_cpu_s"] = n * frames / cpu if cpu > 0 else float("nan")
    return record


def _decoded(batches, decoder):
    for batch in batches:
        clips = decoder(batch["plans"])
        if clips.is_cuda:
            torch.cuda.synchronize(clips.device)
        yield clips


class _KeyDataset(torch.utils.data.Dataset):
    def __init__(self, dataset, keys):
        self.dataset, self.keys = dataset, keys

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        return self.dataset[self.keys[i]]


def data_wait_fraction(data_clips_per_s: float, model_clips_per_s: float | None) -> float | None:
    """Share of each step spent waiting for data when loading overlaps compute: max(0, 1 - data / model rate)."""
    if not model_clips_per_s:
        return None
    return max(0.0, 1.0 - data_clips_per_s / model_clips_per_s)


def compare_formats(video: Path, *, short_side: int, frames: int, clips: int, formats: list[str],
                    backend: str = "decord") -> list[dict]:
    """Re-encode one video in each storage format and time the training data path on it, single process."""
    from vifi.prepare.reencode import reencode_one
    from vifi.data.decoding import count_frames

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src_root, rel = video.parent, video.name
        for fmt in ["source", *formats]:
            if fmt == "source":
                root, path = src_root, rel
            else:
                result = reencode_one((rel, str(src_root), str(tmp / fmt), short_side, fmt))
                if result["status"].startswith("failed"):
                    rows.append({"format": fmt, "error": result["status"]})
                    continue
                root, path = tmp / fmt, result["output"]
            speed = loader_throughput([Entry(path, 0)], root, frames=frames, size=224, workers=0, clips=clips,
                                      backend=backend)
            rows.append({"format": fmt, "bytes": (Path(root) / path).stat().st_size,
                         "video_frames": count_frames(Path(root) / path, backend),
                         "frames_per_s": round(speed["frames_per_s"], 1)})
    return rows


def prepared_entries(entries: list[Entry], root: Path, fmt: str = "mjpeg", short_side: int = 256) -> tuple[list[Entry], Path]:
    """The clips as `vifi prepare --reencode` writes them (intra-only MJPEG by default), beside the originals."""
    from vifi.prepare.reencode import reencode_one

    out = Path(root) / f"prepared-{fmt}-{short_side}"
    prepared = []
    for e in entries:
        row = reencode_one((e.path, str(root), str(out), short_side, fmt))
        if row["status"].startswith("failed"):
            from vifi.errors import VifiError

            raise VifiError(f"re-encoding {e.path} for the benchmark failed: {row['status']}")
        prepared.append(Entry(row["output"], e.label))
    return prepared, out


def synthetic_entries(folder: Path, n: int = 4, seconds: float = 10.0, fps: int = 30,
                      size: tuple[int, int] = (340, 256)) -> list[Entry]:
    """Moving-noise clips (hard to compress, like real footage) for a data benchmark without a dataset."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        path = folder / f"clip{i}.mp4"
        if not path.exists():
            base = rng.integers(0, 255, size=(size[1] + 64, size[0] + 64, 3), dtype=np.uint8)
            with av.open(str(path), "w") as out:
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
                for t in range(int(seconds * fps)):
                    frame = base[t % 64: t % 64 + size[1], (2 * t) % 64: (2 * t) % 64 + size[0]]
                    out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
                out.mux(stream.encode())
        entries.append(Entry(path.name, 0))
    return entries
