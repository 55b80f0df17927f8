"""The `vifi` command: one Typer app, one thin module per subcommand."""

from __future__ import annotations

import copy
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
    from vifi.cli import (bench, config_cmd, export, finetune, merge, prepare, prompt, search, serve, splits, viz,
                          zeroshot)

    prepare.register(app)
    finetune.register(app)
    prompt.register(app)
    eval_cmd.register(app)
    zeroshot.register(app)
    search.register(app)
    serve.register(app)
    splits.register(app)
    export.register(app)
    merge.register(app)
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


def _quiet_everywhere(command, quiet_option) -> None:
    """`--quiet`/`-q` is accepted after the subcommand too, as `--help` is: each subcommand gets a copy of the
    global flag that only switches quiet on (the global callback, which runs first, has already set it from its own
    position). A copy per command, parsed by click, so option values and `--` keep their meaning."""
    for sub in getattr(command, "commands", {}).values():
        if not any("--quiet" in param.opts for param in sub.params):
            option = copy.copy(quiet_option)
            option.expose_value = False
            option.callback = lambda _ctx, _param, value: console.set_quiet(True) if value else None
            sub.params.append(option)
        _quiet_everywhere(sub, quiet_option)


def _literal_brackets(command) -> None:
    """Help texts are plain text: Rich would read `'vifi[viz]'` or `.npy [checkpoints, frames, …]` as markup tags
    and drop them from `--help`. Escaped once here, for every command, argument and option, when Rich renders."""
    from typer import core

    if not core.HAS_RICH or getattr(command, "rich_markup_mode", None) != "rich":
        return
    from rich.markup import escape

    for owner in (command, *command.params):
        for attr in ("help", "short_help"):
            text = getattr(owner, attr, None)
            if isinstance(text, str) and "[" in text:
                setattr(owner, attr, escape(text))
    for sub in getattr(command, "commands", {}).values():
        _literal_brackets(sub)


def build_command():
    """The click command behind `vifi` (what main() runs; tests can call it with arguments)."""
    command = typer.main.get_command(app)
    _without_flag_placeholders(command)
    _quiet_everywhere(command, next(p for p in command.params if p.name == "quiet"))
    _literal_brackets(command)
    return command


def main() -> None:
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    from typer.exceptions import Abort

    interrupted = []

    def on_ctrl_c(signum, frame):
        interrupted.append(signum)
        if sys.is_finalizing():
            return  # the command is over; nothing is left to stop
        if _inside_del(frame):
            # A KeyboardInterrupt raised inside a finalizer (a decoder's __del__ torn down late) cannot propagate:
            # Python prints it as "Exception ignored in …" and carries on. Deliver the signal again a moment later,
            # where it can stop the command.
            import threading

            timer = threading.Timer(0.02, signal.raise_signal, (signum,))
            timer.daemon = True
            timer.start()
            return
        signal.default_int_handler(signum, frame)  # KeyboardInterrupt, which Typer turns into exit code 130

    signal.signal(signal.SIGINT, on_ctrl_c)
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
    try:
        code = build_command().main(prog_name="vifi", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `vifi` or `vifi bench` alone: the help, as click shows it
        exc.show()
        sys.exit(2)
    except VifiError as exc:
        _fail(f"error: {exc}")
    except UsageError as exc:  # unknown option, a value outside the choices: one line too, with where to look
        where = exc.ctx.command_path if exc.ctx is not None else "vifi"
        _fail(f"error: {' '.join(exc.format_message().split())} (see `{where} --help`)")
    except ClickException as exc:
        _fail(f"error: {' '.join(exc.format_message().split())}")
    except (KeyboardInterrupt, Abort):
        _interrupted()
    except SystemExit:
        if interrupted:
            _interrupted()
        raise
    if interrupted:
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _inside_del(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _unraisable_hook(default):
    """Finalizers interrupted by Ctrl-C print nothing (the command says "interrupted" once); other errors in a
    finalizer still reach Python's default report."""

    def hook(info) -> None:
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            return
        default(info)

    return hook


def _interrupted() -> None:
    print("interrupted", file=sys.stderr)
    # Objects torn down mid-call (decord's VideoReader) may complain in __del__; one line is the whole story.
    sys.unraisablehook = lambda _info: None
    sys.exit(130)


def _fail(line: str) -> None:
    print(line, file=sys.stderr)
    console.mirror_line(line)  # a run that stops on an error says why in its run.log too
    sys.exit(2)
