"""Moments: a video cut into time windows (`vifi index --window`, `vifi zeroshot --window`), on its real timestamps.

Each frame's time is its presentation timestamp read from the container (packets demuxed, nothing decoded), minus
the first frame's: time 0 is the first frame shown, whatever the stream's start offset, and a variable-frame-rate
video's windows hold the frames really shown in them. Windows start at 0, stride, 2·stride, … while they fit; one
more window ends at the video's end when the last ones leave a tail uncovered; a video shorter than one window is
one window [0, duration]. Inside a window the frames are sampled as a clip is today (segment centres, views).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vifi.errors import VifiError


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    frames: np.ndarray  # indices (in presentation order) of the frames shown in [start, end)


def check_window(window: float | None, stride: float | None) -> tuple[float | None, float | None]:
    """(window, stride) checked: stride defaults to the window (no overlap) and needs one; a stride longer than the
    window would skip footage."""
    if window is None:
        if stride is not None:
            raise VifiError(f"--stride {stride} needs --window SECONDS (the length of each moment)")
        return None, None
    if not window > 0:
        raise VifiError(f"--window {window}: must be a positive number of seconds")
    stride = window if stride is None else stride
    if not stride > 0:
        raise VifiError(f"--stride {stride}: must be a positive number of seconds")
    if stride > window:
        raise VifiError(f"--stride {stride} is longer than --window {window}: footage between windows would never "
                        "be seen; give a stride of at most the window")
    return float(window), float(stride)


def frame_times(path: str | Path) -> np.ndarray:
    """Seconds of each frame (presentation order) from its first: read from the packets, nothing decoded."""
    import av

    from vifi.data.decoding import DecodeError, clean_reason

    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise DecodeError(f"video {path} has no video stream")
            pts = [p.pts for p in container.demux(stream) if p.size and p.pts is not None]
            base = float(stream.time_base)
    except av.error.FFmpegError as exc:
        raise DecodeError(f"cannot decode video {path}: {clean_reason(exc)}") from None
    if not pts:
        raise DecodeError(f"video {path} has no frames")
    pts = np.sort(np.asarray(pts, dtype=np.int64))
    return (pts - pts[0]) * base


def cut(times: np.ndarray, window: float, stride: float) -> list[Window]:
    """The windows of a video whose frames are shown at `times` (sorted seconds from 0)."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    duration = float(times[-1]) + step  # the last frame is shown for one frame interval
    if duration <= window:
        return [Window(0.0, round(duration, 6), np.arange(len(times)))]
    starts = list(np.arange(0.0, duration - window + 1e-9, stride))
    if starts[-1] + window < duration - 1e-6:  # a tail the strides leave out: one more window ending at the end
        starts.append(duration - window)
    out = []
    for s in starts:
        inside = np.flatnonzero((times >= s - 1e-9) & (times < s + window - 1e-9))
        if len(inside) == 0:  # a gap in a VFR stream: the frame shown at that time is the last one before it
            inside = np.array([max(0, int(np.searchsorted(times, s, side="right")) - 1)])
        out.append(Window(round(float(s), 6), round(float(s) + window, 6), inside))
    return out


class WindowClips(Dataset):
    """Per video: uint8 [W, V, T, S, S, 3] (each window's views, as EvalClips orders them), starts, ends, or the
    reason it cannot be decoded."""

    def __init__(self, paths: list[str], spec, window: float, stride: float, clips: int = 1, crops: int = 1):
        self.paths, self.spec, self.window, self.stride = paths, spec, window, stride
        self.clips, self.crops = clips, crops

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from vifi.data.decoding import DecodeError, read_frames
        from vifi.data.sampling import sample_test_indices
        from vifi.data.spatial import test_views

        t, s, path = self.spec.frames, self.spec.size, self.paths[index]
        try:
            times = frame_times(path)
            windows = cut(times, self.window, self.stride)
            picks = np.concatenate([w.frames[np.stack([sample_test_indices(len(w.frames), t, self.clips, c)
                                                       for c in range(self.clips)])].reshape(-1) for w in windows])

            def indices(n):  # the decoder's count may differ from the packets': scale to its frames
                return picks if n == len(times) else np.minimum((picks * n) // len(times), n - 1)

            frames, _ = read_frames(path, indices, self.spec.backend)
        except DecodeError as exc:
            return {"frames": torch.zeros(0, self.clips * self.crops, t, s, s, 3, dtype=torch.uint8),
                    "starts": [], "ends": [], "index": index, "failed": str(exc)}
        frames = torch.from_numpy(frames).view(len(windows), self.clips, t, *frames.shape[1:])
        out = []
        for per_window in frames:
            per_clip = [test_views(clip, s, self.crops) for clip in per_window]
            out.append(torch.stack([per_clip[c][k] for k in range(self.crops) for c in range(self.clips)]))
        return {"frames": torch.stack(out), "starts": [w.start for w in windows], "ends": [w.end for w in windows],
                "index": index, "failed": ""}


def clock(seconds: float) -> str:
    """1:02:03.5 / 2:03.5: a position as a player shows it."""
    minutes, sec = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours}:{minutes:02d}:" if hours else f"{minutes}:") + f"{sec:04.1f}"


def collate_windows(items: list[dict]) -> list[dict]:
    return items  # videos hold different numbers of windows: the consumer batches windows itself
