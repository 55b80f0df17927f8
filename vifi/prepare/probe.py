"""Probe videos in parallel: metadata (frames, fps, size, codec) and a real decode of first, last and random frames.

A video is quarantined when it cannot be opened or decoded, has no frames, or has fewer than `min_frames`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST_COLUMNS = ["path", "ok", "reason", "frames", "fps", "width", "height", "codec", "size_bytes"]


def probe_video(args: tuple[str, str, int, str]) -> dict:
    rel, root, min_frames, backend = args
    path = Path(root) / rel
    row = {"path": rel, "ok": False, "reason": "", "frames": 0, "fps": 0.0, "width": 0, "height": 0, "codec": "",
           "size_bytes": path.stat().st_size if path.is_file() else 0}
    if not path.is_file():
        row["reason"] = "missing"
        return row
    if row["size_bytes"] == 0:
        row["reason"] = "empty file"
        return row
    from vifi.data.decoding import DecodeError, clean_reason, read_frames

    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                row["reason"] = "no video stream"  # e.g. an audio-only file with a video suffix
                return row
            stream = container.streams.video[0]
            row.update(fps=float(stream.average_rate or 0), width=stream.codec_context.width,
                       height=stream.codec_context.height, codec=stream.codec_context.name)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding about this file
        row["reason"] = f"cannot open: {clean_reason(exc)}"
        return row

    seen = {}

    def pick(n):
        seen["n"] = n
        rng = np.random.default_rng(abs(hash(rel)) % (2**32))
        return np.unique(np.concatenate([[0, n - 1], rng.integers(0, n, size=3)])) if n else np.array([], int)

    try:
        frames, _ = read_frames(path, pick, backend)
    except DecodeError as exc:
        reason = str(exc).split(f"{path}: ", 1)[-1]  # the message names the file; the manifest row already does
        row["reason"] = "no frames" if "no frames" in str(exc) else f"undecodable: {reason}"
        row["frames"] = seen.get("n", 0)
        return row
    row["frames"] = seen["n"]
    if frames.size == 0 or frames.shape[0] == 0:
        row["reason"] = "no frames"
    elif row["frames"] < min_frames:
        row["reason"] = f"too short ({row['frames']} < {min_frames} frames)"
    else:
        row["ok"] = True
    return row


def probe_all(paths: list[str], root: Path, *, workers: int, min_frames: int, backend: str = "decord",
              show_progress: bool = True) -> pd.DataFrame:
    from vifi.progress import map_with_progress

    jobs = [(p, str(root), min_frames, backend) for p in paths]
    rows = map_with_progress(probe_video, jobs, workers=workers, description="probe", show_progress=show_progress)
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
