"""`vifi index`: which videos to embed (new, changed) and which to skip (unchanged), then embed them with commits.

A video is unchanged when its resolved path, size and mtime_ns equal the index's; then it is not decoded. Embeddings
go through the evaluation's decode pipeline (EvalClips: the checkpoint's frames, centre crop, views; or, with
--window, the same sampling inside each window: vifi/search/windows.py) and are committed every `commit_every`
videos as one append to the store (vifi/search/index_folder.py), so a killed run keeps its work and the next run
continues from there. Each row also stores its class-bank offset (docs/search.md), computed here once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vifi.search.index_folder import IndexEntry, IndexFolder


# The loader's workers start from a clean process, not a fork of this one: this process has opened the LanceDB table,
# whose runtime threads make a fork risky (LanceDB warns of a possible deadlock); a worker only decodes videos.
LOADER_START = "forkserver"


@dataclass(frozen=True)
class Video:
    path: str  # absolute, symlinks resolved
    size: int
    mtime_ns: int


@dataclass
class Plan:
    new: list[Video] = field(default_factory=list)
    changed: list[Video] = field(default_factory=list)
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)  # indexed, no longer on disk (kept unless pruned)
    pruned: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[Video]:
        return self.new + self.changed


def stat_videos(paths: list[Path]) -> list[Video]:
    out = []
    for path in paths:
        resolved = path.resolve()
        st = os.stat(resolved)
        out.append(Video(str(resolved), st.st_size, st.st_mtime_ns))
    return out


def plan(keys: dict[str, tuple[int, int]], videos: list[Video], prune: bool) -> Plan:
    """`keys`: path -> (size, mtime_ns) of the indexed videos. One stat per indexed path (is it still there)."""
    result = Plan()
    for video in videos:
        known = keys.get(video.path)
        if known is None:
            result.new.append(video)
        elif tuple(known) == (video.size, video.mtime_ns):
            result.unchanged += 1
        else:
            result.changed.append(video)
    for path in keys:
        if not os.path.exists(path):
            (result.pruned if prune else result.missing).append(path)
    return result


@torch.no_grad()
def video_embeddings(model, frames: torch.Tensor, runtime) -> torch.Tensor:
    """uint8 [b, V, T, H, W, 3] -> float32 [b, D], L2-normalised: each view's embedding normalised, averaged over
    the views, normalised again (one view: the video head's normalised output)."""
    from vifi.data.augment import normalise

    b, v = frames.shape[:2]
    videos = normalise(frames.flatten(0, 1).to(runtime.device))
    with runtime.autocast():
        per_view = F.normalize(model.head.encode_video(videos).float(), dim=-1)
    return F.normalize(per_view.view(b, v, -1).mean(dim=1), dim=-1).cpu()


def bank_text(model, class_names, template, runtime):
    """(text embeddings [B, D] of the checkpoint's class names in its template, logit scale s); (None, s) when the
    checkpoint records no class names (then no correction: offsets 0)."""
    from vifi.search.query import text_embeddings

    scale = float(model.clip.logit_scale.exp())
    if not class_names:
        return None, scale
    return text_embeddings(model, list(class_names), template, runtime), scale


def bank_offsets(vectors: torch.Tensor, bank: torch.Tensor | None, scale: float) -> torch.Tensor:
    """[N]: logsumexp over the bank texts of s·cos(video, text); zeros without a bank."""
    if bank is None:
        return torch.zeros(len(vectors))
    return torch.logsumexp(scale * (bank @ vectors.t()), dim=0)


def embed_and_commit(folder: IndexFolder, info: dict, todo: list[Video], changed: set[str], model, runtime, *,
                     frames: int, input_size: int, views: tuple[int, int], window, stride, batch: int, workers: int,
                     backend: str, commit_every: int, bank, scale: float, show_progress: bool = True):
    """Embed `todo`, committing every `commit_every` embedded videos (a changed video's old rows are replaced in
    the same commit). (embedded count, [(path, reason)] of the videos that could not be decoded)."""
    from vifi.data.dataset import ClipSpec
    from vifi.engine.loaders import make_loader
    from vifi.progress import progress_bar

    model.to(runtime.device).eval()
    spec = ClipSpec(frames, input_size, backend)
    if window is None:
        from vifi.data.annotations import Entry
        from vifi.data.dataset import EvalClips, collate

        dataset = EvalClips([Entry(v.path, 0) for v in todo], "/", spec, *views)
        items = make_loader(dataset, batch_size=batch, workers=workers, device=runtime.device, collate_fn=collate,
                            start_method=LOADER_START)
    else:
        from vifi.search.windows import WindowClips, collate_windows

        dataset = WindowClips([v.path for v in todo], spec, window, stride, *views)
        items = make_loader(dataset, batch_size=1, workers=workers, device=runtime.device,
                            collate_fn=collate_windows, start_method=LOADER_START)
    pending: list[IndexEntry] = []
    pending_rows: list[torch.Tensor] = []
    failed: list[tuple[str, str]] = []
    videos_pending = embedded = short = 0

    def flush():
        vectors = torch.cat(pending_rows)
        offsets = bank_offsets(vectors, bank, scale)
        folder.commit(info, pending, vectors.numpy().astype(np.float32), offsets.numpy(), scale,
                      replace={e.path for e in pending} & changed)

    with progress_bar("index", len(todo), enabled=show_progress) as bar:
        for item in items:
            if window is None:
                for i, why in enumerate(item["failed"]):
                    video = todo[int(item["index"][i])]
                    if why:
                        failed.append((video.path, why))
                    else:
                        pending.append(IndexEntry(video.path, video.size, video.mtime_ns))
                ok = [i for i, why in enumerate(item["failed"]) if not why]
                if ok:
                    pending_rows.append(video_embeddings(model, item["frames"][ok], runtime))
                count = len(item["failed"])
                videos_pending += len(ok)
            else:
                (one,) = item
                video = todo[one["index"]]
                count = 1
                if one["failed"]:
                    failed.append((video.path, one["failed"]))
                else:
                    pending += [IndexEntry(video.path, video.size, video.mtime_ns, s, e)
                                for s, e in zip(one["starts"], one["ends"])]
                    short += len(one["starts"]) == 1 and one["ends"][0] < window
                    frames_all = one["frames"]
                    for b in range(0, len(frames_all), batch):
                        pending_rows.append(video_embeddings(model, frames_all[b:b + batch], runtime))
                    videos_pending += 1
            bar.advance(count)
            if videos_pending >= commit_every:
                flush()
                embedded += videos_pending
                pending, pending_rows, videos_pending = [], [], 0
    if pending:
        flush()
        embedded += videos_pending
    return embedded, failed, short


def build_index(paths: list[Path], out: Path, *, checkpoint: str | None, clip: str | None, frames: int | None,
                views: tuple[int, int] | None, batch: int, workers: int, backend: str, device: str | None,
                commit_every: int, overwrite: bool, prune: bool, window: float | None = None,
                stride: float | None = None) -> dict:
    """Create or update the index at `out` with `paths`; the counts of this run (also kept in index.json).

    Order: the folder is locked; the existing index, the checkpoint and the flags are checked against each other
    and the model is loaded; then embedding starts. --overwrite builds a new table beside the old one and swaps
    only at the end (docs/search.md): until then the previous index is whole.
    """
    from vifi.errors import VifiError
    from vifi.run_folder import RunFolder
    from vifi.search.index_folder import lancedb

    lancedb()  # missing: one line before any work
    folder = IndexFolder(out)
    foreign = folder.foreign_files()
    if foreign:
        raise VifiError(f"--out {out} holds files that are not part of a vifi index (first: {foreign[0]}); "
                        "choose another --out")
    created = not out.exists()
    lock = RunFolder(out)
    lock.lock()
    try:
        return _build_locked(folder, paths, checkpoint=checkpoint, clip=clip, frames=frames, views=views,
                             batch=batch, workers=workers, backend=backend, device=device,
                             commit_every=commit_every, overwrite=overwrite, prune=prune, window=window,
                             stride=stride)
    except VifiError:
        if created and not folder.exists:  # refused before any work: leave no folder behind
            lock.unlock()
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        lock.unlock()


def _raw_info(folder: IndexFolder) -> dict:
    import json

    try:
        return json.loads(folder.info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _build_locked(folder: IndexFolder, paths: list[Path], *, checkpoint, clip, frames, views, batch, workers,
                  backend, device, commit_every, overwrite, prune, window, stride) -> dict:
    import time

    from vifi import __version__, console
    from vifi.engine.runtime import setup_runtime
    from vifi.errors import VifiError
    from vifi.fileio import sha256_file
    from vifi.model.checkpoint import build_from_checkpoint, resolve_checkpoint
    from vifi.model.facts import inference_inputs
    from vifi.search.index_folder import checkpoint_stat, verified_checkpoint

    old = folder.read_info() if folder.exists and not overwrite else None
    if old is not None:
        weights = verified_checkpoint(folder.path, old, checkpoint)
        sha = old["checkpoint_sha256"]
        for flag, asked, built in (("--frames", frames, old["frames"]), ("--views", _views_text(views), old["views"]),
                                   ("--window", window, old.get("window")), ("--stride", stride, old.get("stride"))):
            if asked is not None and asked != built:
                raise VifiError(f"--out {folder.path} was indexed {_flag_text(flag, built, 'without')}, not "
                                f"{_flag_text(flag, asked)}; embeddings of both kinds would not compare: pass "
                                "--overwrite to rebuild it, or choose another --out")
        frames, views, clip = old["frames"], _parse_views_text(old["views"]), clip or old.get("clip")
        window, stride = old.get("window"), old.get("stride")
        table = old["table"]
    else:
        previous = _raw_info(folder) if folder.exists else {}
        if checkpoint is None and previous.get("checkpoint"):  # --overwrite: the model now at the recorded place
            checkpoint, clip = previous["checkpoint"], clip or previous.get("clip")
        if checkpoint is None:
            raise VifiError(f"--out {folder.path} is not an index yet: give --checkpoint to build one")
        weights = resolve_checkpoint(checkpoint).resolve()
        sha = sha256_file(weights)
        views = views or (1, 1)
        stride = stride or window  # default: windows side by side
        table = IndexFolder.new_table_name()
    if window is not None and views[0] != 1:
        raise VifiError(f"--views {_views_text(views)} with --window: a window is one clip; give --views 1x1 or "
                        "1x3")
    model, facts = build_from_checkpoint(weights, clip=clip)
    inputs = inference_inputs(facts, frames=frames)
    videos = stat_videos(paths)
    runtime = setup_runtime(device, "auto")
    model.to(runtime.device).eval()
    bank, scale = bank_text(model, facts.class_names, inputs.template, runtime)

    info = {"checkpoint": str(weights), "checkpoint_sha256": sha, **checkpoint_stat(weights), "clip": clip,
            "frames": inputs.frames, "input_size": inputs.input_size, "template": inputs.template,
            "views": _views_text(views), "window": window, "stride": stride, "dim": int(facts.arch["embed_dim"]),
            "logit_scale": scale, "bank": list(facts.class_names or []), "table": table,
            "vifi_version": __version__, "created": (old or {}).get("created", time.strftime("%Y-%m-%d %H:%M:%S"))}
    if old is not None:
        folder.remove_other_tables(keep=table)  # a killed --overwrite's unfinished table
        folder.write_info({**old, **info})
    elif not folder.exists:
        folder.write_info({**info, "videos": 0, "last_run": None})
    # else --overwrite: index.json keeps naming the old table until the new one is complete
    keys = folder.keys() if old is not None else {}
    work = plan(keys, videos, prune)
    if work.pruned:
        folder.delete(work.pruned)
    embedded, failed, short = embed_and_commit(folder, info, work.todo, {v.path for v in work.changed}, model, runtime,
                                        frames=inputs.frames, input_size=inputs.input_size, views=views,
                                        window=window, stride=stride, batch=batch, workers=workers, backend=backend,
                                        commit_every=commit_every, bank=bank, scale=scale)
    failed_paths = {path for path, _ in failed}
    stale = failed_paths & {v.path for v in work.changed}
    if stale:  # changed, now undecodable: its old embedding describes content that is gone
        folder.delete(stale)
    if overwrite and old is None and folder.exists and embedded == 0 and paths:
        folder.remove_other_tables(keep=_raw_info(folder).get("table", ""))  # drop the new, keep the old whole
        raise VifiError(f"none of the {len(paths)} videos could be decoded (first: {failed[0][1] if failed else '?'})"
                        f"; --overwrite left the index {folder.path} as it was")
    # A rerun that changed nothing leaves the store as it is (Lance rewrites the ANN index at every optimise); a
    # store some killed run left unoptimised (its version is not the one recorded) is optimised now.
    ann = None
    if embedded or work.pruned or stale or folder.version() != (old or {}).get("optimized_version", -1):
        ann = folder.optimize()
    info["optimized_version"] = folder.version()
    total = len(folder.keys())
    folder.write_failed(failed)
    counts = {"embedded": embedded, "new": len(work.new), "changed": len(work.changed),
              "unchanged": work.unchanged, "failed": len(failed), "missing": len(work.missing),
              "pruned": len(work.pruned), "videos": total}
    folder.write_info({**info, "videos": total, "rows": folder.count(),
                       "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "last_run": counts})
    folder.remove_other_tables(keep=table, legacy=True)  # after an --overwrite: the old table, now unnamed
    for path, why in failed:
        console.warn(f"skipped: {why}")
    if failed:
        console.warn(f"{len(failed)} undecodable video(s) are not in the index (listed in {folder.failed}); "
                     "the next run tries them again")
    if work.missing:
        console.note(f"notice: {len(work.missing)} indexed video(s) are no longer on disk (first: "
                     f"{work.missing[0]}); they stay in the index, `vifi search` leaves them out, --prune removes them")
    if window is not None:
        console.note(f"notice: {counts['videos']} videos in {folder.count()} windows of {window:g} s (stride "
                     f"{stride:g} s)" + (f"; {short} video(s) of this run shorter than the window are one window "
                                         "each" if short else ""))
    if ann:
        console.note(f"notice: {ann}")
    return counts


def _flag_text(flag: str, value, none: str = "") -> str:
    """'with --frames 4', 'with --window 2' (seconds without '.0'), 'without --window'."""
    if value is None:
        return f"{none} {flag}".strip()
    shown = f"{value:g}" if isinstance(value, float) else value
    return f"with {flag} {shown}" if none else f"{flag} {shown}"


def _views_text(views: tuple[int, int] | None) -> str | None:
    return None if views is None else f"{views[0]}x{views[1]}"


def _parse_views_text(text: str) -> tuple[int, int]:
    clips, crops = text.split("x")
    return int(clips), int(crops)
