"""The embedded demo: a small synthetic action dataset written as real H.264 mp4 files.

ViFi-CLIP averages frame features, so it sees a video as a *set* of frames and cannot tell frame order: "sliding
left" and "sliding right" would be one class to it. The classes here therefore differ as sets of frames — colour,
shape, and motion that changes what single frames look like (spinning shapes change orientation, pulsing ones
change size, sliding ones change position). Each class has its own colour as well, an easy first cue for a tiny CLIP
trained from random init for a minute on 2 CPU cores. Shapes are large (radius 17-23 px of 96×72): with small ones
(9-13 px, about one 16-px patch after cropping) the tiny model stayed near 50 % top-1 in our runs.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from vifi.data.annotations import Entry, write_annotation_list, write_label_csv
from vifi.fileio import atomic_path

CLASSES = [
    ("red", "circle", "sliding across"),
    ("blue", "square", "spinning"),
    ("green", "triangle", "pulsing"),
    ("yellow", "square", "sliding across"),
    ("magenta", "triangle", "spinning"),
    ("cyan", "circle", "pulsing"),
]
COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 190, 60), "yellow": (230, 210, 40),
           "magenta": (210, 50, 200), "cyan": (40, 200, 210)}
WIDTH, HEIGHT, FRAMES, FPS = 96, 72, 24, 8


def class_names() -> list[str]:
    return [f"a {colour} {shape} {motion}" for colour, shape, motion in CLASSES]


def _shape_mask(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # coordinates in the shape's rotated frame
    if shape == "square":
        return (np.abs(u) <= radius * 0.8) & (np.abs(v) <= radius * 0.8)
    # triangle: three half-planes around the centre
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        a = 2 * np.pi * k / 3
        inside &= (np.cos(a) * u + np.sin(a) * v) <= radius * 0.5
    return inside


def render_video(label: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [FRAMES, HEIGHT, WIDTH, 3] for one video of class `label`."""
    return render_video_and_masks(label, rng)[0]


def render_video_and_masks(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [FRAMES, HEIGHT, WIDTH, 3], the shape's masks bool [FRAMES, HEIGHT, WIDTH]) of one video.

    The masks are the very ones the frames were drawn with, so tests of attention maps know where the shape is;
    they draw nothing from `rng`, so videos are the same whether or not anyone asks for them.
    """
    colour, shape, motion = CLASSES[label]
    rgb = np.array(COLOURS[colour], dtype=np.float32) + rng.normal(0, 12, 3)
    background = rng.uniform(90, 170) + rng.normal(0, 6, 3)
    radius = rng.uniform(17, 23)
    cx, cy = rng.uniform(30, WIDTH - 30), rng.uniform(24, HEIGHT - 24)
    angle0, spin = rng.uniform(0, 2 * np.pi), rng.choice([-1, 1]) * rng.uniform(0.25, 0.45)
    direction = rng.choice([-1, 1])
    frames = np.empty((FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = np.empty((FRAMES, HEIGHT, WIDTH), dtype=bool)
    for t in range(FRAMES):
        x, y, r, angle = cx, cy, radius, angle0
        if motion == "sliding across":
            x = (12 + (WIDTH - 24) * t / (FRAMES - 1)) if direction > 0 else (WIDTH - 12 - (WIDTH - 24) * t / (FRAMES - 1))
        elif motion == "pulsing":
            r = radius * (0.55 + 0.6 * (0.5 + 0.5 * np.sin(2 * np.pi * t / 8 + angle0)))
        elif motion == "spinning":
            angle = angle0 + spin * t
        img = np.broadcast_to(background, (HEIGHT, WIDTH, 3)) + rng.normal(0, 4, (HEIGHT, WIDTH, 3))
        masks[t] = _shape_mask(shape, x, y, r, angle)
        img = np.where(masks[t][..., None], rgb, img)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames, masks


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            # Constant QP, one x264 thread, explicit timestamps: with CRF rate control the same frames gave different
            # bytes (pixels off by up to 15 levels) from run to run on a loaded CPU, so `--deterministic` demo runs
            # differed. QP 18 measured: same error against the rendered frames, 30 % fewer bytes (docs/data.md).
            stream.options = {"qp": "18", "preset": "veryfast", "threads": "1"}
            stream.codec_context.thread_count = 1
            for i, frame in enumerate(frames):
                picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
                picture.pts, picture.time_base = i, Fraction(1, fps)
                container.mux(stream.encode(picture))
            container.mux(stream.encode())


def demo_videos(train_per_class: int, test_per_class: int, seed: int):
    """(split, relative path, label, frames, masks) of every demo video, in the order `generate_demo` writes them
    (one generator drawn from in this order, so a video's pixels depend on the ones before it)."""
    rng = np.random.default_rng(seed)
    for label in range(len(CLASSES)):
        folder = "_".join(CLASSES[label]).replace(" ", "_")
        for split, count in (("train", train_per_class), ("test", test_per_class)):
            for i in range(count):
                frames, masks = render_video_and_masks(label, rng)
                yield split, f"{folder}/{split}_{i:03d}.mp4", label, frames, masks


def generate_demo(out: str | Path, train_per_class: int = 40, test_per_class: int = 10, seed: int = 0) -> dict[str, Path]:
    """Write videos/, train.txt, test.txt and labels.csv under `out` (skips if already complete)."""
    out = Path(out)
    files = {"root": out / "videos", "train_list": out / "train.txt", "val_list": out / "test.txt",
             "labels": out / "labels.csv"}
    if all(p.exists() for p in files.values()):
        return files
    splits: dict[str, list[Entry]] = {"train": [], "test": []}
    for split, rel, label, frames, _ in demo_videos(train_per_class, test_per_class, seed):
        write_mp4(files["root"] / rel, frames)
        splits[split].append(Entry(rel, label))
    write_label_csv(files["labels"], class_names())
    write_annotation_list(files["val_list"], splits["test"])
    write_annotation_list(files["train_list"], splits["train"])  # written last: its presence marks completion
    return files
