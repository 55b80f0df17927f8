"""`vifi index`: which videos to embed (new, changed) and which to skip (unchanged), then embed them with commits.

A video is unchanged when its resolved path, size and mtime_ns equal its manifest entry; then it is not decoded.
Embeddings go through the evaluation's decode pipeline (EvalClips: the checkpoint's frames, centre crop, views) and
are committed every `commit_every` videos, so a killed run keeps its work and the next run continues from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vifi.search.index_folder import IndexEntry, IndexFolder


@dataclass(frozen=True)
class Video:
    path: str  # absolute, symlinks resolved
    size: int
    mtime_ns: int


@dataclass
class Plan:
    keep: list[IndexEntry]  # the manifest, minus pruned entries
    new: list[Video] = field(default_factory=list)
    changed: list[Video] = field(default_factory=list)
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)  # indexed, no longer on disk (kept unless pruned)
    pruned: int = 0

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


def plan(entries: list[IndexEntry], videos: list[Video], prune: bool) -> Plan:
    indexed = {e.path: e for e in entries}
    result = Plan(keep=[])
    for video in videos:
        known = indexed.get(video.path)
        if known is None:
            result.new.append(video)
        elif (known.size, known.mtime_ns) == (video.size, video.mtime_ns):
            result.unchanged += 1
        else:
            result.changed.append(video)
    for entry in entries:
        if not os.path.exists(entry.path):
            if prune:
                result.pruned += 1
                continue
            result.missing.append(entry.path)
        result.keep.append(entry)
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


def embed_and_commit(folder: IndexFolder, entries: list[IndexEntry], todo: list[Video], model, runtime, *,
                     frames: int, input_size: int, views: tuple[int, int], batch: int, workers: int, backend: str,
                     commit_every: int, show_progress: bool = True):
    """Embed `todo`, committing every `commit_every` embedded videos. (entries after the last commit, embedded
    count, [(path, reason)] of the videos that could not be decoded)."""
    from vifi.data.annotations import Entry
    from vifi.data.dataset import ClipSpec, EvalClips, collate
    from vifi.engine.loaders import make_loader
    from vifi.progress import progress_bar

    model.to(runtime.device).eval()
    dataset = EvalClips([Entry(v.path, 0) for v in todo], "/", ClipSpec(frames, input_size, backend), *views)
    loader = make_loader(dataset, batch_size=batch, workers=workers, device=runtime.device, collate_fn=collate)
    pending: list[Video] = []
    pending_rows: list[torch.Tensor] = []
    failed: list[tuple[str, str]] = []
    embedded = 0
    with progress_bar("index", len(todo), enabled=show_progress) as bar:
        for item in loader:
            ok = [i for i, why in enumerate(item["failed"]) if not why]
            failed += [(todo[int(item["index"][i])].path, why) for i, why in enumerate(item["failed"]) if why]
            if ok:
                pending_rows.append(video_embeddings(model, item["frames"][ok], runtime))
                pending += [todo[int(item["index"][i])] for i in ok]
            bar.advance(len(item["failed"]))
            if len(pending) >= commit_every:
                entries = _commit(folder, entries, pending, pending_rows)
                embedded += len(pending)
                pending, pending_rows = [], []
    if pending:
        entries = _commit(folder, entries, pending, pending_rows)
        embedded += len(pending)
    return entries, embedded, failed


def _commit(folder: IndexFolder, entries, pending: list[Video], rows: list[torch.Tensor]):
    embeddings = torch.cat(rows).numpy().astype(np.float32)
    return folder.commit(entries, [(v.path, v.size, v.mtime_ns) for v in pending], embeddings)


def build_index(paths: list[Path], out: Path, *, checkpoint: str | None, clip: str | None, frames: int | None,
                views: tuple[int, int] | None, batch: int, workers: int, backend: str, device: str | None,
                commit_every: int, overwrite: bool, prune: bool) -> dict:
    """Create or update the index at `out` with `paths`; the counts of this run (also kept in index.json).

    Order: the folder is locked; the existing index, the checkpoint and the flags are checked against each other
    and the model is loaded; only then does --overwrite clear, and embedding starts.
    """
    from vifi.errors import VifiError
    from vifi.run_folder import RunFolder

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
                             commit_every=commit_every, overwrite=overwrite, prune=prune)
    except VifiError:
        if created and not folder.exists:  # refused before any work: leave no folder behind
            lock.unlock()
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        lock.unlock()


def _build_locked(folder: IndexFolder, paths: list[Path], *, checkpoint, clip, frames, views, batch, workers,
                  backend, device, commit_every, overwrite, prune) -> dict:
    import time

    from vifi import __version__, console
    from vifi.engine.runtime import setup_runtime
    from vifi.errors import VifiError
    from vifi.fileio import sha256_file
    from vifi.model.checkpoint import build_from_checkpoint, resolve_checkpoint
    from vifi.model.facts import inference_inputs

    old = folder.read_info() if folder.exists and not overwrite else None
    if old is not None:
        weights = folder.verified_checkpoint(old, checkpoint)
        sha = old["checkpoint_sha256"]
        for flag, asked, built in (("--frames", frames, old["frames"]), ("--views", _views_text(views), old["views"])):
            if asked is not None and asked != built:
                raise VifiError(f"--out {folder.path} was indexed with {flag} {built}, not {asked}; embeddings of "
                                "both kinds would not compare: pass --overwrite to rebuild it, or choose another --out")
        frames, views, clip = old["frames"], _parse_views_text(old["views"]), clip or old.get("clip")
    else:
        if checkpoint is None and folder.exists:  # --overwrite: rebuilt with the model now at the recorded place
            checkpoint, clip = folder.read_info()["checkpoint"], clip or folder.read_info().get("clip")
        if checkpoint is None:
            raise VifiError(f"--out {folder.path} is not an index yet: give --checkpoint to build one")
        weights = resolve_checkpoint(checkpoint).resolve()
        sha = sha256_file(weights)
        views = views or (1, 1)
    model, facts = build_from_checkpoint(weights, clip=clip)
    inputs = inference_inputs(facts, frames=frames)
    videos = stat_videos(paths)
    runtime = setup_runtime(device, "auto")

    if overwrite and folder.exists:  # every input checked: now the old index may go
        folder.clear()
    info = {"checkpoint": str(weights), "checkpoint_sha256": sha, "clip": clip, "frames": inputs.frames,
            "input_size": inputs.input_size, "template": inputs.template, "views": _views_text(views),
            "dim": int(facts.arch["embed_dim"]), "vifi_version": __version__,
            "created": (old or {}).get("created", time.strftime("%Y-%m-%d %H:%M:%S"))}
    entries = folder.read_manifest()
    folder.collect_garbage(entries)
    work = plan(entries, videos, prune)
    folder.write_info({**info, "videos": len(entries), "last_run": (old or {}).get("last_run")})
    entries = folder.commit(work.keep) if work.pruned else work.keep
    entries, embedded, failed = embed_and_commit(folder, entries, work.todo, model, runtime, frames=inputs.frames,
                                                 input_size=inputs.input_size, views=views, batch=batch,
                                                 workers=workers, backend=backend, commit_every=commit_every)
    failed_paths = {path for path, _ in failed}
    if any(e.path in failed_paths for e in entries):  # changed, now undecodable: its old embedding is stale
        entries = folder.commit([e for e in entries if e.path not in failed_paths])
    entries = folder.compact(entries)
    folder.write_failed(failed)
    counts = {"embedded": embedded, "new": len(work.new), "changed": len(work.changed),
              "unchanged": work.unchanged, "failed": len(failed), "missing": len(work.missing),
              "pruned": work.pruned, "videos": len(entries)}
    folder.write_info({**info, "videos": len(entries), "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "last_run": counts})
    for path, why in failed:
        console.warn(f"skipped: {why}")
    if failed:
        console.warn(f"{len(failed)} undecodable video(s) are not in the index (listed in {folder.failed}); "
                     "the next run tries them again")
    if work.missing:
        console.note(f"notice: {len(work.missing)} indexed video(s) are no longer on disk (first: "
                     f"{work.missing[0]}); they stay in the index, `vifi search` leaves them out, --prune removes them")
    return counts


def _views_text(views: tuple[int, int] | None) -> str | None:
    return None if views is None else f"{views[0]}x{views[1]}"


def _parse_views_text(text: str) -> tuple[int, int]:
    clips, crops = text.split("x")
    return int(clips), int(crops)
