"""Options that several subcommands share, declared once so their spelling and help never drift apart."""

from __future__ import annotations

from typing import Optional

import typer


def report_to_option() -> Optional[str]:
    return typer.Option(None, "--report-to", help="also log to tensorboard and/or wandb (comma-separated; "
                                                  "pip install 'vifi[track]'); sets train.report_to")
