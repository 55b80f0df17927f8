"""Options that several subcommands share, declared once so their spelling and help never drift apart."""

from __future__ import annotations

from typing import Literal, Optional

import typer

# Typed choices: typer lists them in --help, completes them, and refuses anything else before any work.
from vifi.inference_flags import DecodeBackend as Backend  # one list of the decoders
TrainMode = Literal["both", "image", "text"]
Protocol = Literal["zeroshot", "base2novel", "fewshot", "supervised"]
ReencodeFormat = Literal["mjpeg", "h264-intra", "h264"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
BACKEND_HELP = "video decoder (same frames from each; docs/data.md)"


def backend_option(default: Optional[str] = "decord", help: str = BACKEND_HELP):
    return typer.Option(default, "--backend", help=help)


def frames_option(default: Optional[int] = None, help: str = "frames per clip (default: the checkpoint's)"):
    return typer.Option(default, "--frames", help=help)


def batch_option(default: int = 8):
    return typer.Option(default, "--batch", help="videos per batch")


def workers_option(default: int = 2):
    return typer.Option(default, "--workers", help="data-loading processes")


def device_option(help: str = "cuda | cpu"):
    return typer.Option(None, "--device", help=help)


def auto_resume_option():
    return typer.Option(False, "--auto-resume", help="--resume when --out has a checkpoint, else start; a finished "
                                                     "run is left as it is (for requeued jobs)")


def overwrite_option(help: str = "replace an existing output"):
    return typer.Option(False, "--overwrite", help=help)


def report_to_option() -> Optional[str]:
    return typer.Option(None, "--report-to", help="also log to tensorboard and/or wandb (comma-separated; "
                                                  "pip install 'vifi[track]'); sets train.report_to")


def _set_cache_dir(value: Optional[str]) -> Optional[str]:
    if value is not None:
        from vifi.model.pretrained import set_cache_dir

        set_cache_dir(value)
    return value


def cache_dir_option() -> Optional[str]:
    return typer.Option(None, "--cache-dir", callback=_set_cache_dir,
                        help="folder for downloaded CLIP weights (open_clip tags, hf-hub:ORG/NAME); default: the "
                             "Hugging Face cache")
