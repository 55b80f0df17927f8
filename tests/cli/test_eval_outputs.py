"""What an evaluation leaves behind: per-class accuracy, mean-class accuracy and the confusion matrix (hand-checked
on a small known case), class names in predictions.csv, provenance and rounded numbers in results.json,
`eval --limit N` and `eval --overwrite`."""

import json
import re

import pandas as pd
import pytest

from tests.conftest import ramp_frames, write_video, vifi_in_process as _vifi
from vifi.model.checkpoint import save_weights
from vifi.results import class_metrics, round_floats


def test_per_class_numbers_on_a_hand_checked_case():
    # true: a a b b b c ; predicted: a b b b a b  (class d has no videos)
    preds = pd.DataFrame({"label": [0, 0, 1, 1, 1, 2], "pred": [0, 1, 1, 1, 0, 1]})
    per_class, confusion, mean_class = class_metrics(preds, ["a", "b", "c", "d"])
    assert per_class["videos"].tolist() == [2, 3, 1, 0]
    assert per_class["correct"].tolist() == [1, 2, 0, 0]
    assert per_class["top1"].tolist()[:3] == [50.0, 66.6667, 0.0] and pd.isna(per_class["top1"][3])
    assert mean_class == pytest.approx((50 + 200 / 3 + 0) / 3)  # d has no videos: not averaged
    assert confusion.to_numpy().tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert list(confusion.columns) == ["a", "b", "c", "d"] and list(confusion.index) == ["a", "b", "c", "d"]


def test_round_floats_rounds_every_float_and_nothing_else():
    assert round_floats({"top1": 96.66666388511658, "n": 3, "rows": [{"x": 0.123456789, "s": "1.23456"}]}) == \
        {"top1": 96.6667, "n": 3, "rows": [{"x": 0.1235, "s": "1.23456"}]}



@pytest.fixture
def small_eval(tmp_path, tiny_model):
    root = tmp_path / "videos"
    lines = []
    for i in range(6):
        write_video(root / f"v{i}.mp4", ramp_frames(8, 48, 64) + 20 * i)
        lines.append(f"v{i}.mp4 {i % 3}")
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.csv").write_text("id,name\n0,red ball\n1,blue cube\n2,\"green, wide cone\"\n")
    ckpt = tmp_path / "tiny.safetensors"
    save_weights(ckpt, tiny_model, {"frames": 4, "input_size": 64, "template": "a photo of a {}."})
    return ["--checkpoint", ckpt, "--data", tmp_path / "test.txt", "--labels", tmp_path / "labels.csv", "--root",
            root, "--workers", "0"]


def test_eval_writes_per_class_confusion_names_and_provenance(tmp_path, small_eval):
    out = tmp_path / "ev"
    proc = _vifi("eval", *small_eval, "--out", out)
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_csv(out / "predictions.csv")
    names = ["red ball", "blue cube", "green, wide cone"]
    assert preds["label_name"].tolist() == [names[i] for i in preds["label"]]
    assert preds["pred_name"].tolist() == [names[i] for i in preds["pred"]]
    per_class = pd.read_csv(out / "per_class.csv")
    for c, row in per_class.iterrows():  # per class = naive count over predictions.csv
        mine = preds[preds.label == c]
        assert (row.videos, row.correct) == (len(mine), int(mine.correct.sum()))
        assert row.top1 == pytest.approx(100 * mine.correct.mean(), abs=1e-4)
    confusion = pd.read_csv(out / "confusion.csv", index_col=0)
    assert confusion.to_numpy().sum() == 6 and confusion.to_numpy().trace() == preds.correct.sum()
    res = json.loads((out / "results.json").read_text())
    assert res["mean_class_top1"] == pytest.approx(per_class.top1.mean(), abs=1e-4)
    assert res["top1"] == round(res["top1"], 4) and res["top1"] == pytest.approx(100 * preds.correct.mean(), abs=1e-4)
    p = res["provenance"]
    import open_clip
    import torch

    assert (p["torch"], p["open_clip"]) == (torch.__version__, open_clip.__version__)
    assert p["command"].startswith("vifi eval --checkpoint") and p["device"].startswith("cpu")
    assert p["wall_time_s"] > 0 and re.fullmatch(r"[0-9a-f]{16}", p["config_sha256"])
    assert p["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", p["git_commit"])

    again = _vifi("eval", *small_eval, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    limited = _vifi("eval", *small_eval, "--out", out, "--overwrite", "--limit", "3")
    assert limited.returncode == 0, limited.stderr
    res = json.loads((out / "results.json").read_text())
    # 3 of 6, evenly spaced: v0, v2, v4 (one video of each class, not the first three lines)
    assert res["n_videos"] == 3 and res["limit"] == 3
    assert pd.read_csv(out / "predictions.csv")["video"].tolist() == ["v0.mp4", "v2.mp4", "v4.mp4"]
    assert res["provenance"]["config_sha256"] != p["config_sha256"]  # a different evaluation, a different hash
