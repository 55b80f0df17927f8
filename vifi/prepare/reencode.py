"""Re-encode videos for training: short side to 256 (configurable), no audio, every frame kept (so the temporal
sampling of SPEC §2.4 picks the same frame indices), rotation metadata baked into the pixels, in a storage format
chosen by measurement (docs/data.md).

Through PyAV (FFmpeg's maintained Python binding, already a dependency): no ffmpeg binary needed. Resumable (a
finished output exists only after its atomic rename, and a sidecar records the source it was made from), parallel,
never writes next to or over the source.
"""

from __future__ import annotations

import json
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
    """The source's whole name plus the format's suffix (`a/clip.mp4` -> `a/clip.mp4.avi`): one output per source,
    so `clip.mp4` and `clip.mkv` in one folder never share (and race for) an output."""
    return rel + FORMATS[fmt][0]


def _sidecar(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.source.json")


def _source_stamp(src: Path, short_side: int, fmt: str) -> dict:
    st = src.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "short_side": short_side, "format": fmt}


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side `short_side` (never upscaled), aspect kept, both even (yuv420p needs it)."""
    scale = min(1.0, short_side / min(width, height))
    w, h = round(width * scale), round(height * scale)
    return w - (w % 2), h - (h % 2)


def reencode_one(args: tuple[str, str, str, int, str]) -> dict:
    rel, src_root, dst_root, short_side, fmt = args
    import av

    from vifi.data.decoding import clean_reason

    src, dst = Path(src_root) / rel, Path(dst_root) / output_path(rel, fmt)
    row = {"path": rel, "output": output_path(rel, fmt), "status": "", "bytes_in": src.stat().st_size if src.is_file() else 0,
           "bytes_out": 0}
    if not src.is_file():
        row["status"] = "failed: source not found"
        return row
    stamp = _source_stamp(src, short_side, fmt)
    if dst.is_file() and _read_stamp(dst) == stamp:
        row.update(status="done before", bytes_out=dst.stat().st_size)
        return row
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial{dst.suffix}")
    try:
        with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
            if not inp.streams.video:
                raise IndexError("no video stream")
            _transcode(inp, out, short_side, fmt)
        os.replace(tmp, dst)
        from vifi.fileio import write_text_atomic

        write_text_atomic(_sidecar(dst), json.dumps(stamp) + "\n")  # after the output: a crash between redoes it
        row.update(status="encoded", bytes_out=dst.stat().st_size)
    except Exception as exc:  # noqa: BLE001 - per-file outcome; disk full included
        tmp.unlink(missing_ok=True)
        row["status"] = f"failed: {clean_reason(exc)}"
    return row


def _read_stamp(dst: Path) -> dict | None:
    try:
        return json.loads(_sidecar(dst).read_text())
    except (OSError, ValueError):
        return None  # an output without its record (older version, crash before the record): redone


def _transcode(inp, out, short_side: int, fmt: str) -> None:
    import av

    from vifi.data.decoding import to_displayed_rgb

    _, codec, options = FORMATS[fmt]
    stream_in = inp.streams.video[0]
    rate = stream_in.average_rate or 25
    tick = Fraction(1) / Fraction(rate)
    stream = None
    for i, frame in enumerate(inp.decode(stream_in)):
        if frame.rotation:  # phone videos: turn the pixels as a player would; the output carries no rotation
            frame = av.VideoFrame.from_ndarray(to_displayed_rgb(frame), format="rgb24")
        if stream is None:  # sized from the first (displayed) frame
            w, h = scaled_size(frame.width, frame.height, short_side)
            stream = out.add_stream(codec, rate=rate, options=dict(options))
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        frame = frame.reformat(width=stream.width, height=stream.height, format=stream.pix_fmt)
        # Frame i at i/rate: every frame kept, none duplicated or dropped (PyAV rescales pts from the frame's time
        # base, which would otherwise still be the source stream's).
        frame.pts, frame.time_base = i, tick
        out.mux(stream.encode(frame))
    if stream is None:
        raise ValueError("no frames")
    out.mux(stream.encode())


def check_reencode_target(src_root: Path, dst_root: Path, fmt: str) -> None:
    """Before any work: a known format, a destination outside the sources, a place where a folder can be made."""
    from vifi.errors import VifiError
    from vifi.outfolder import check_writable_place

    if fmt not in FORMATS:
        raise VifiError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    src_root, dst_root = src_root.resolve(), dst_root.resolve()
    if dst_root == src_root or src_root in dst_root.parents or dst_root in src_root.parents:
        raise VifiError(f"--reencode {dst_root} must be outside the video root {src_root} (sources are never "
                        "touched); choose a separate folder")
    check_writable_place(dst_root, "--reencode")


def reencode_all(paths: list[str], src_root: Path, dst_root: Path, *, short_side: int, fmt: str, workers: int,
                 show_progress: bool = True) -> list[dict]:
    from vifi.progress import map_with_progress

    check_reencode_target(src_root, dst_root, fmt)
    src_root, dst_root = src_root.resolve(), dst_root.resolve()
    jobs = [(p, str(src_root), str(dst_root), short_side, fmt) for p in paths]
    return map_with_progress(reencode_one, jobs, workers=workers, description="re-encode", show_progress=show_progress)
