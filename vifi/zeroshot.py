"""Classify one's own videos against free-form labels: `vifi zeroshot`.

Probabilities are the softmax of the logit-scaled cosine over the given labels; with several views, the per-view
softmaxes are averaged (SPEC §2.9 sums them; dividing by the view count keeps them probabilities, same ranking).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from vifi.data.decoding import VIDEO_SUFFIXES
from vifi.errors import InputError, VideoError
from vifi.model.facts import InferenceInputs


def parse_labels(labels: str | None, labels_file: str | None) -> list[str]:
    if bool(labels) == bool(labels_file):
        raise InputError("give the candidate labels with exactly one of --labels \"a,b,c\" or --labels-file FILE")
    if labels_file:
        path = Path(labels_file)
        if not path.is_file():
            raise InputError(f"--labels-file {path}: file not found")
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    else:
        names = labels.split(",")
    return unique_names(names, "the label list")


def unique_names(names: list[str], what: str) -> list[str]:
    """Names stripped, blanks dropped; an empty list or a name given twice is refused in one line (`what` says where)."""
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise InputError(f"{what} is empty; give at least one name (e.g. \"a,b\")")
    from collections import Counter

    dupes = sorted(n for n, k in Counter(names).items() if k > 1)  # one pass: label files can hold 100k names
    if dupes:
        raise InputError(f"{what}: {dupes[0]!r} is given more than once; each name must be unique")
    return names


def collect_videos(items: list[str]) -> list[Path]:
    """Files as given, folders expanded to their video files (sorted), `-` read from stdin (one path a line)."""
    paths: list[Path] = []
    for item in items:
        if item == "-":
            paths += [Path(line.strip()) for line in sys.stdin if line.strip()]
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not found:
                raise VideoError(f"folder {path} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            paths += found
        else:
            paths.append(path)
    if not paths:
        raise VideoError("no videos given (paths, a folder, or - to read paths from stdin)")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise VideoError(f"video not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return _each_once(paths)


def _each_once(paths: list[Path]) -> list[Path]:
    """A video given twice (as a file and inside a folder, or twice on stdin) is scored once, at its first place."""
    seen, unique = set(), []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    if len(unique) < len(paths):
        from vifi import console

        console.note(f"notice: {len(paths) - len(unique)} video(s) given more than once are scored once")
    return unique


def classify(videos: list[Path], names: list[str], model, inputs: InferenceInputs, *, views: tuple[int, int],
             device: str | None, batch: int = 4, num_workers: int = 0, backend: str = "decord",
             skip_undecodable: bool = False) -> pd.DataFrame:
    """One row per (video, label): video, label, prob; rows of a video sorted by probability, highest first.

    `inputs`: frames, input size and class text, as `vifi.model.facts.inference_inputs` chose them. A video that
    cannot be decoded stops the command, naming it, unless `skip_undecodable`: then each failure is named on stderr
    and the other videos are scored.
    """
    from vifi.data.annotations import Entry
    from vifi.data.dataset import ClipSpec, EvalClips
    from vifi.engine.evaluate import class_text_features, video_scores
    from vifi.engine.runtime import setup_runtime

    runtime = setup_runtime(device, "auto")
    model.to(runtime.device)
    entries = [Entry(str(p.resolve()), 0) for p in videos]
    dataset = EvalClips(entries, "/", ClipSpec(inputs.frames, inputs.input_size, backend), views[0], views[1])
    text = class_text_features(model, names, inputs.template, runtime)
    index, _, scores, failed = video_scores(model, dataset, text, runtime, batch=batch, num_workers=num_workers,
                                            show_progress=False)
    _report_undecodable([message for _, message in failed], len(videos), skip_undecodable)
    probs = scores / (views[0] * views[1])
    rows = []
    for i, row in zip(index.tolist(), probs):
        path = videos[i]
        for j in torch.argsort(row, descending=True).tolist():
            rows.append({"video": str(path), "label": names[j], "prob": round(float(row[j]), 6)})
    return pd.DataFrame(rows, columns=["video", "label", "prob"])


@torch.no_grad()
def timeline(videos: list[Path], names: list[str], model, inputs: InferenceInputs, *, window: float, stride: float,
             views: tuple[int, int], device: str | None, batch: int = 4, num_workers: int = 0,
             backend: str = "decord", skip_undecodable: bool = False) -> pd.DataFrame:
    """One row per window of each video: video, start, end, label, prob (the window's most probable label).

    Windows on the video's real timestamps, frames sampled inside each window as a clip is
    (vifi/search/windows.py); probabilities as `classify` computes them, per window.
    """
    from vifi.data.dataset import ClipSpec
    from vifi.engine.evaluate import class_text_features, view_scores_fn
    from vifi.engine.loaders import make_loader
    from vifi.engine.runtime import setup_runtime
    from vifi.search.windows import WindowClips, collate_windows

    runtime = setup_runtime(device, "auto")
    model.to(runtime.device).eval()
    text = class_text_features(model, names, inputs.template, runtime)
    dataset = WindowClips([str(p.resolve()) for p in videos], ClipSpec(inputs.frames, inputs.input_size, backend),
                          window, stride, *views)
    forward = view_scores_fn(model, runtime)
    rows, failed, short = [], [], 0
    for (item,) in make_loader(dataset, batch_size=1, workers=num_workers, device=runtime.device,
                               collate_fn=collate_windows):
        if item["failed"]:
            failed.append(item["failed"])
            continue
        frames = item["frames"]
        short += len(item["starts"]) == 1 and item["ends"][0] < window
        probs = torch.cat([forward(frames[b:b + batch].to(runtime.device), text).cpu()
                           for b in range(0, len(frames), batch)]) / (views[0] * views[1])
        for start, end, row in zip(item["starts"], item["ends"], probs):
            best = int(torch.argmax(row))
            rows.append({"video": str(videos[item["index"]]), "start": start, "end": end, "label": names[best],
                         "prob": round(float(row[best]), 6)})
    _report_undecodable(failed, len(videos), skip_undecodable)
    if short:
        from vifi import console

        console.note(f"notice: {short} video(s) shorter than --window {window:g} s are one window each")
    return pd.DataFrame(rows, columns=["video", "start", "end", "label", "prob"])


def print_timeline(table: pd.DataFrame) -> None:
    from rich.table import Table

    from vifi import console
    from vifi.search.windows import clock

    shown = unique_suffixes(list(dict.fromkeys(table["video"])))
    out = Table(title="most probable label per window")
    for column in ("video", "start", "end", "label", "prob"):
        out.add_column(column, justify="right" if column in ("start", "end", "prob") else "left")
    last = None
    for row in table.itertuples(index=False):
        out.add_row(shown[row.video] if row.video != last else "", clock(row.start), clock(row.end), row.label,
                    f"{row.prob:.4f}")
        last = row.video
    console.print_rich(out, to_stdout=True)


def unique_suffixes(paths: list[str]) -> dict[str, str]:
    """Each path shown by its shortest trailing part that no other path ends with: the demo's six
    `*/test_000.mp4` read `blue_square_spinning/test_000.mp4`, … (a lone name stays bare)."""
    parts = {p: Path(p).parts for p in paths}
    out = {}
    for path, mine in parts.items():
        for n in range(1, len(mine) + 1):
            tail = mine[-n:]
            if not any(other != path and theirs[-n:] == tail for other, theirs in parts.items()):
                break
        out[path] = str(Path(*tail))
    return out


def print_top_k(table: pd.DataFrame, k: int) -> None:
    from rich.table import Table

    from vifi import console

    shown = unique_suffixes(list(dict.fromkeys(table["video"])))
    out = Table(title=f"top-{k} labels per video")
    out.add_column("video")
    out.add_column("rank", justify="right")
    out.add_column("label")
    out.add_column("prob", justify="right")
    for video, group in table.groupby("video", sort=False):
        for rank, row in enumerate(group.head(k).itertuples(index=False), start=1):
            out.add_row(shown[video] if rank == 1 else "", str(rank), row.label, f"{row.prob:.4f}")
    console.print_rich(out, to_stdout=True)


def render_output(table: pd.DataFrame, as_json: bool) -> str:
    """video,label,prob CSV rows (video,start,end,label,prob for a timeline), or JSON: one object per video with
    its labels, most probable first (or its windows in time order)."""
    import json

    if as_json:
        keep = [c for c in table.columns if c != "video"]
        what = "windows" if "start" in table else "labels"
        grouped = [{"video": v, what: g[keep].to_dict(orient="records")}
                   for v, g in table.groupby("video", sort=False)]
        return json.dumps(grouped, indent=2) + "\n"
    return table.to_csv(index=False)


def write_output(table: pd.DataFrame, out: Path) -> None:
    from vifi.fileio import write_text_atomic

    write_text_atomic(out, render_output(table, out.suffix.lower() == ".json"))


def _report_undecodable(failed: list[str], n_videos: int, skip_undecodable: bool) -> None:
    """Videos that did not decode: an error naming the first, unless skipped (then one warning each); all failed is
    an error either way."""
    if failed and not skip_undecodable:
        raise VideoError(failed[0] + (f" (and {len(failed) - 1} more videos failed)" if len(failed) > 1 else "")
                         + "; pass --skip-undecodable to score the others")
    from vifi import console

    for message in failed:
        console.warn(f"skipped: {message}")
    if failed and len(failed) == n_videos:
        raise VideoError(f"none of the {n_videos} videos could be decoded")
