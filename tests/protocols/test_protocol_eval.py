"""`vifi eval --protocol`: the arithmetic of the aggregated tables, and whole protocols on the demo data."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vifi.errors import VifiError
from vifi.protocols.aggregate import harmonic_mean, mean_std, summarise


def test_harmonic_mean_and_mean_std_hand_computed():
    assert harmonic_mean(80.0, 50.0) == pytest.approx(2 * 80 * 50 / 130)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert round(harmonic_mean(76.4, 61.1), 1) == 67.9  # the paper's K400 row (SPEC §4.2)
    assert mean_std([70.0, 80.0, 90.0]) == (80.0, 10.0)
    assert mean_std([42.0]) == (42.0, 0.0)
    m, s = mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3) and s == pytest.approx(((16 / 9 + 1 / 9 + 25 / 9) / 2) ** 0.5)


def test_base2novel_hm_comes_from_seed_averaged_accuracies():
    runs = pd.DataFrame({"dataset": ["ucf"] * 3, "seed": [1, 2, 3], "base_top1": [90.0, 60.0, 90.0],
                         "novel_top1": [30.0, 90.0, 60.0]})
    row = summarise("base2novel", runs).iloc[0]
    assert row["base"] == "80.00 ± 17.32" and row["novel"] == "60.00 ± 30.00"
    assert row["HM"] == round(2 * 80 * 60 / 140, 2)  # 68.57; the mean of per-seed HMs would be 60.0
    per_seed = [harmonic_mean(b, n) for b, n in zip(runs.base_top1, runs.novel_top1)]
    assert abs(sum(per_seed) / 3 - row["HM"]) > 5


def test_zeroshot_summary_per_dataset():
    runs = pd.DataFrame({"dataset": ["hmdb51"] * 3 + ["ucf101"] * 3, "split": ["split1", "split2", "split3"] * 2,
                         "top1": [50.0, 52.0, 54.0, 70.0, 70.0, 70.0], "top5": [80.0] * 6})
    table = summarise("zeroshot", runs)
    assert table["top1"].tolist() == ["52.00 ± 2.00", "70.00 ± 0.00"]


def test_a_single_seed_or_split_shows_just_the_value():
    one = summarise("base2novel", pd.DataFrame({"dataset": ["ucf101"], "seed": [1], "base_top1": [80.0],
                                                "novel_top1": [60.0]}))
    assert (one["base"][0], one["novel"][0]) == ("80.00", "60.00")  # no "± 0.00": one value has no spread
    assert summarise("zeroshot", pd.DataFrame({"dataset": ["hmdb51"], "split": ["split1"], "top1": [50.0],
                                               "top5": [80.0]}))["top1"][0] == "50.00"


@pytest.fixture
def b2n_splits(demo_data, tmp_path):
    from vifi.splits import make_base2novel

    make_base2novel(demo_data["train_list"], demo_data["val_list"], demo_data["labels"], tmp_path / "b2n", shots=2)
    return tmp_path / "b2n"


def test_base2novel_protocol_trains_three_seeds_and_writes_the_aggregated_table(b2n_splits, demo_data, tmp_path,
                                                                                  capsys):
    from vifi.protocols.report import run_and_report
    from vifi.protocols.suite import DatasetSuite, Suite

    suite = Suite(protocol="base2novel", datasets={"demo": DatasetSuite(root=str(demo_data["root"]), splits=str(b2n_splits),
                                                                        recipe="demo")})
    overrides = ["train.epochs=1", "train.global_batch=6", "train.micro_batch=3", "data.num_workers=0"]
    out = tmp_path / "proto"
    runs, summary = run_and_report(suite, out, train=True, overrides=overrides, device="cpu", num_workers=0)
    assert runs["seed"].tolist() == [1, 2, 3]
    assert (runs["base_videos"] == 6).all() and (runs["novel_videos"] == 6).all()  # 3 classes x 2 test videos
    for seed in (1, 2, 3):
        train = json.loads((out / "demo" / f"seed{seed}" / "train" / "results.json").read_text())
        novel = json.loads((out / "demo" / f"seed{seed}" / "novel" / "results.json").read_text())
        row = runs[runs.seed == seed].iloc[0]
        assert row["base_top1"] == round(train["top1"], 2) and row["novel_top1"] == round(novel["top1"], 2)
        assert train["reported"] == "last epoch"
    b, n = runs["base_top1"].mean(), runs["novel_top1"].mean()
    result = json.loads((out / "results.json").read_text())
    assert result["summary"][0]["HM"] == round(harmonic_mean(b, n), 2)
    assert "HM" in (out / "results.md").read_text()
    assert pd.read_csv(out / "runs.csv")["base_top1"].tolist() == runs["base_top1"].tolist()

    # the same command again continues the chain: nothing is retrained or re-evaluated
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    capsys.readouterr()
    again, _ = run_and_report(suite, out, train=True, overrides=overrides, device="cpu", num_workers=0)
    assert capsys.readouterr().err.count("training already finished") == 3  # notices go to stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
    assert again["novel_top1"].tolist() == runs["novel_top1"].tolist()


def test_zeroshot_suite_file_runs_every_split_and_checks_completeness(demo_data, tmp_path, tiny_model):
    import yaml

    from vifi.model.checkpoint import save_weights
    from vifi.protocols.report import run_and_report
    from vifi.protocols.suite import check_complete, load_suite

    save_weights(tmp_path / "m.safetensors", tiny_model, {"frames": 4, "input_size": 64})
    ds = {"root": str(demo_data["root"]), "labels": str(demo_data["labels"]),
          "sets": {f"split{k}": str(demo_data["val_list"]) for k in (1, 2, 3)}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(
        {"protocol": "zeroshot", "checkpoint": "m.safetensors", "datasets": {"hmdb51": ds, "ucf101": ds}}))
    suite = load_suite(tmp_path / "suite.yaml")
    with pytest.raises(VifiError, match="lacks k600"):
        check_complete(suite, partial=False)
    assert check_complete(suite, partial=True) == ["k600"]
    runs, summary = run_and_report(suite, tmp_path / "zs", device="cpu", num_workers=0)
    assert len(runs) == 6 and (runs["videos"] == 12).all()
    assert summary["dataset"].tolist() == ["hmdb51", "ucf101"]
    assert summary["top1"].tolist()[0].endswith("± 0.00")  # the same list three times: no spread


def test_overlapping_base_and_novel_is_refused(b2n_splits, demo_data):
    from vifi.protocols.runner import plan, validate_inputs
    from vifi.protocols.suite import DatasetSuite, Suite

    base = (b2n_splits / "base_labels.csv").read_text()
    (b2n_splits / "novel_labels.csv").write_text(base)
    suite = Suite(protocol="base2novel", datasets={"demo": DatasetSuite(root=str(demo_data["root"]), splits=str(b2n_splits),
                                                                        checkpoints={"1": "a", "2": "b", "3": "c"})})
    with pytest.raises(VifiError, match="overlap"):
        validate_inputs(plan(suite, train=False))
