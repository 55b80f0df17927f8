"""The `vifi` command: one Typer app, one thin module per subcommand."""

from __future__ import annotations

import sys

import typer

from vifi.errors import VifiError

app = typer.Typer(
    name="vifi",
    help="ViFi-CLIP video learners on open_clip: fine-tune, prompt, evaluate, zero-shot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from vifi.cli import eval as eval_cmd
    from vifi.cli import bench, export, finetune, prepare, prompt, splits, viz, zeroshot

    prepare.register(app)
    finetune.register(app)
    prompt.register(app)
    eval_cmd.register(app)
    zeroshot.register(app)
    splits.register(app)
    export.register(app)
    bench.register(app)
    viz.register(app)


_register()


def main() -> None:
    try:
        app()
    except VifiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
