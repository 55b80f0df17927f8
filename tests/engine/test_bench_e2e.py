"""`vifi bench e2e`: the projection formula, and that what it times is the training loop itself."""

import json
import subprocess
import sys
import time

import pytest

from vifi.bench.e2e import MeasuredRates, between_epoch_evaluations, checkpoints_written, project


def test_projection_against_hand_computed_hours():
    # k400-supervised-like: 30 epochs of 468 steps at 4.8 s, eval every epoch of 19,877 videos at 40 videos/s
    # (29 between-epoch evaluations: the last epoch's is the final one), final 4x3 at 4 videos/s, 600 s start-up,
    # 2 s per checkpoint at each epoch end.
    rates = MeasuredRates(step_s=4.8, eval_videos_per_s=40.0, final_eval_videos_per_s=4.0, startup_s=600.0,
                          checkpoint_s=2.0)
    out = project(rates, epochs=30, steps_per_epoch=468, eval_every=1, val_videos=19877)
    p = out["projection"]
    assert p["train_h"] == pytest.approx(30 * 468 * 4.8 / 3600)  # 18.72 h
    assert p["train_h"] == pytest.approx(18.72)
    assert p["eval_h"] == pytest.approx(29 * 19877 / 40 / 3600)  # 4.003 h
    assert p["final_eval_h"] == pytest.approx(19877 / 4 / 3600)  # 1.380 h
    assert p["startup_h"] == pytest.approx(600 / 3600)
    assert p["checkpoint_h"] == pytest.approx(30 * 2 / 3600)
    assert out["projected_hours"] == pytest.approx(18.72 + 4.0030 + 1.3803 + 0.16667 + 0.016667, abs=1e-3)


def test_evaluation_and_checkpoint_counts_follow_the_loop():
    # the loop evaluates after epoch e when e % eval_every == 0, and always after the last (the final evaluation)
    assert between_epoch_evaluations(50, 10) == 5  # after epochs 0, 10, 20, 30, 40; 49 is the final one
    assert between_epoch_evaluations(11, 10) == 1  # after epoch 0; epoch 10 is the last: the final one
    assert between_epoch_evaluations(1, 1) == 0
    assert between_epoch_evaluations(30, 1) == 29
    assert checkpoints_written(30, 100, 0) == 30
    assert checkpoints_written(2, 10, 4) == 2 + 5


def _run(demo_data, **kw):
    from vifi.bench.e2e import run_e2e
    from vifi.config import load_config
    from vifi.engine.runtime import setup_runtime

    sets = ["model.arch=tiny", "data.frames=4", "data.input_size=64", "data.num_workers=0", "train.global_batch=8",
            "train.lr_clock_gpus=2", "eval.batch=4"]
    cfg = load_config("k400-supervised", sets)
    return run_e2e(cfg, setup_runtime("cpu", "fp32"), data=demo_data["train_list"], root=demo_data["root"],
                   labels=demo_data["labels"], val=demo_data["val_list"], steps=2, warmup=1, eval_videos=4,
                   videos=240000, val_videos=19877, **kw)


@pytest.mark.slow
def test_the_timed_loop_is_the_training_loop(demo_data, monkeypatch):
    """Every timed step goes through Trainer.run_step (the loop `vifi finetune` runs), which reads its clips from the
    run's TrainClips through StepEngine: a delay put into run_step shows in the end-to-end step time and not in the
    model-alone time, and the counts of steps and clips are exactly the timed loop's."""
    from vifi.data.dataset import TrainClips
    from vifi.engine.step import StepEngine
    from vifi.engine.train import Trainer

    calls = {"run_step": 0, "engine": 0, "clips": 0}
    real_step, real_engine, real_item = Trainer.run_step, StepEngine.run, TrainClips.__getitem__
    delay = 0.4

    def run_step(self, host):
        calls["run_step"] += 1
        time.sleep(delay)
        return real_step(self, host)

    def engine_run(self, *a, **k):
        calls["engine"] += 1
        return real_engine(self, *a, **k)

    def item(self, key):
        calls["clips"] += 1
        return real_item(self, key)

    monkeypatch.setattr(Trainer, "run_step", run_step)
    monkeypatch.setattr(StepEngine, "run", engine_run)
    monkeypatch.setattr(TrainClips, "__getitem__", item)
    rec = _run(demo_data)
    assert calls["run_step"] == 1 + 2  # warm-up + timed, nothing else trains through the run's loop
    assert calls["engine"] == 3 + 2  # those, then the model-alone steps
    # workers=0: clips are read when asked: 3 steps + 2 steps' worth of data alone + 1 step held in memory, x 8
    assert calls["clips"] == (3 + 2 + 1) * 8
    assert rec["step_s"] >= delay  # the delay is inside what is timed ...
    assert rec["frames_per_s"] == pytest.approx(8 * 4 / rec["step_s"])
    # ... and it is the run's schedule that is projected: 240000 / 8 clips per step, 30 epochs, 29 + final evals
    assert rec["steps_per_epoch"] == 30000 and rec["epochs"] == 30 and rec["evaluations"] == 30
    assert rec["projection"]["train_h"] == pytest.approx(30 * 30000 * rec["step_s"] / 3600)
    assert rec["projection"]["final_eval_h"] == pytest.approx(19877 / rec["final_eval_videos_per_s"] / 3600)
    assert rec["projected_hours"] == pytest.approx(sum(rec["projection"].values()))


@pytest.mark.slow
def test_cli_prints_one_json_line_with_the_promised_keys(demo_data):
    args = ["bench", "e2e", "k400-supervised", "--data", demo_data["train_list"], "--root", demo_data["root"],
            "--val", demo_data["val_list"], "--set", "model.arch=tiny", "--set", "data.frames=2", "--set",
            "data.input_size=64", "--set", "data.num_workers=0", "--set", "train.global_batch=8", "--set",
            "train.lr_clock_gpus=2", "--set", "eval.final_clips=1", "--set", "eval.final_crops=1",
            "--steps", "1", "--warmup", "0", "--eval-videos", "2", "--device", "cpu", "--json"]
    proc = subprocess.run([sys.executable, "-m", "vifi", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    for key in ("frames_per_s", "model_frames_per_s", "data_frames_per_s", "data_wait_share", "eval_videos_per_s",
                "workers", "backend", "device", "projected_hours"):
        assert key in rec, key
    assert set(rec["projection"]) >= {"train_h", "eval_h", "final_eval_h", "startup_h"}
    assert rec["train_videos"] == 24 and rec["val_videos"] == 12  # the lists' sizes without --videos/--val-videos
    assert rec["workers"] == 0 and rec["backend"] == "decord"


def test_paper_recipes_resolve_workers_from_the_host():
    """num_workers: auto in every paper recipe: the cores this process may use, one left for the main process."""
    import os
    from pathlib import Path

    from vifi.config import load_config
    from vifi.engine.loaders import available_cores, resolve_workers

    recipes = Path(__file__).resolve().parents[2] / "vifi" / "recipes"
    for path in recipes.glob("*.yaml"):
        if path.stem.startswith("_") or path.stem == "demo":
            continue
        assert load_config(path.stem).data.num_workers == "auto", path.stem
    assert resolve_workers("auto") == max(1, min(16, available_cores() - 1))
    os.environ["LOCAL_WORLD_SIZE"] = "2"
    try:
        assert resolve_workers("auto") == max(1, min(16, available_cores() // 2 - 1))
    finally:
        del os.environ["LOCAL_WORLD_SIZE"]
