"""`vifi finetune RECIPE_OR_CONFIG`: train a ViFi-CLIP model and evaluate it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer


def train_from_cli(recipe: str, out: Path, overrides: list[str], *, resume: bool, overwrite: bool,
                   device: Optional[str], deterministic: bool) -> None:
    """What `finetune` and `prompt` share: config from recipe + overrides (or the saved one on --resume), run."""
    from vifi.config import load_config
    from vifi.engine.train import EXIT_PREEMPTED, Preempted
    from vifi.runs import run_finetune, saved_config

    cfg = saved_config(out) if resume else load_config(recipe, overrides)
    try:
        run_finetune(cfg, out, overwrite=overwrite, resume=resume, device=device, deterministic=deterministic)
    except Preempted as exc:
        print(f"preempted: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_PREEMPTED)


def flag_overrides(pairs) -> list[str]:
    return [f"{key}={value}" for key, value in pairs if value is not None]


def finetune(
    recipe: str = typer.Argument(..., help="recipe name (e.g. demo, k400) or a YAML config path"),
    out: Path = typer.Option(Path("runs/run"), "--out", "-o", help="run folder"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override, e.g. --set train.lr=1e-5 (repeatable)"),
    data: Optional[str] = typer.Option(None, "--data", help="training list (data.train_list)"),
    val: Optional[str] = typer.Option(None, "--val", help="evaluation list (data.val_list)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="label CSV (data.labels)"),
    root: Optional[str] = typer.Option(None, "--root", help="video root (data.root)"),
    clip: Optional[str] = typer.Option(None, "--clip", help="CLIP weights: local file or open_clip tag"),
    init_from: Optional[str] = typer.Option(None, "--init-from", "--checkpoint",
                                            help="start from a checkpoint's weights (vifi, run folder or paper .pth)"),
    train_mode: Optional[str] = typer.Option(None, "--train", help="both | image | text"),
    micro_batch: Optional[str] = typer.Option(None, "--micro-batch",
                                              help="per-device micro-batch or auto (the global batch is kept)"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                            help="torch.compile the video head and augmentation (default: on CUDA)"),
    checkpointing: bool = typer.Option(False, "--checkpointing", help="activation checkpointing (less memory)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="video decoder: decord | pyav (data.backend)"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when present)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a finished run in --out"),
    deterministic: bool = typer.Option(False, "--deterministic", help="PyTorch determinism switches"),
    auto_resume: bool = typer.Option(False, "--auto-resume",
                                     help="--resume when --out has a checkpoint, else start (for requeued jobs)"),
) -> None:
    if auto_resume and not overwrite:
        resume = (out / "checkpoints" / "latest.json").is_file()
    overrides = list(set_ or []) + flag_overrides(
        (("data.train_list", data), ("data.val_list", val), ("data.labels", labels), ("data.root", root),
         ("model.clip", clip), ("model.init_from", init_from), ("model.train", train_mode),
         ("train.micro_batch", micro_batch), ("train.compile", compile_),
         ("train.checkpointing", checkpointing or None), ("data.backend", backend)))
    train_from_cli(recipe, out, overrides, resume=resume, overwrite=overwrite, device=device,
                   deterministic=deterministic)


def register(app: typer.Typer) -> None:
    app.command("finetune", help="Fine-tune CLIP on videos (ViFi-CLIP), then evaluate; writes a run folder.")(finetune)
