"""The `vifi` command: one Typer app, one thin module per subcommand."""

from __future__ import annotations

import signal
import sys

import typer

from vifi import console
from vifi.errors import VifiError

app = typer.Typer(
    name="vifi",
    help="ViFi-CLIP video learners on open_clip: fine-tune, prompt, evaluate, zero-shot.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from vifi import __version__

        print(f"vifi {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or notices on stderr (warnings, errors "
                                                            "and results still shown)"),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print vifi's version and exit"),
) -> None:
    """ViFi-CLIP video learners on open_clip: fine-tune, prompt, evaluate, zero-shot.

    Results (tables, CSV/JSON asked for) go to stdout; progress, notices and warnings to stderr.
    """
    from vifi import console

    console.set_quiet(quiet)


def _register() -> None:
    from vifi.cli import eval as eval_cmd
    from vifi.cli import bench, config_cmd, export, finetune, prepare, prompt, splits, viz, zeroshot

    prepare.register(app)
    finetune.register(app)
    prompt.register(app)
    eval_cmd.register(app)
    zeroshot.register(app)
    splits.register(app)
    export.register(app)
    bench.register(app)
    viz.register(app)
    config_cmd.register(app)


_register()


def _without_flag_placeholders(command) -> None:
    """Boolean flags take no value; typer's help shows `<bool>` beside them, which invites `--vanilla true`
    (then `true` is read as the next argument). An empty metavar drops the placeholder."""
    help_option = command.get_help_option(command.context_class(command))  # made on demand, then cached
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _without_flag_placeholders(sub)


def build_command():
    """The click command behind `vifi` (what main() runs; tests can call it with arguments)."""
    command = typer.main.get_command(app)
    _without_flag_placeholders(command)
    return command


def main() -> None:
    interrupted = []

    def on_ctrl_c(signum, frame):
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)  # KeyboardInterrupt, which Typer turns into exit 130

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        build_command()(prog_name="vifi")
    except VifiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        console.mirror_line(f"error: {exc}")  # a run that stops on an error says why in its run.log too
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not interrupted:
            raise
        print("interrupted", file=sys.stderr)
        # Objects torn down mid-call (decord's VideoReader) may complain in __del__; one line is the whole story.
        sys.unraisablehook = lambda _info: None
        sys.exit(130)
