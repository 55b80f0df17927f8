"""The `vifi` command: one Typer app, one thin module per subcommand."""

from __future__ import annotations

import signal
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
    interrupted = []

    def on_ctrl_c(signum, frame):
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)  # KeyboardInterrupt, which Typer turns into exit 130

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        app()
    except VifiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not interrupted:
            raise
        print("interrupted", file=sys.stderr)
        # Objects torn down mid-call (decord's VideoReader) may complain in __del__; one line is the whole story.
        sys.unraisablehook = lambda _info: None
        sys.exit(130)
