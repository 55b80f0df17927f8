"""An index of demo videos built by `vifi index` with a tiny model, and the serve app over it."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="vifi serve needs the [serve] extra (fastapi, uvicorn)")


def vifi_cli(*args, check=True, env=None):
    proc = subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="session")
def tiny_index(demo_data, tmp_path_factory):
    """(index folder, checkpoint, the indexed videos): 12 demo videos, two of each class."""
    from tests.api.test_api import tiny_checkpoint

    folder = tmp_path_factory.mktemp("serve")
    checkpoint = tiny_checkpoint(folder / "tiny.safetensors")
    videos = sorted(Path(demo_data["root"]).rglob("*.mp4"))[::3]
    vifi_cli("index", *videos, "--checkpoint", checkpoint, "--out", folder / "idx", "--workers", "0",
             "--device", "cpu")
    return folder / "idx", checkpoint, videos


@pytest.fixture(scope="session")
def searcher(tiny_index):
    from vifi.search.query import Searcher

    return Searcher(tiny_index[0], device="cpu")
