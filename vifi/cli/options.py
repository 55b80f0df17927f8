"""Options that several subcommands share, declared once so their spelling and help never drift apart."""

from __future__ import annotations

from typing import Optional

import typer


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
