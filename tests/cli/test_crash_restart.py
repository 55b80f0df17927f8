"""Crash, then restart at once (what a requeue script does after the OOM killer or a node failure): the run-folder
lock belongs to the main process alone, never to its DataLoader workers, and a requeue of a finished run is a no-op.
docs/reliability.md, "Run folder"."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.cli.test_run_folder import _args, _one_error_line, _vifi, finished  # noqa: F401  (module fixture)
from tests.cli.test_signals import _workers_of
from tests.conftest import demo_run_args
from vifi.errors import VifiError
from vifi.run_folder import RunFolder

FORKING_HOLDER = """
import os, sys, time
from vifi.run_folder import RunFolder
RunFolder(sys.argv[1]).lock()
child = os.fork()  # what a DataLoader with fork-started workers does
if child == 0:
    time.sleep(600)
    os._exit(0)
print(child, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


def test_a_forked_child_does_not_hold_the_lock_after_its_parent_is_killed(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        with pytest.raises(VifiError, match=f"pid {holder.pid}"):
            RunFolder(out).lock()  # the parent holds it
        holder.kill()  # kill -9 of the parent only: the child lives on, as orphaned DataLoader workers do
        holder.wait()
        assert _alive(child)
        run = RunFolder(out)
        run.lock()  # at once: the child never held the lock (an flock is inherited by fork and would be held)
        assert run.holder()["pid"] == os.getpid()
        run.unlock()
    finally:
        os.kill(child, signal.SIGKILL)


STARTING_HOLDER = """
import json, os, sys, time
from vifi.run_folder import RunFolder
run = RunFolder(sys.argv[1])
run.lock()
# The record still names an earlier, dead run (as between taking the lock and writing the record).
os.ftruncate(run._lock_fd, 0)
os.pwrite(run._lock_fd, json.dumps({"pid": int(sys.argv[2]), "host": os.uname().nodename, "command": "stale-cmd",
                                    "since": "earlier"}).encode(), 0)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_dead_recorded_holder_is_never_reported_as_the_live_run(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", STARTING_HOLDER, str(out), str(dead.pid)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(VifiError) as err:
            RunFolder(out).lock()
        message = str(err.value)
        assert f"pid {dead.pid} " not in message and "stale-cmd" not in message, message
        assert f"pid {holder.pid} " in message and "just starting" in message, message
    finally:
        holder.kill()
        holder.wait()


# ---- end to end, with real DataLoader workers --------------------------------------------------------------------

WORKERS = ["--set", "data.num_workers=2"]


@pytest.mark.slow
def test_kill_9_of_the_main_process_with_its_workers_alive_then_an_immediate_restart_is_accepted(demo_data, tmp_path):
    out = tmp_path / "run"
    args = [*_args(demo_data, out, *WORKERS, "--set", "train.epochs=2", "--set", "train.save_every=1"),
            "--auto-resume"]
    proc = subprocess.Popen([sys.executable, "-m", "vifi", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "checkpoints" / "latest.json").exists() and len(_workers_of(proc.pid)) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1]
    workers = _workers_of(proc.pid)
    for pid in workers:  # kept alive for the whole restart (they would otherwise exit within seconds)
        os.kill(pid, signal.SIGSTOP)
    try:
        proc.send_signal(signal.SIGKILL)  # the main process only, as the OOM killer does
        proc.wait()
        started = time.monotonic()
        restart = subprocess.Popen([sys.executable, "-m", "vifi", *map(str, args)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        print(f"restarted {1000 * (time.monotonic() - started):.0f} ms after the kill")
        _, err = restart.communicate(timeout=600)
        assert all(_alive(pid) for pid in workers)  # the orphans were there all along
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
    assert restart.returncode == 0, err
    assert "in use" not in err
    steps = [int(l.split(",")[0]) for l in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]  # 24 videos / batch 12, 2 epochs: every step once across the kill


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


@pytest.mark.slow
def test_a_kill_resume_loop_of_four_kills_at_random_steps_ends_bit_identical(demo_data, tmp_path):
    sets = (*WORKERS, "--deterministic", "--set", "train.epochs=2", "--set", "train.global_batch=6",
            "--set", "train.micro_batch=3", "--set", "train.save_every=1")  # 8 steps, a checkpoint after each
    baseline = tmp_path / "baseline"
    proc = _vifi(*_args(demo_data, baseline, *sets))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "vifi", *map(str, _args(demo_data, out, *sets)), "--auto-resume"]
    rng = random.Random(23)
    kill_at = sorted(rng.sample(range(1, 8), 4))  # after these logged steps (random moments within the step)
    for step in kill_at:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log, deadline = out / "log.csv", time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) - 1 >= step:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)  # the main process only: its workers are orphaned and still alive
        proc.wait()  # and at once the requeue
    last = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stderr
    assert _same_weights(out / "checkpoints/final.safetensors", baseline / "checkpoints/final.safetensors")
    log = [l.split(",")[0] for l in (out / "log.csv").read_text().splitlines()[1:]]
    assert log == [str(i) for i in range(1, 9)]
    assert json.loads((out / "results.json").read_text())["top1"] == \
        json.loads((baseline / "results.json").read_text())["top1"]


def test_a_start_after_an_attempt_killed_before_its_first_checkpoint_logs_each_step_once(demo_data, tmp_path):
    """What the kill loop above met under load: the first attempt logged step 1 and was killed before its
    checkpoint was written; the requeue found no checkpoint and started afresh, appending to the old log.csv."""
    from tests.conftest import vifi_in_process

    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("step,epoch,lr,loss,clips_per_s,data_wait_s\n1,0,1e-06,4.2,3.0,0.1\n")
    (out / "run.log").write_text("what the killed attempt said\n")
    (out / ".vifi.lock").write_text("")  # taken before the attempt wrote anything (docs/reliability.md)
    for flags in (["--auto-resume"], []):  # a requeue script's command, and a plain start: the same folder state
        proc = vifi_in_process(*_args(demo_data, out, "--set", "train.epochs=1", *flags))
        assert proc.returncode == 0, proc.stderr
        steps = [l.split(",")[0] for l in (out / "log.csv").read_text().splitlines()[1:]]
        assert steps == ["1", "2"], steps  # 24 videos / batch 12: each step once
        shutil.rmtree(out / "checkpoints")  # the next pass starts from the same state
        (out / "results.json").unlink()
        (out / "log.csv").write_text("step,epoch,lr,loss,clips_per_s,data_wait_s\n1,0,1e-06,4.2,3.0,0.1\n")


def test_a_start_into_a_folder_whose_run_files_no_vifi_run_wrote_is_refused_and_leaves_them(demo_data, tmp_path):
    """A user's own log.csv / config.yaml where --out points: neither appended to, truncated nor replaced."""
    from tests.conftest import vifi_in_process

    out = tmp_path / "mine"
    out.mkdir()
    (out / "log.csv").write_text("a,b\n1,2\n")
    (out / "config.yaml").write_text("my: settings\n")
    files = lambda: {k: v for k, v in _state(out).items() if k != Path(".")}  # noqa: E731  (the --out writability
    before = files()  # probe creates and removes a file, which moves the folder's own mtime: docs/reliability.md)
    for flags in ([], ["--auto-resume"]):
        proc = vifi_in_process(*_args(demo_data, out, "--set", "train.epochs=1", *flags))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "log.csv" in proc.stderr and "config.yaml" in proc.stderr and "--overwrite" in proc.stderr
        assert files() == before and sorted(p.name for p in out.iterdir()) == ["config.yaml", "log.csv"]


# ---- a requeue after completion ----------------------------------------------------------------------------------

def _state(folder: Path) -> dict:
    """Every entry's bytes and mtime (the lock file and the folders included): 'no file touched'."""
    return {p.relative_to(folder): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in [folder, *sorted(folder.rglob("*"))]}


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--resume", "--auto-resume"])
def test_a_finished_run_given_resume_says_it_is_complete_and_touches_nothing(finished, demo_data, flag):
    before = _state(finished)
    proc = _vifi(*demo_run_args(demo_data, finished, "--deterministic", flag))  # the command that made the run
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "complete" in lines[0] and "epoch" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert _state(finished) == before
    # A short requeue command (recipe and --out only) finds it complete too.
    short = _vifi("finetune", "demo", "--out", finished, flag)
    assert short.returncode == 0 and "complete" in short.stderr, short.stderr
    assert _state(finished) == before


def test_a_finished_prompt_run_given_resume_or_auto_resume_is_left_as_it_is(tmp_path):
    from vifi.config import dump_config, load_config

    out = tmp_path / "prompt"
    out.mkdir()
    cfg = load_config("prompt-b2n", ["model.train=prompt", "model.init_from=bridge.safetensors"])
    (out / "config.yaml").write_text(dump_config(cfg))
    (out / "results.json").write_text('{"top1": 50.0}\n')
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "latest.json").write_text("{}")
    before = _state(out)
    for flag in ("--resume", "--auto-resume"):
        proc = _vifi("prompt", "prompt-b2n", "--out", out, flag)
        assert proc.returncode == 0, proc.stderr
        assert "complete" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert _state(out) == before
    # A change that would alter training is still refused, naming the key, and nothing is touched.
    refused = _vifi("prompt", "prompt-b2n", "--out", out, "--resume", "--set", "train.lr=0.5")
    assert refused.returncode == 2 and "train.lr" in _one_error_line(refused.stderr)
    assert _state(out) == before
