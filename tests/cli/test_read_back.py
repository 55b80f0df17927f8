"""Results read back or replaced: a result is reused only when everything that produced it matches (model sha256,
model A, lists, root, videos, views, recipe and --set), and --overwrite swaps in the new result only once it is
complete. docs/reliability.md, "Results read back" and "Replacing an evaluation"."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.cli.test_wise_ft import models  # noqa: F401  (fixture: A and B checkpoints of one tiny architecture)
from vifi.errors import VifiError


def _data(demo_data):
    return dict(data=str(demo_data["val_list"]), labels=str(demo_data["labels"]), root=str(demo_data["root"]))


COMMON = dict(num_workers=0, show_progress=False, limit=2, device="cpu")


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


# ---- item 9: --overwrite replaces only a complete new result -----------------------------------------------------

def test_switching_between_plain_eval_and_wise_ft_leaves_nothing_of_the_previous_result(models, demo_data, tmp_path):
    from vifi.runs import run_eval
    from vifi.wise_ft import WiseFt, run_wise_ft_eval

    out, data = tmp_path / "ev", _data(demo_data)
    run_eval(str(models / "b.safetensors"), out=out, **data, **COMMON)
    assert (out / "confusion.csv").is_file()
    run_wise_ft_eval(WiseFt([0.0, 1.0], str(models / "a.safetensors"), "any"), str(models / "b.safetensors"),
                     out=out, overwrite=True, **data, **COMMON)
    top = sorted(p.name for p in out.iterdir())
    assert top == ["alpha-0", "alpha-1", "results.csv", "results.json", "results.md"], top  # no old confusion.csv
    run_eval(str(models / "b.safetensors"), out=out, overwrite=True, **data, **COMMON)
    assert not any(p.name.startswith("alpha-") for p in out.iterdir())  # the α folders went with the table
    assert "wise_ft" not in json.loads((out / "results.json").read_text())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary sibling left


def test_ctrl_c_during_wise_ft_overwrite_leaves_the_previous_result_whole(models, demo_data, tmp_path, monkeypatch):
    import vifi.runs
    from vifi.wise_ft import WiseFt, run_wise_ft_eval

    out, data = tmp_path / "ev", _data(demo_data)
    wise = WiseFt([0.0, 0.5, 1.0], str(models / "a.safetensors"), "any")
    run_wise_ft_eval(wise, str(models / "b.safetensors"), out=out, **data, **COMMON)
    before = _tree(out)
    real, calls = vifi.runs.evaluate_loaded, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second α is evaluated
        return real(*args, **kwargs)

    monkeypatch.setattr(vifi.runs, "evaluate_loaded", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_wise_ft_eval(WiseFt([0.25, 0.75], wise.zero_shot, "any"), str(models / "b.safetensors"), out=out,
                         overwrite=True, **data, **COMMON)
    assert _tree(out) == before  # every α folder and the table of the previous run, byte for byte
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_evaluation_into_a_training_run_folder_is_refused(tmp_path):
    from vifi.runs import check_eval_out

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "results.json").write_text("{}")
    with pytest.raises(VifiError, match="is a training run folder"):
        check_eval_out(tmp_path / "run", overwrite=True)  # the swap would take the run's checkpoints with it


# ---- item 8: protocol pieces read back only when made from the same inputs ----------------------------------------

def _zeroshot_suite(demo_data, checkpoint):
    from vifi.protocols.suite import DatasetSuite, Suite

    ds = DatasetSuite(root=str(demo_data["root"]), labels=str(demo_data["labels"]),
                      sets={"split1": str(demo_data["val_list"])})
    return Suite(protocol="zeroshot", checkpoint=str(checkpoint), datasets={"d": ds})


def _preds(out: Path) -> str:
    return (out / "d" / "split1" / "test" / "predictions.csv").read_text()


def test_a_protocol_rerun_with_another_checkpoint_or_changed_videos_evaluates_again(models, demo_data, tmp_path,
                                                                                    capsys):
    from vifi.protocols.report import run_and_report

    kw = dict(device="cpu", num_workers=0, show_progress=False)
    fresh_a, fresh_b = tmp_path / "fresh-a", tmp_path / "fresh-b"
    run_and_report(_zeroshot_suite(demo_data, models / "a.safetensors"), fresh_a, **kw)
    run_and_report(_zeroshot_suite(demo_data, models / "b.safetensors"), fresh_b, **kw)
    assert _preds(fresh_a) != _preds(fresh_b)  # the two models score differently on these videos
    out = tmp_path / "proto"
    run_and_report(_zeroshot_suite(demo_data, models / "a.safetensors"), out, **kw)
    capsys.readouterr()
    runs, _ = run_and_report(_zeroshot_suite(demo_data, models / "b.safetensors"), out, **kw)
    err = capsys.readouterr().err
    assert "made from other inputs (model)" in err and "evaluating again" in err, err
    assert _preds(out) == _preds(fresh_b)  # B's numbers, not A's read back
    result = json.loads((out / "results.json").read_text())
    assert result["runs"][0]["top1"] == json.loads((fresh_b / "results.json").read_text())["runs"][0]["top1"]
    assert "provenance" in result and result["provenance"]["command"]  # item 12: protocol results carry it too
    # The same command again reads back; a video touched since is a change.
    stamp = (out / "d" / "split1" / "test" / "results.json").stat().st_mtime_ns
    run_and_report(_zeroshot_suite(demo_data, models / "b.safetensors"), out, **kw)
    assert "evaluating again" not in capsys.readouterr().err
    assert (out / "d" / "split1" / "test" / "results.json").stat().st_mtime_ns == stamp
    video = Path(demo_data["root"]) / Path(demo_data["val_list"]).read_text().split()[0]
    st = video.stat()
    try:
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        run_and_report(_zeroshot_suite(demo_data, models / "b.safetensors"), out, **kw)
        assert "made from other inputs (videos)" in capsys.readouterr().err
    finally:
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))  # the demo data is shared by the whole session


def test_a_wise_ft_protocol_rerun_with_another_model_a_evaluates_again(models, demo_data, tmp_path, capsys):
    from vifi.protocols.suite import DatasetSuite, Suite
    from vifi.wise_ft import WiseFt, run_and_report_wise_ft

    suite = _zeroshot_suite(demo_data, models / "b.safetensors")
    kw = dict(device="cpu", num_workers=0, show_progress=False)
    out = tmp_path / "w"
    run_and_report_wise_ft(WiseFt([0.0], str(models / "a.safetensors"), "any"), suite, out, **kw)
    with_a = _preds(out / "alpha-0")
    result = json.loads((out / "results.json").read_text())
    assert result["wise_ft"]["a_sha256"] == hashlib.sha256((models / "a.safetensors").read_bytes()).hexdigest()
    capsys.readouterr()
    run_and_report_wise_ft(WiseFt([0.0], str(models / "b.safetensors"), "any"), suite, out, **kw)
    assert "made from other inputs (model)" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    run_and_report_wise_ft(WiseFt([1.0], str(models / "b.safetensors"), "any"), suite, fresh, **kw)
    assert _preds(out / "alpha-0") == _preds(fresh / "alpha-1") != with_a  # α = 0 is now B itself


def test_a_protocol_fine_tune_made_with_other_settings_is_refused_before_any_work(demo_data, tmp_path):
    from vifi.config import dump_config
    from vifi.protocols.runner import _train_config, check_fine_tunes, plan
    from vifi.protocols.suite import DatasetSuite, Suite
    from vifi.splits import make_kshot

    make_kshot(demo_data["train_list"], demo_data["labels"], tmp_path / "fs", shots=(1,))
    suite = Suite(protocol="fewshot", datasets={"d": DatasetSuite(
        root=str(demo_data["root"]), labels=str(demo_data["labels"]), splits=str(tmp_path / "fs"),
        val=str(demo_data["val_list"]), shots=[1])})
    units = plan(suite, train=True)
    out = tmp_path / "proto"
    run_dir = out / "d" / "K1" / "train"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(_train_config(units[0], ["train.lr=1e-5"])))
    check_fine_tunes(units, out, ["train.lr=1e-5", "data.num_workers=0"])  # same settings (+ a safe key): fine
    with pytest.raises(VifiError, match=r"train\.lr \(1e-05 there, 2e-05 now\)"):
        check_fine_tunes(units, out, ["train.lr=2e-5"])
    with pytest.raises(VifiError, match="fine-tuned with other settings"):
        check_fine_tunes(plan(Suite(protocol="fewshot", datasets={"d": DatasetSuite(
            root=str(demo_data["root"]), labels=str(demo_data["labels"]), splits=str(tmp_path / "fs"),
            val=str(demo_data["val_list"]), shots=[1], recipe="fewshot-ucf101")}), train=True), out,
            ["train.lr=1e-5"])
