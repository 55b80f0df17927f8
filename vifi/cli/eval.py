"""`vifi eval --checkpoint CKPT --data LIST --labels CSV --root DIR --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def parse_views(views: str) -> tuple[int, int]:
    from vifi.errors import VifiError

    try:
        clips, crops = (int(x) for x in views.lower().split("x"))
    except ValueError:
        raise VifiError(f"--views {views!r} must look like CLIPSxCROPS, e.g. 1x1 or 4x3") from None
    if clips < 1 or crops not in (1, 3):
        raise VifiError(f"--views {views}: clips must be ≥ 1 and crops 1 or 3")
    return clips, crops


def eval_command(
    checkpoint: str = typer.Option(..., "--checkpoint", help="vifi checkpoint (.safetensors) or run folder"),
    data: str = typer.Option(..., "--data", help="annotation list: relative/path label"),
    labels: str = typer.Option(..., "--labels", help="label CSV (id,name)"),
    root: str = typer.Option(..., "--root", help="video root"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder for results and predictions"),
    frames: Optional[int] = typer.Option(None, "--frames", help="frames per clip (default: the checkpoint's)"),
    views: str = typer.Option("1x1", "--views", help="CLIPSxCROPS: 1x1, 1x3, 4x3, ..."),
    batch: int = typer.Option(8, "--batch", help="videos per batch"),
    workers: int = typer.Option(2, "--workers", help="data-loading processes"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu"),
    vanilla: bool = typer.Option(False, "--vanilla", help="bare class names, no prompt template"),
    reference_multiclip: bool = typer.Option(False, "--reference-multiclip",
                                             help="draw k>1 clips with the training formula (reference behaviour)"),
) -> None:
    from vifi.runs import run_eval

    clips, crops = parse_views(views)
    run_eval(checkpoint, data, labels, root, out, frames=frames, clips=clips, crops=crops, batch=batch,
             num_workers=workers, device=device, template=None if vanilla else "",
             reference_multiclip=reference_multiclip)


def register(app: typer.Typer) -> None:
    app.command("eval", help="Evaluate a checkpoint on an annotation list; writes results.json and predictions.csv.")(
        eval_command)
