"""`vifi prepare`: official layout -> lists + label CSV, optional re-encode, then a checked manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vifi.data.annotations import Entry, write_annotation_list, write_label_csv
from vifi.errors import VifiError
from vifi.fileio import sha256_file, write_json_atomic, write_text_atomic
from vifi.prepare.layouts import read_layout

OUTPUTS = ("labels.csv", "manifest.csv", "quarantine.txt", "missing.txt", "prepare.json", "reencode.csv")


def prepare(dataset: str, root: Path, out: Path, *, lists: Path | None = None, check: bool = True, workers: int = 4,
            min_frames: int = 8, reencode: Path | None = None, short_side: int = 256, fmt: str = "mjpeg",
            backend: str = "decord", overwrite: bool = False, show_progress: bool = True) -> dict:
    prepared = read_layout(dataset, root, lists)
    _refuse_clobber(out, list(prepared.splits), overwrite)
    out.mkdir(parents=True, exist_ok=True)
    video_root = root
    record: dict = {"dataset": dataset, "root": str(root), "classes": len(prepared.names),
                    "inputs": {str(p): sha256_file(p) for p in prepared.inputs}}
    if reencode is not None:
        prepared, video_root, record["reencode"] = _reencode(prepared, root, reencode, short_side, fmt, workers, out,
                                                             show_progress)
    write_label_csv(out / "labels.csv", prepared.names)
    for split, entries in prepared.splits.items():
        write_annotation_list(out / f"{split}.txt", entries)
    if prepared.missing:
        write_text_atomic(out / "missing.txt", "".join(f"{split} {p}\n" for split, paths in prepared.missing.items()
                                                       for p in paths))
    record["video_root"] = str(video_root)
    summary = {split: {"listed": len(entries) + len(prepared.missing.get(split, [])), "on_disk": len(entries),
                       "missing": len(prepared.missing.get(split, []))} for split, entries in prepared.splits.items()}
    if check:
        unique = sorted({e.path for entries in prepared.splits.values() for e in entries})
        from vifi.prepare.probe import probe_all

        manifest = probe_all(unique, video_root, workers=workers, min_frames=min_frames, backend=backend,
                             show_progress=show_progress)
        write_text_atomic(out / "manifest.csv", manifest.to_csv(index=False))
        bad = manifest[~manifest["ok"]]
        write_text_atomic(out / "quarantine.txt", "".join(f"{p}\n" for p in bad["path"]))
        bad_set = set(bad["path"])
        for split, entries in prepared.splits.items():
            summary[split]["quarantined"] = sum(e.path in bad_set for e in entries)
        record["quarantined"] = {row.path: row.reason for row in bad.itertuples()}
    record["splits"] = summary
    write_json_atomic(out / "prepare.json", record)
    _print_summary(dataset, summary, out)
    return record


def _refuse_clobber(out: Path, splits: list[str], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise VifiError(f"--out {out} is a file; give a folder")
    existing = [n for n in (*OUTPUTS, *(f"{s}.txt" for s in splits)) if (out / n).exists()]
    if existing and not overwrite:
        raise VifiError(f"{out} already holds {existing[0]}; pass --overwrite to replace the prepared lists")


def _reencode(prepared, root: Path, dst: Path, short_side: int, fmt: str, workers: int, out: Path, show_progress):
    from vifi.prepare.reencode import reencode_all

    unique = sorted({e.path for entries in prepared.splits.values() for e in entries})
    rows = reencode_all(unique, root, dst, short_side=short_side, fmt=fmt, workers=workers,
                        show_progress=show_progress)
    table = pd.DataFrame(rows)
    write_text_atomic(out / "reencode.csv", table.to_csv(index=False))
    failed = table[table["status"].str.startswith("failed")]
    ok = {r.path: r.output for r in table.itertuples() if not r.status.startswith("failed")}
    for split, entries in prepared.splits.items():
        prepared.splits[split] = [Entry(ok[e.path], e.label) for e in entries if e.path in ok]
        lost = [e.path for e in entries if e.path not in ok]
        if lost:
            prepared.missing.setdefault(split, []).extend(lost)
    before, after = int(table["bytes_in"].sum()), int(table["bytes_out"].sum())
    print(f"re-encoded {len(ok)} of {len(unique)} videos to {dst} ({fmt}, short side {short_side}): "
          f"{before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB on disk", flush=True)
    if len(failed):
        first = failed.iloc[0]
        print(f"warning: {len(failed)} videos failed to re-encode and are left out of the lists "
              f"(first: {first['path']}: {first['status']}); see {out / 'reencode.csv'}", flush=True)
    return prepared, dst, {"format": fmt, "short_side": short_side, "videos": len(ok), "failed": len(failed),
                           "bytes_before": before, "bytes_after": after}


def _print_summary(dataset: str, summary: dict, out: Path) -> None:
    from vifi.results import print_table

    table = pd.DataFrame([{"split": s, **v} for s, v in summary.items()])
    print_table(table, f"{dataset}: prepared lists in {out}")
