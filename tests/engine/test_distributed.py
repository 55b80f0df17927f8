"""2-process gloo (torchrun on CPU): gradients equal the single-process run on the same global batch, and
distributed evaluation counts every video exactly once when the count is not a multiple of the world size."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def _finetune(launcher, demo_data, train_list, out):
    args = ["finetune", "demo", "--data", train_list, "--val", demo_data["val_list"], "--labels", demo_data["labels"],
            "--root", demo_data["root"], "--out", out, "--micro-batch", "3", "--set", "train.epochs=1",
            "--set", "data.frames=4", "--set", "data.num_workers=0", "--set", "train.mixup=0.8",
            "--set", "train.cutmix=1.0", "--set", "train.color_jitter=0.8", "--set", "train.grayscale=0.2",
            "--set", "train.mix_group=3"]
    proc = subprocess.run([*launcher, "-m", "vifi", *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    return torch.load(out / "checkpoints" / latest["state"], weights_only=True)["optimizer"]["state"]


def test_ddp_two_processes_equal_single_process(demo_data, tmp_path):
    train = tmp_path / "train.txt"
    lines = Path(demo_data["train_list"]).read_text().splitlines()
    train.write_text("\n".join(lines[:24]) + "\n")  # 24 videos / global batch 12 = 2 optimizer steps
    single = _finetune([sys.executable], demo_data, train, tmp_path / "single")
    ddp = _finetune([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                     "--master-port", "29533"], demo_data, train, tmp_path / "ddp")
    assert single.keys() == ddp.keys() and len(single) > 10
    for key in single:
        # Adam's first moment is linear in the gradients: equal moments = equal gradients
        # (summation order differs between one process and an all-reduce: tolerance relative to the tensor's scale)
        ref = single[key]["exp_avg"]
        torch.testing.assert_close(ddp[key]["exp_avg"], ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()) + 1e-12)
    res = json.loads((tmp_path / "ddp" / "results.json").read_text())
    n_val = sum(1 for l in Path(demo_data["val_list"]).read_text().splitlines() if l.strip())
    assert res["n_videos"] == n_val
    preds = (tmp_path / "ddp" / "predictions.csv").read_text().splitlines()[1:]
    assert [p.split(",")[0] for p in preds] == [l.split()[0] for l in Path(demo_data["val_list"]).read_text().splitlines()]
