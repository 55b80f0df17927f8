"""End to end through the CLI on the small demo data: files, refusal to clobber, eval consistency, determinism,
exact resume after kill -9."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

from tests.conftest import DEMO_RUN_SETS as SMALL  # the shared run's settings (tests/conftest.py `demo_run`)


def _args(demo_data, out, *extra):
    return ["finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"],
            "--labels", demo_data["labels"], "--root", demo_data["root"], "--out", out, *SMALL, *extra]


def _run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


@pytest.fixture
def finished_run(demo_run):
    """The session's shared run (made with these `_args` and --deterministic); these tests only read it."""
    return demo_run


def test_run_folder_contents(finished_run, demo_data):
    res = json.loads((finished_run / "results.json").read_text())
    n_test = sum(1 for l in Path(demo_data["val_list"]).read_text().splitlines() if l.strip())
    assert res["n_videos"] == n_test
    assert 0 <= res["top1"] <= res["top5"] <= 100
    preds = (finished_run / "predictions.csv").read_text().splitlines()
    assert preds[0].startswith("video,label,pred")
    assert len(preds) == n_test + 1
    correct = sum(int(l.split(",")[3]) for l in preds[1:])
    assert res["top1"] == pytest.approx(100 * correct / n_test, abs=1e-4)  # results.json rounds to 4 decimals
    for name in ("config.yaml", "log.csv", "summary.csv", "results.csv", "results.md", "checkpoints/final.safetensors"):
        assert (finished_run / name).is_file(), name
    log = (finished_run / "log.csv").read_text().splitlines()
    assert len(log) == 1 + 3 * 2  # 24 train videos / global batch 12 = 2 steps per epoch, 3 epochs


def test_refuses_to_overwrite_a_finished_run(finished_run, demo_data):
    before = (finished_run / "results.json").read_bytes()
    proc = _run(*_args(demo_data, finished_run))
    assert proc.returncode == 2 and "already holds a finished run" in proc.stderr
    assert (finished_run / "results.json").read_bytes() == before


def test_eval_of_the_checkpoint_reproduces_the_final_numbers(finished_run, demo_data, tmp_path):
    out = tmp_path / "ev"
    proc = _run("eval", "--checkpoint", finished_run, "--data", demo_data["val_list"], "--labels",
                demo_data["labels"], "--root", demo_data["root"], "--out", out, "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    a = json.loads((finished_run / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert (a["top1"], a["top5"], a["n_videos"]) == (b["top1"], b["top5"], b["n_videos"])
    assert (finished_run / "predictions.csv").read_text() == (out / "predictions.csv").read_text()


def test_checkpoint_of_another_architecture_is_refused(finished_run, tmp_path):
    import torch

    from vifi.model.backbone import TINY_CLIP, build_clip
    from vifi.model.checkpoint import load_weights_into
    from vifi.model.vifi_clip import ViFiCLIP
    from vifi.errors import VifiError

    cfg = json.loads(json.dumps(TINY_CLIP))
    cfg["vision_cfg"]["layers"] = 3
    model = ViFiCLIP(build_clip(cfg), cfg)
    with pytest.raises(VifiError, match="another architecture"):
        load_weights_into(model, finished_run)


def test_deterministic_runs_are_bit_identical(finished_run, demo_data, tmp_path):
    out = tmp_path / "again"
    assert _run(*_args(demo_data, out, "--deterministic")).returncode == 0
    assert _same_weights(out / "checkpoints/final.safetensors", finished_run / "checkpoints/final.safetensors")


def _kill_moment(proc, out: Path, mode: str, rng: random.Random) -> bool:
    """Wait for a moment of the given kind, then SIGKILL; True if the kill landed while a file was being written."""
    folder, log = out / "checkpoints", out / "log.csv"
    rows = len(log.read_text().splitlines()) if log.exists() else 0
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if mode == "write" and folder.is_dir() and any(p.name.endswith(".tmp") for p in folder.iterdir()):
            break  # a checkpoint file is half written right now
        if mode == "step" and log.exists() and len(log.read_text().splitlines()) > rows:
            time.sleep(rng.uniform(0.0, 0.4))
            break
        time.sleep(0.001 if mode == "write" else 0.02)
    if proc.poll() is not None:
        return False
    during_write = folder.is_dir() and any(p.name.endswith(".tmp") for p in folder.iterdir())
    proc.send_signal(signal.SIGKILL)
    return during_write


def test_resume_after_kill_9_at_ten_moments_is_bit_identical(demo_data, tmp_path):
    # 4 steps an epoch, a checkpoint after every step: 12 steps, each a chance to die mid-step or mid-write.
    extra = ("--deterministic", "--set", "train.save_every=1", "--set", "train.global_batch=6",
             "--set", "train.micro_batch=3")
    baseline = tmp_path / "baseline"
    assert _run(*_args(demo_data, baseline, *extra)).returncode == 0
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills, during_write = 0, 0
    for attempt in range(40):
        resume = (out / "checkpoints" / "latest.json").exists()
        cmd = [sys.executable, "-m", "vifi", *map(str, _args(demo_data, out, *extra))] + \
            (["--resume"] if resume else ["--overwrite"])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills < 10:
            if _kill_moment(proc, out, "write" if kills % 2 else "step", rng):
                during_write += 1
        _, err = proc.communicate(timeout=600)
        if proc.returncode == 0:
            if kills >= 10:
                break
            shutil.rmtree(out)  # finished before ten kills landed: start the whole chain again
            kills, during_write = 0, 0
            continue
        assert proc.returncode == -signal.SIGKILL, err
        kills += 1
    print(f"{kills} kills, {during_write} while a checkpoint file was half written")
    assert kills >= 10 and (out / "results.json").exists()
    assert _same_weights(out / "checkpoints/final.safetensors", baseline / "checkpoints/final.safetensors")
    log = [l.split(",")[0] for l in (out / "log.csv").read_text().splitlines()[1:]]
    assert log == [str(i) for i in range(1, 13)]  # every step logged exactly once across the restarts


def test_sigterm_saves_exits_75_and_resume_finishes_identically(finished_run, demo_data, tmp_path):
    out = tmp_path / "term"
    args = _args(demo_data, out, "--deterministic")
    proc = subprocess.Popen([sys.executable, "-m", "vifi", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "log.csv").exists() and time.time() < deadline:  # wait until training is under way
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 75, err
    assert "continue with --resume" in err
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["step"] >= 1
    assert _run(*args, "--resume").returncode == 0
    assert _same_weights(out / "checkpoints/final.safetensors", finished_run / "checkpoints/final.safetensors")
