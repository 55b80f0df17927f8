"""Model-free commands start without torch (0.5 s instead of 6-7 s): `python -X importtime` lists every module a
process imports; none of them may be torch (or open_clip, which imports it)."""

import re
import subprocess
import sys

import pytest

from vifi.cli.app import build_command

HEAVY = re.compile(r"\|\s+(torch|open_clip|torchvision)(\.|$)", re.M)


def _command_paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*prefix, name))


def _imports(*args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "vifi", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


MODEL_FREE = [list(p) + ["--help"] for p in _command_paths(build_command())] + [
    ["recipes"], ["config", "show", "demo"], ["--version"]]


@pytest.mark.parametrize("args", MODEL_FREE, ids=" ".join)
def test_model_free_commands_import_no_torch(args):
    proc = _imports(*args)
    assert "import time:" in proc.stderr  # the listing is there, so an empty match means something
    heavy = sorted({m.group(1) for m in HEAVY.finditer(proc.stderr)})
    assert not heavy, f"`vifi {' '.join(args)}` imports {heavy}"


def test_the_check_sees_torch_when_it_is_imported():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import vifi; vifi.load"], capture_output=True,
                          text=True, timeout=120)
    assert HEAVY.search(proc.stderr)


def test_version():
    from vifi import __version__

    assert _imports("--version").stdout.strip() == f"vifi {__version__}"
    assert len(MODEL_FREE) > 20  # every subcommand's --help is checked
