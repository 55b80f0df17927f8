"""Re-encode videos for training: short side to 256 (configurable), no audio, every frame kept (so the temporal
sampling of SPEC §2.4 picks the same frame indices), in a storage format chosen by measurement (docs/data.md).

Through PyAV (FFmpeg's maintained Python binding, already a dependency): no ffmpeg binary needed. Resumable (a
finished output exists only after its atomic rename), parallel, never writes next to or over the source.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

# name -> (container suffix, codec, codec options). "intra": every frame a keyframe, so decoding 32 sampled frames
# costs 32 frame decodes instead of decoding through each GOP.
FORMATS = {
    "h264": (".mp4", "libx264", {"preset": "veryfast", "crf": "18"}),
    "h264-intra": (".mp4", "libx264", {"preset": "veryfast", "crf": "18", "g": "1", "keyint_min": "1",
                                       "sc_threshold": "0"}),
    "mjpeg": (".avi", "mjpeg", {"q:v": "3"}),
}


def output_path(rel: str, fmt: str) -> str:
    return str(Path(rel).with_suffix(FORMATS[fmt][0]))


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side `short_side` (never upscaled), aspect kept, both even (yuv420p needs it)."""
    scale = min(1.0, short_side / min(width, height))
    w, h = round(width * scale), round(height * scale)
    return w - (w % 2), h - (h % 2)


def reencode_one(args: tuple[str, str, str, int, str]) -> dict:
    rel, src_root, dst_root, short_side, fmt = args
    import av

    src, dst = Path(src_root) / rel, Path(dst_root) / output_path(rel, fmt)
    row = {"path": rel, "output": output_path(rel, fmt), "status": "", "bytes_in": src.stat().st_size if src.is_file() else 0,
           "bytes_out": 0}
    if dst.is_file():
        row.update(status="done before", bytes_out=dst.stat().st_size)
        return row
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    _, codec, options = FORMATS[fmt]
    try:
        with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
            stream_in = inp.streams.video[0]
            w, h = scaled_size(stream_in.codec_context.width, stream_in.codec_context.height, short_side)
            rate = stream_in.average_rate or 25
            stream = out.add_stream(codec, rate=rate, options=dict(options))
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            tick = Fraction(1) / Fraction(rate)
            for i, frame in enumerate(inp.decode(stream_in)):
                frame = frame.reformat(width=w, height=h, format=stream.pix_fmt)
                # Frame i at i/rate: every frame kept, none duplicated or dropped (PyAV rescales pts from the
                # frame's time base, which would otherwise still be the source stream's).
                frame.pts, frame.time_base = i, tick
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        os.replace(tmp, dst)
        row.update(status="encoded", bytes_out=dst.stat().st_size)
    except Exception as exc:  # noqa: BLE001 - per-file outcome; disk full included
        tmp.unlink(missing_ok=True)
        row["status"] = f"failed: {str(exc).splitlines()[0][:160]}"
    return row


def reencode_all(paths: list[str], src_root: Path, dst_root: Path, *, short_side: int, fmt: str, workers: int,
                 show_progress: bool = True) -> list[dict]:
    from vifi.errors import VifiError
    from vifi.progress import map_with_progress

    if fmt not in FORMATS:
        raise VifiError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    src_root, dst_root = src_root.resolve(), dst_root.resolve()
    if dst_root == src_root or src_root in dst_root.parents or dst_root in src_root.parents:
        raise VifiError(f"--reencode {dst_root} must be outside the video root {src_root} (sources are never "
                        "touched); choose a separate folder")
    jobs = [(p, str(src_root), str(dst_root), short_side, fmt) for p in paths]
    return map_with_progress(reencode_one, jobs, workers=workers, description="re-encode", show_progress=show_progress)
