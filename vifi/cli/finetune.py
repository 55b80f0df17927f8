"""`vifi finetune RECIPE_OR_CONFIG`: train a ViFi-CLIP model and evaluate it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from vifi.cli.options import (BACKEND_HELP, Backend, TrainMode, auto_resume_option, backend_option, cache_dir_option,
                              report_to_option)


def train_from_cli(recipe: str, out: Path, overrides: list[str], *, resume: bool, overwrite: bool,
                   device: Optional[str], deterministic: bool, values: Optional[dict] = None,
                   auto_resume: bool = False) -> None:
    """What `finetune` and `prompt` share: config from recipe + --set strings + typed flag values, then the run.

    On --resume the saved config is continued; new values that would change training are refused (runs.py).
    A finished run given --resume/--auto-resume is left as it is (one line, exit 0).
    """
    from vifi.config import check_cli_values, load_config
    from vifi.engine.train import Preempted, exit_code
    from vifi.runs import already_complete, resume_config, run_finetune, wants_resume

    check_cli_values(device=device)
    resume = wants_resume(out, resume, auto_resume, overwrite)
    if resume and not overwrite and already_complete(out, overrides, values or {}):
        return
    cfg = resume_config(out, overrides, values or {}) if resume else load_config(recipe, overrides, values)
    try:
        run_finetune(cfg, out, overwrite=overwrite, resume=resume, device=device, deterministic=deterministic)
    except Preempted as exc:
        print(f"{'interrupted' if exc.signum == signal.SIGINT else 'preempted'}: {exc}", file=sys.stderr)
        raise SystemExit(exit_code(exc.signum))


def finetune(
    recipe: str = typer.Argument(..., help="recipe name (e.g. demo, k400) or a YAML config path"),
    out: Path = typer.Option(Path("runs/run"), "--out", "-o", help="run folder"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override, e.g. --set train.lr=1e-5 (repeatable)"),
    data: Optional[str] = typer.Option(None, "--data", help="training list (data.train_list)"),
    val: Optional[str] = typer.Option(None, "--val", help="evaluation list (data.val_list)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="label CSV (data.labels)"),
    root: Optional[str] = typer.Option(None, "--root", help="video root (data.root)"),
    clip: Optional[str] = typer.Option(None, "--clip", help="CLIP weights: local file, open_clip tag of --arch "
                                                            "(openai, laion2b_s34b_b88k, …) or hf-hub:ORG/NAME"),
    init_from: Optional[str] = typer.Option(None, "--init-from", "--checkpoint",
                                            help="start from a checkpoint's weights (vifi, run folder or paper .pth)"),
    train_mode: Optional[TrainMode] = typer.Option(None, "--train-mode", "--train",
                                                   help="which towers train (model.train; --train: old spelling)"),
    micro_batch: Optional[str] = typer.Option(None, "--micro-batch",
                                              help="per-device micro-batch or auto (the global batch is kept)"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                            help="torch.compile the video head and augmentation (default: on CUDA)"),
    checkpointing: bool = typer.Option(False, "--grad-checkpointing", "--checkpointing",
                                       help="activation checkpointing: less memory, some speed (as open_clip, timm)"),
    backend: Optional[Backend] = backend_option(None, BACKEND_HELP + "; sets data.backend"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when present)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a finished run in --out"),
    deterministic: bool = typer.Option(False, "--deterministic", help="PyTorch determinism switches"),
    auto_resume: bool = auto_resume_option(),
    skip_undecodable: bool = typer.Option(False, "--skip-undecodable",
                                          help="evaluate on the val videos that decode (eval.skip_undecodable)"),
    report_to: Optional[str] = report_to_option(),
    cache_dir: Optional[str] = cache_dir_option(),
) -> None:
    values = {"data.train_list": data, "data.val_list": val, "data.labels": labels, "data.root": root,
              "model.clip": clip, "model.init_from": init_from, "model.train": train_mode,
              "train.micro_batch": _micro_batch(micro_batch), "train.compile": compile_,
              "train.checkpointing": checkpointing or None, "data.backend": backend,
              "eval.skip_undecodable": skip_undecodable or None, "train.report_to": report_to}
    train_from_cli(recipe, out, list(set_ or []), resume=resume, overwrite=overwrite, device=device,
                   deterministic=deterministic, values=values, auto_resume=auto_resume)


def _micro_batch(text: Optional[str]):
    """--micro-batch takes a number or `auto`: the one typed flag whose value has two types."""
    if text is None or text == "auto":
        return text
    from vifi.errors import VifiError

    try:
        return int(text)
    except ValueError:
        raise VifiError(f"--micro-batch {text!r}: give a positive whole number or auto") from None


def register(app: typer.Typer) -> None:
    app.command("finetune", help="Fine-tune CLIP on videos (ViFi-CLIP), then evaluate; writes a run folder."
                                 "\n\nExample: vifi finetune demo --out runs/demo")(finetune)
