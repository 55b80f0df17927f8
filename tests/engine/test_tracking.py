"""--report-to tensorboard,wandb log the numbers of log.csv / summary.csv (TensorBoard events and W&B offline
records read back); plain periodic lines off a terminal every train.log_every steps; run.log mirrors the console;
a missing tracker is one line."""

import csv
import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _vifi(*args):
    return subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def _demo_args(demo_data, out):
    return ["finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"], "--labels",
            demo_data["labels"], "--root", demo_data["root"], "--out", out, "--set", "train.epochs=2",
            "--set", "data.frames=2", "--set", "data.num_workers=0", "--set", "train.eval_every=1"]


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tracked(demo_data, tmp_path_factory):
    """One demo run reporting to every tracker installed here (W&B offline), read back by each tracker's test:
    one fine-tune for the module instead of one per tracker. (out, finished process)."""
    import os

    trackers = [name for name in ("tensorboard", "wandb") if importlib.util.find_spec(name) is not None]
    if not trackers:
        pytest.skip("neither tensorboard nor wandb is installed (pip install 'vifi[track]')")
    root = tmp_path_factory.mktemp("tracked")
    out = root / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root)}
    proc = subprocess.run([sys.executable, "-m", "vifi", *map(str, _demo_args(demo_data, out)), "--report-to",
                           ",".join(trackers), "--set", "train.log_every=2"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_tensorboard_events_hold_the_log_csv_numbers(tracked):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, proc = tracked
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    log = _csv(out / "log.csv")
    assert len(log) >= 4
    for tag, column, places in (("train/loss", "loss", 6), ("train/lr", "lr", None), ("train/clips_per_s",
                                "clips_per_s", 2), ("train/data_wait_s", "data_wait_s", 4)):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [int(r["step"]) for r in log]
        for s, row in zip(scalars, log):
            written = float(row[column])
            if places is None:  # lr is written with 6 significant digits
                assert s.value == pytest.approx(written, rel=1e-5)
            else:
                assert round(s.value, places) == pytest.approx(written, abs=10 ** -places)
    summary = _csv(out / "summary.csv")
    for tag, column in (("eval/top1", "top1"), ("eval/top5", "top5")):
        scalars = events.Scalars(tag)
        assert [(s.step, round(s.value, 4)) for s in scalars] == [
            (int(r["step"]), round(float(r[column]), 4)) for r in summary]

    # Off a terminal: one timm-style line every 2 steps (and at the last), with the running average and an ETA.
    lines = [l for l in proc.stderr.splitlines() if l.startswith("train: ")]
    total = len(log)
    expected_steps = [s for s in range(1, total + 1) if s % 2 == 0 or s == total]
    assert [int(l.split(" step ")[1].split("/")[0]) for l in lines] == expected_steps
    first = lines[0]
    losses = [float(r["loss"]) for r in log]
    assert f"loss {losses[1]:.4f} ({(losses[0] + losses[1]) / 2:.4f})" in first
    assert f"step 2/{total}" in first and "eta 0:" in first and "clips/s" in first and "data " in first
    assert proc.stdout.count("epoch ") == 0  # progress never reaches stdout

    # run.log mirrors the console: the periodic lines, the per-epoch results and the final table.
    run_log = (out / "run.log").read_text()
    assert all(l in run_log for l in lines) and "epoch 2: top1" in run_log and "final evaluation" in run_log


def test_report_to_a_tracker_that_is_not_installed_is_one_line_before_work(demo_data, tmp_path):
    # A real process in which wandb cannot be found, as on an install without the [track] extra (wandb is in the
    # test extra, so it is usually installed here).
    out = tmp_path / "never"
    code = ("import sys; sys.modules['wandb'] = None; sys.argv = ['vifi', *sys.argv[1:]]; "
            "from vifi.cli.app import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, _demo_args(demo_data, out)), "--report-to",
                           "tensorboard,wandb"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip().splitlines() == [
        "error: --report-to wandb needs the wandb package, which is not installed; pip install 'vifi[track]' "
        "(or pip install wandb)"]
    proc = _vifi(*_demo_args(demo_data, out), "--report-to", "mlflow")
    assert proc.returncode == 2 and "choose from tensorboard, wandb" in proc.stderr and not out.exists()


def test_plain_line_after_an_evaluation_logged_first_as_on_resume(tmp_path, capsys):
    # --resume at an epoch boundary logs the evaluation before the next step: the lines must still count from there.
    from vifi.config import load_config
    from vifi.engine.tracking import RunTracker

    cfg = load_config("demo", ["train.epochs=2", "train.log_every=1"])
    tracker = RunTracker(cfg, tmp_path, total_steps=8, steps_per_epoch=4, plain_lines=True)
    tracker.log_eval(epoch=0, step=4, metrics={"top1": 50.0, "top5": 100.0})
    tracker.log_step(step=5, epoch=1, lr=1e-3, loss=1.5, clips_per_s=12.0, data_wait_s=0.01)
    tracker.log_step(step=6, epoch=1, lr=1e-3, loss=0.5, clips_per_s=12.0, data_wait_s=0.01)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "step 6/8 (75%)" in lines[1] and "epoch 2/2 [2/4]" in lines[1]
    assert "loss 0.5000 (1.0000)" in lines[1]  # the average of this process's two steps


def _wandb_records(path):
    """The records of a W&B offline `run-ID.wandb` file, parsed from its framing (a ':W&B' header, then LevelDB-log
    blocks of 32 KiB holding CRC, length, type and a protobuf Record), since wandb ≥ 0.31 ships no reader."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or the LAST piece of a record split across blocks
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_holds_the_log_csv_numbers(tracked):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'vifi[track]')")
    import json

    out, _ = tracked
    run_id = (out / "wandb-id.txt").read_text().strip()
    files = list((out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1, list((out / "wandb").rglob("*"))
    records = _wandb_records(files[0])
    run = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run and run[0].run_id == run_id and run[0].project == "vifi"
    config = {item.key: json.loads(item.value_json) for item in run[0].config.update}
    assert config["train"]["epochs"] == 2 and config["data"]["frames"] == 2  # the run's config.yaml values
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            history.setdefault(int(items["_step"]), {}).update(items)
    log = _csv(out / "log.csv")
    assert len(log) >= 4
    for row in log:
        logged = history[int(row["step"])]
        assert logged["train/loss"] == pytest.approx(float(row["loss"]), abs=1e-6)
        assert logged["train/lr"] == pytest.approx(float(row["lr"]), rel=1e-5)
        assert logged["train/clips_per_s"] == pytest.approx(float(row["clips_per_s"]), abs=0.01)
        assert logged["train/data_wait_s"] == pytest.approx(float(row["data_wait_s"]), abs=1e-4)
    summary = _csv(out / "summary.csv")
    assert len(summary) == 2
    for row in summary:
        logged = history[int(row["step"])]
        assert logged["eval/top1"] == pytest.approx(float(row["top1"]), abs=1e-4)
        assert logged["eval/top5"] == pytest.approx(float(row["top5"]), abs=1e-4)
