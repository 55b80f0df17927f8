"""`vifi prepare`: official layout -> lists + label CSV, optional re-encode, then a checked manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vifi import console
from vifi.data.annotations import Entry, write_annotation_list, write_label_csv
from vifi.fileio import sha256_file, write_json_atomic, write_text_atomic
from vifi.outfolder import check_out_folder, staged_folder
from vifi.prepare.layouts import read_layout

RECORD = "prepare.json"  # written last; marks a folder that `--overwrite` may replace


def prepare(dataset: str, root: Path, out: Path, *, lists: Path | None = None, check: bool = True, workers: int = 4,
            min_frames: int = 8, reencode: Path | None = None, short_side: int = 256, fmt: str = "mjpeg",
            backend: str = "decord", overwrite: bool = False, show_progress: bool = True,
            val_fraction: float | None = None, seed: int = 0) -> dict:
    """Everything is checked first; the lists are built in a temporary sibling of `out`, moved into place complete
    (so `--overwrite` leaves nothing of the previous run: no stale manifest or quarantine)."""
    check_out_folder(out, "--out", overwrite, RECORD)
    prepared = read_layout(dataset, root, lists)
    if val_fraction is not None and not 0 < val_fraction < 1:
        from vifi.errors import VifiError

        raise VifiError(f"--val-fraction {val_fraction}: give a share between 0 and 1, e.g. 0.2")
    if reencode is not None:
        from vifi.prepare.reencode import check_reencode_target

        check_reencode_target(root, reencode, fmt)
    with staged_folder(out, "--out", overwrite, RECORD) as staging:
        record, summary = _prepare_into(staging, out, dataset, root, prepared, check=check, workers=workers,
                                        min_frames=min_frames, reencode=reencode, short_side=short_side, fmt=fmt,
                                        backend=backend, show_progress=show_progress,
                                        holdout=None if val_fraction is None else (val_fraction, seed))
    _print_summary(dataset, summary, out)
    return record


def _prepare_into(out: Path, final: Path, dataset: str, root: Path, prepared, *, check, workers, min_frames, reencode,
                  short_side, fmt, backend, show_progress, holdout=None) -> tuple[dict, dict]:
    video_root, failed = root, {}
    record: dict = {"dataset": dataset, "root": str(root), "classes": len(prepared.names),
                    "inputs": {str(p): sha256_file(p) for p in prepared.inputs}}
    if reencode is not None:
        prepared, failed, video_root, record["reencode"] = _reencode(prepared, root, reencode, short_side, fmt,
                                                                     workers, out, final, show_progress)
    bad_set, bad = set(), None
    if check:
        unique = sorted({e.path for entries in prepared.splits.values() for e in entries})
        from vifi.prepare.probe import probe_all

        manifest = probe_all(unique, video_root, workers=workers, min_frames=min_frames, backend=backend,
                             show_progress=show_progress)
        write_text_atomic(out / "manifest.csv", manifest.to_csv(index=False))
        bad = manifest[~manifest["ok"]]
        write_text_atomic(out / "quarantine.txt", "".join(f"{p}\n" for p in bad["path"]))
        bad_set = set(bad["path"])
        record["quarantined"] = {row.path: row.reason for row in bad.itertuples()}
    if holdout is not None:  # own data: all.txt plus a stratified train.txt / val.txt
        prepared.splits["train"], prepared.splits["val"] = _holdout(prepared.splits["all"], bad_set, *holdout)
        failed = {**failed, "train": failed.get("all", [])}  # re-encode failures were all in all.txt
    write_label_csv(out / "labels.csv", prepared.names)
    for split, entries in prepared.splits.items():
        write_annotation_list(out / f"{split}.txt", entries)
    if prepared.missing:
        write_text_atomic(out / "missing.txt", "".join(f"{split} {p}\n" for split, paths in prepared.missing.items()
                                                       for p in paths))
    record["video_root"] = str(video_root)
    summary = {split: {"listed": len(entries) + len(prepared.missing.get(split, [])) + len(failed.get(split, [])),
                       "on_disk": len(entries), "missing": len(prepared.missing.get(split, []))}
               for split, entries in prepared.splits.items()}
    if reencode is not None:
        for split in summary:
            summary[split]["reencode_failed"] = len(failed.get(split, []))
    if check:
        for split, entries in prepared.splits.items():
            summary[split]["quarantined"] = sum(e.path in bad_set for e in entries)
    record["splits"] = summary
    write_json_atomic(out / RECORD, record)
    return record, summary


def _holdout(entries: list[Entry], quarantined: set[str], val_fraction: float, seed: int):
    """(train, val) of `--val-fraction`, drawn after the check: val holds only videos that decode (evaluation refuses
    an undecodable one), the shares are those of the usable videos, and quarantined videos stay in train.txt, where
    training skips them by quarantine.txt as it does for official lists."""
    from vifi.prepare.holdout import stratified_split

    usable = [e for e in entries if e.path not in quarantined]
    _, val = stratified_split(usable, val_fraction, seed)
    in_val = set(val)
    return [e for e in entries if e not in in_val], val


def _reencode(prepared, root: Path, dst: Path, short_side: int, fmt: str, workers: int, out: Path, final: Path,
              show_progress):
    """Re-encode every listed video; those that fail are left out of the lists and counted as failed (not missing)."""
    from vifi.prepare.reencode import reencode_all

    unique = sorted({e.path for entries in prepared.splits.values() for e in entries})
    rows = reencode_all(unique, root, dst, short_side=short_side, fmt=fmt, workers=workers,
                        show_progress=show_progress)
    table = pd.DataFrame(rows)
    write_text_atomic(out / "reencode.csv", table.to_csv(index=False))
    failed = table[table["status"].str.startswith("failed")]
    ok = {r.path: r.output for r in table.itertuples() if not r.status.startswith("failed")}
    failed_by_split = {}
    for split, entries in prepared.splits.items():
        prepared.splits[split] = [Entry(ok[e.path], e.label) for e in entries if e.path in ok]
        lost = [e.path for e in entries if e.path not in ok]
        if lost:
            failed_by_split[split] = lost
    before, after = int(table["bytes_in"].sum()), int(table["bytes_out"].sum())
    console.note(f"re-encoded {len(ok)} of {len(unique)} videos to {dst} ({fmt}, short side {short_side}): "
          f"{before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB on disk")
    if len(failed):
        first = failed.iloc[0]
        console.warn(f"{len(failed)} videos failed to re-encode and are left out of the lists "
              f"(first: {first['path']}: {first['status']}); see {final / 'reencode.csv'}")
    return prepared, failed_by_split, dst, {"format": fmt, "short_side": short_side, "videos": len(ok), "failed": len(failed),
                           "bytes_before": before, "bytes_after": after}


def _print_summary(dataset: str, summary: dict, out: Path) -> None:
    from vifi.results import print_table

    table = pd.DataFrame([{"split": s, **v} for s, v in summary.items()])
    print_table(table, f"{dataset}: prepared lists in {out}")
