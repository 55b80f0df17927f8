"""Preemption as clusters and terminals deliver it: the signal goes to the whole process group, DataLoader workers
included. The workers ignore it; the main process checkpoints and exits 75 (SIGTERM) or 130 (SIGINT) with one line,
and --resume finishes the run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _args(demo_data, out):
    # Two workers, so that the group signal reaches processes other than the main one.
    return ["finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"],
            "--labels", demo_data["labels"], "--root", demo_data["root"], "--out", out,
            "--set", "train.epochs=4", "--set", "data.frames=4", "--set", "data.num_workers=2"]


def _workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in children.read_text().split()] if children.exists() else []


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 75, "preempted"), (signal.SIGINT, 130, "interrupted")])
def test_group_signal_checkpoints_exits_with_one_line_and_resume_finishes(demo_data, tmp_path, sig, code, word):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vifi", *map(str, _args(demo_data, out))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a job under a scheduler
    deadline = time.time() + 300
    # Wait until a training step is logged and the loader's worker processes exist.
    while time.time() < deadline and proc.poll() is None:
        if (out / "log.csv").exists() and len(_workers_of(proc.pid)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    workers = _workers_of(proc.pid)
    os.killpg(proc.pid, sig)  # the whole group: main process and DataLoader workers
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == code, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{word}: stopped by signal {int(sig)}"), err
    assert "continue with --resume" in lines[0] and "Traceback" not in err
    assert len(workers) >= 2
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert 1 <= latest["step"] < 8  # saved mid-run: 24 videos / batch 12 = 2 steps an epoch, 4 epochs
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    steps = [int(l.split(",")[0]) for l in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 9))  # every step exactly once across the stop and the resume


def test_ctrl_c_during_eval_prints_one_line_and_exits_130(demo_data, tmp_path, tiny_model):
    from vifi.model.checkpoint import save_weights

    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, tiny_model, {"frames": 8, "input_size": 64})
    cmd = [sys.executable, "-m", "vifi", "eval", "--checkpoint", str(ckpt), "--data", str(demo_data["val_list"]),
           "--labels", str(demo_data["labels"]), "--root", str(demo_data["root"]), "--out", str(tmp_path / "ev"),
           "--views", "4x3", "--workers", "2", "--batch", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(_workers_of(proc.pid)) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    time.sleep(1.0)  # decoding under way in the workers
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the evaluation finished before the signal arrived")
    assert proc.returncode == 130, err
    # stderr holds the progress lines (not a terminal: plain "eval: n/N" lines), then exactly one line of ours
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("eval: ")]
    assert lines == ["interrupted"] and "Traceback" not in err, err
    assert not (tmp_path / "ev" / "results.json").exists()


LATE_CTRL_C = """
import os, signal, sys, time
import typer
import vifi.cli.app as app

class Decoder:  # a finalizer running when Ctrl-C arrives, as a video reader's __del__ does when torn down late
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)

def work():
    reader = Decoder()
    del reader
    for _ in range(200):
        time.sleep(0.05)
    print("finished")

one = typer.Typer()
one.command()(work)
app.build_command = lambda: typer.main.get_command(one)
sys.argv = ["vifi"]
app.main()
"""


def test_ctrl_c_inside_a_finalizer_stops_the_command_with_one_line():
    # Python cannot raise out of __del__: it printed "Exception ignored in … KeyboardInterrupt" and went on working.
    proc = subprocess.run([sys.executable, "-c", LATE_CTRL_C], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "interrupted\n", "")
