"""`vifi prepare DATASET --root PATH --out DIR`: official layouts -> checked lists, optional re-encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def prepare(
    dataset: str = typer.Argument(..., help="ucf101 | hmdb51 | kinetics400 | kinetics600 | ssv2 | generic"),
    root: Path = typer.Option(..., "--root", help="the dataset's video folder"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for the lists, labels.csv, manifest, quarantine"),
    lists: Optional[Path] = typer.Option(None, "--lists", help="folder of the official split files (default: --root)"),
    check: bool = typer.Option(True, "--check/--no-check", help="probe every video (decode first/last/random frames)"),
    workers: int = typer.Option(4, "--workers", help="parallel processes"),
    min_frames: int = typer.Option(8, "--min-frames", help="videos with fewer frames are quarantined"),
    reencode: Optional[Path] = typer.Option(None, "--reencode", help="re-encode the videos into this folder first"),
    short_side: int = typer.Option(256, "--short-side", help="re-encode: short side in pixels"),
    fmt: str = typer.Option("mjpeg", "--format", help="re-encode: mjpeg | h264-intra | h264 (docs/data.md)"),
    backend: str = typer.Option("decord", "--backend", help="decoder used by the check: decord | pyav"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an --out folder written by vifi prepare"),
) -> None:
    from vifi.cli.eval import check_backend
    from vifi.errors import VifiError
    from vifi.prepare.run import prepare as run

    if workers < 1 or min_frames < 1 or short_side < 16:
        raise VifiError("--workers and --min-frames must be ≥ 1 and --short-side ≥ 16")
    check_backend(backend)
    record = run(dataset, root, out, lists=lists, check=check, workers=workers, min_frames=min_frames,
                 reencode=reencode, short_side=short_side, fmt=fmt, backend=backend, overwrite=overwrite)
    if record.get("reencode", {}).get("failed"):
        raise SystemExit(1)  # lists are written, but some videos did not make it: not a clean result


def register(app: typer.Typer) -> None:
    app.command("prepare", help="Official dataset layout -> annotation lists + label CSV, checked manifest and "
                                "quarantine; optional re-encoding.")(prepare)
