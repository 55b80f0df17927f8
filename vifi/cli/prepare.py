"""`vifi prepare DATASET --root PATH --out DIR`: official layouts -> checked lists, optional re-encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vifi.cli.options import Backend, ReencodeFormat, backend_option


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
    fmt: ReencodeFormat = typer.Option("mjpeg", "--format", help="re-encode format (docs/data.md)"),
    backend: Backend = backend_option(help="decoder used by the check"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an --out folder written by vifi prepare"),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction",
                                                 help="generic: also write a stratified train.txt / val.txt with "
                                                      "this share of each class in val (e.g. 0.2)"),
    seed: int = typer.Option(0, "--seed", help="seed of the --val-fraction draw"),
) -> None:
    from vifi.inference_flags import check_backend
    from vifi.errors import VifiError
    from vifi.prepare.run import prepare as run

    if workers < 1 or min_frames < 1 or short_side < 16:
        raise VifiError("--workers and --min-frames must be ≥ 1 and --short-side ≥ 16")
    check_backend(backend)
    if val_fraction is not None and dataset != "generic":
        raise VifiError(f"--val-fraction is for generic (own) data; {dataset} comes with official splits")
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise VifiError(f"--val-fraction {val_fraction}: give a share between 0 and 1, e.g. 0.2")
    record = run(dataset, root, out, lists=lists, check=check, workers=workers, min_frames=min_frames,
                 reencode=reencode, short_side=short_side, fmt=fmt, backend=backend, overwrite=overwrite,
                 val_fraction=val_fraction, seed=seed)
    if record.get("reencode", {}).get("failed"):
        raise SystemExit(1)  # lists are written, but some videos did not make it: not a clean result


def register(app: typer.Typer) -> None:
    app.command("prepare", help="Official dataset layout -> annotation lists + label CSV, checked manifest and "
                                "quarantine; optional re-encoding.\n\n"
                                "Example: vifi prepare generic --root my_videos --out lists/mine "
                                "--val-fraction 0.2")(prepare)
