"""The run folder: one lock per folder (refused second run, nothing stale after kill -9), --overwrite clears only
after every new input is checked, --resume refuses changes that would alter training."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vifi.errors import VifiError
from vifi.run_folder import LOCK_NAME, RunFolder

SMALL = ["--set", "train.epochs=1", "--set", "data.frames=4", "--set", "data.num_workers=0"]


def _args(demo_data, out, *extra):
    return ["finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"],
            "--labels", demo_data["labels"], "--root", demo_data["root"], "--out", out, *SMALL, *extra]


def _vifi(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "vifi", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _hashes(folder: Path) -> dict:
    """Every file of the run; the lock file is left out (it records who holds the folder now, not the run)."""
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def _wait_for_lock(run: RunFolder, pid: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if run.lock_file.is_file() and f'"pid": {pid}' in run.lock_file.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"the run never took the lock (exit {proc.poll()})")


def _one_error_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# ---- the lock, in-process and with a real holder process ------------------------------------------------------

HOLDER = """
import sys, time
from vifi.run_folder import LOCK_NAME, RunFolder
RunFolder(sys.argv[1]).lock()
print("locked", flush=True)
time.sleep(600)
"""


def test_lock_names_the_holder_and_dies_with_it(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(VifiError) as err:
            RunFolder(out).lock()
        assert f"pid {holder.pid}" in str(err.value) and "in use by another run" in str(err.value)
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait()
    run = RunFolder(out)
    run.lock()  # the kernel dropped the dead holder's lock: nothing stale
    assert run.holder()["pid"] == os.getpid()  # read through the held descriptor: re-opening would release it
    run.unlock()


def test_clear_removes_every_run_file_including_failed_txt(tmp_path):
    run = RunFolder(tmp_path)
    for path in run.run_files():
        path.write_text("old")
    run.checkpoints.mkdir()
    run.latest.write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    run.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert run.failed.name == "failed.txt" and run.failed in run.run_files()


# ---- end to end -------------------------------------------------------------------------------------------------

@pytest.fixture
def finished(demo_run_copy):
    """A finished run of our own to resume or overwrite: a copy of the session's shared one (tests/conftest.py)."""
    return demo_run_copy


@pytest.mark.slow
def test_overwrite_with_a_misspelled_list_leaves_the_old_run_intact(finished, demo_data):
    before = _hashes(finished)
    wrong = Path(demo_data["train_list"]).with_name("trian.txt")
    args = _args(demo_data, finished, "--overwrite")
    args[args.index("--data") + 1] = wrong
    proc = _vifi(*args)
    assert proc.returncode == 2
    assert "trian.txt" in _one_error_line(proc.stderr)
    assert _hashes(finished) == before


@pytest.mark.slow
def test_second_run_into_a_busy_folder_is_refused_naming_the_holder_which_completes(demo_data, tmp_path):
    out = tmp_path / "busy"
    first = _start(*_args(demo_data, out))
    _wait_for_lock(RunFolder(out), first.pid, first)
    second = _vifi(*_args(demo_data, out))
    assert second.returncode == 2
    line = _one_error_line(second.stderr)
    assert f"pid {first.pid}" in line and "finetune" in line, line
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert json.loads((out / "results.json").read_text())["n_videos"] > 0
    assert len((out / "log.csv").read_text().splitlines()) == 1 + 2  # one run's steps only: 24 videos / batch 12


@pytest.mark.slow
def test_after_kill_9_of_the_holder_a_new_run_proceeds(demo_data, tmp_path):
    out = tmp_path / "killed"
    victim = _start(*_args(demo_data, out))
    _wait_for_lock(RunFolder(out), victim.pid, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    proc = _vifi(*_args(demo_data, out, "--overwrite"))
    assert proc.returncode == 0, proc.stderr
    assert RunFolder(out).finished


@pytest.mark.slow
def test_resume_refuses_training_changes_and_applies_safe_ones(finished, demo_data):
    config = (finished / "config.yaml").read_bytes()
    refused = _vifi(*_args(demo_data, finished, "--resume", "--set", "train.lr=0.5", "--set", "data.frames=8"))
    assert refused.returncode == 2
    line = _one_error_line(refused.stderr)
    assert "train.lr" in line and "data.frames" in line and "data.num_workers" not in line
    assert (finished / "config.yaml").read_bytes() == config
    # A finished run is complete: a requeue with a safe change says so and changes nothing.
    done = _vifi("finetune", "demo", "--out", finished, "--resume", "--set", "train.log_every=3")
    assert done.returncode == 0 and "complete" in done.stderr, done.stderr
    assert (finished / "config.yaml").read_bytes() == config
    # A run not finished yet (its results.json gone): a short command (recipe defaults differ from the saved run) is
    # not a change; a safe key is applied and said.
    unfinished = finished.parent / "unfinished"
    shutil.copytree(finished, unfinished)
    (unfinished / "results.json").unlink()
    ok = _vifi("finetune", "demo", "--out", unfinished, "--resume", "--set", "train.log_every=3")
    assert ok.returncode == 0, ok.stderr
    assert "resume: applying train.log_every 10 -> 3" in ok.stderr
    assert "log_every: 3" in (unfinished / "config.yaml").read_text()
    assert (unfinished / "results.json").is_file()


def test_resume_config_compares_only_what_the_command_gives(tmp_path):
    from vifi.config import dump_config, load_config
    from vifi.runs import resume_config

    saved = load_config("demo", ["train.epochs=1", "train.micro_batch=6"])
    (tmp_path / "config.yaml").write_text(dump_config(saved))
    assert resume_config(tmp_path, [], {"data.root": None}) == saved  # nothing given
    assert resume_config(tmp_path, ["train.epochs=1"], {"train.micro_batch": "auto"}) == saved  # same values
    safe = resume_config(tmp_path, ["data.num_workers=0"], {"eval.skip_undecodable": True})
    assert (safe.data.num_workers, safe.eval.skip_undecodable, safe.train) == (0, True, saved.train)
    with pytest.raises(VifiError, match=r"model\.clip .*train\.seed"):
        resume_config(tmp_path, ["train.seed=7"], {"model.clip": "other.pt"})


# ---- checks made before training ---------------------------------------------------------------------------------

@pytest.fixture
def corrupt_val(demo_data, tmp_path):
    root = Path(demo_data["root"])
    bad = tmp_path / "videos"
    bad.mkdir()
    for sub in root.iterdir():
        (bad / sub.name).symlink_to(sub)
    (bad / "corrupt.mp4").write_bytes(b"\x00" * 100)
    val = tmp_path / "val.txt"
    val.write_text(Path(demo_data["val_list"]).read_text() + "corrupt.mp4 0\n")
    return bad, val


def test_undecodable_val_video_fails_before_training_and_names_the_flag(demo_data, corrupt_val, tmp_path):
    root, val = corrupt_val
    out = tmp_path / "out"
    args = _args(demo_data, out)
    args[args.index("--val") + 1], args[args.index("--root") + 1] = val, root
    proc = _vifi(*args)
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "corrupt.mp4" in line and "--skip-undecodable" in line
    assert not out.exists()  # a folder made only for this failed attempt is removed again


@pytest.mark.slow
def test_finetune_accepts_skip_undecodable_and_scores_the_rest(demo_data, corrupt_val, tmp_path):
    root, val = corrupt_val
    out = tmp_path / "out"
    args = _args(demo_data, out, "--skip-undecodable")
    args[args.index("--val") + 1], args[args.index("--root") + 1] = val, root
    proc = _vifi(*args)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    n_val = len(Path(demo_data["val_list"]).read_text().splitlines())
    assert (res["n_videos"], res["n_failed"]) == (n_val, 1)
    assert (out / "failed.txt").read_text().startswith("corrupt.mp4\t")


def test_clear_removes_tracker_files_with_the_run(tmp_path):
    # --overwrite must not mix the old run's TensorBoard curves or W&B run id into the new run.
    from vifi.run_folder import RunFolder

    folder = RunFolder(tmp_path / "run")
    (folder.tensorboard).mkdir(parents=True)
    (folder.tensorboard / "events.out.tfevents.1").write_bytes(b"old")
    folder.wandb_id.write_text("old-id\n")
    folder.config.write_text("name: old\n")
    keep = folder.path / "notes.txt"
    keep.write_text("mine")
    folder.clear()
    assert not folder.tensorboard.exists() and not folder.wandb_id.exists() and not folder.config.exists()
    assert keep.read_text() == "mine"  # files vifi did not write stay
