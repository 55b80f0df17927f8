"""Bad input: one `error:` line, exit code 2, and no existing file modified."""

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import vifi_in_process as _vifi  # in this process: a new one costs seconds of imports a call



def _hashes(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path, demo_data):
    """A writable copy of the small demo dataset plus a few broken files."""
    root = tmp_path / "data"
    shutil.copytree(Path(demo_data["root"]).parent, root)
    (root / "bad_label.txt").write_text("red_circle_sliding_across/train_000.mp4 17\n")
    (root / "malformed.txt").write_text("red_circle_sliding_across/train_000.mp4 0\njust-a-path\n")
    (root / "missing.txt").write_text("nowhere/x.mp4 0\n")
    (root / "empty.txt").write_text("\n")
    (root / "bad.yaml").write_text("data: [unclosed\n")
    (root / "unknown_key.yaml").write_text("train:\n  learning_rate: 1\n")
    (root / "wrong_type.yaml").write_text("train:\n  epochs: many\n")
    (root / "nolabels.csv").write_text("id,label\n0,x\n")
    (root / "corrupt.mp4").write_bytes(b"\x00" * 100)
    (root / "corrupt.txt").write_text("corrupt.mp4 0\n")
    (root / "suite.yaml").write_text("protocol: zeroshot\ncheckpoint: x.safetensors\ndatasets:\n  hmdb51:\n"
                                     "    root: videos\n    labels: labels.csv\n    sets: {split1: test.txt}\n")
    (root / "bad_suite.yaml").write_text("protocol: zeroshot\ndatasets: {hmdb51: {root: v, colour: red}}\n")
    return root


def _common(d):
    return ["--labels", d / "labels.csv", "--root", d / "videos"]


CASES = {
    "unknown recipe": lambda d, o: ["finetune", "no-such-recipe", "--out", o],
    "malformed yaml": lambda d, o: ["finetune", d / "bad.yaml", "--out", o],
    "unknown key": lambda d, o: ["finetune", d / "unknown_key.yaml", "--out", o],
    "wrong type": lambda d, o: ["finetune", d / "wrong_type.yaml", "--out", o],
    "non-numeric --set": lambda d, o: ["finetune", "demo", "--set", "train.lr=fast", "--out", o],
    "--set without =": lambda d, o: ["finetune", "demo", "--set", "train.lr", "--out", o],
    "--set unknown key": lambda d, o: ["finetune", "demo", "--set", "train.nope=1", "--out", o],
    "label out of range": lambda d, o: ["finetune", "demo", "--data", d / "bad_label.txt", "--val", d / "test.txt",
                                        *_common(d), "--out", o],
    "malformed line": lambda d, o: ["finetune", "demo", "--data", d / "malformed.txt", "--val", d / "test.txt",
                                    *_common(d), "--out", o],
    "missing video": lambda d, o: ["finetune", "demo", "--data", d / "missing.txt", "--val", d / "test.txt",
                                   *_common(d), "--out", o],
    "empty list": lambda d, o: ["finetune", "demo", "--data", d / "empty.txt", "--val", d / "test.txt",
                                *_common(d), "--out", o],
    "missing list": lambda d, o: ["finetune", "demo", "--data", d / "nope.txt", "--val", d / "test.txt",
                                  *_common(d), "--out", o],
    "label csv without name column": lambda d, o: ["eval", "--checkpoint", d / "x.safetensors", "--data",
                                                   d / "test.txt", "--labels", d / "nolabels.csv", "--root",
                                                   d / "videos", "--out", o],
    "missing checkpoint": lambda d, o: ["eval", "--checkpoint", d / "x.safetensors", "--data", d / "test.txt",
                                        *_common(d), "--out", o],
    "checkpoint not safetensors": lambda d, o: ["eval", "--checkpoint", d / "labels.csv", "--data", d / "test.txt",
                                                *_common(d), "--out", o],
    "bad views": lambda d, o: ["eval", "--checkpoint", d / "labels.csv", "--data", d / "test.txt", *_common(d),
                               "--views", "2by2", "--out", o],
    "real arch without weights": lambda d, o: ["finetune", "demo", "--set", "model.arch=ViT-B-16", "--out", o],
    "missing clip file": lambda d, o: ["finetune", "demo", "--clip", d / "ViT-B-16.pt", "--out", o],
    "input size the architecture does not take": lambda d, o: ["finetune", "demo", "--set", "data.input_size=32",
                                                               "--out", o],
    "global batch too large": lambda d, o: ["finetune", "demo", "--set", "train.global_batch=600", "--set",
                                            "train.micro_batch=6", "--out", o],
    "micro batch does not divide": lambda d, o: ["finetune", "demo", "--set", "train.micro_batch=5", "--out", o],
    "resume without run": lambda d, o: ["finetune", "demo", "--resume", "--out", o],
    "cuda on cpu machine": lambda d, o: ["finetune", "demo", "--device", "cuda", "--out", o],
    "out is a file": lambda d, o: ["finetune", "demo", "--out", d / "labels.csv"],
    "eval out is a file": lambda d, o: ["eval", "--checkpoint", d / "x.safetensors", "--data", d / "test.txt",
                                        *_common(d), "--out", d / "test.txt"],
    "splits without a training list": lambda d, o: ["splits", "make", "base2novel", "--val", d / "test.txt",
                                                    "--labels", d / "labels.csv", "--out", o],
    "K larger than a class": lambda d, o: ["splits", "make", "fewshot", "--train", d / "train.txt", "--labels",
                                           d / "labels.csv", "--shots", "99", "--out", o],
    "unknown split protocol": lambda d, o: ["splits", "make", "tenfold", "--train", d / "train.txt", "--labels",
                                            d / "labels.csv", "--out", o],
    "unknown eval protocol": lambda d, o: ["eval", "--protocol", "bogus", "--root", d / "videos", "--out", o],
    "protocol without checkpoint": lambda d, o: ["eval", "--protocol", "zeroshot", "--data", d / "test.txt",
                                                 *_common(d), "--out", o],
    "protocol suite lacks a dataset": lambda d, o: ["eval", "--suite", d / "suite.yaml", "--out", o],
    "suite with unknown key": lambda d, o: ["eval", "--suite", d / "bad_suite.yaml", "--out", o],
    "base2novel without splits": lambda d, o: ["eval", "--protocol", "base2novel", "--root", d / "videos",
                                               "--checkpoint", "a,b,c", "--out", o],
    "prompt without bridge": lambda d, o: ["prompt", "demo", "--set", "model.prompt.text_tokens=4", "--set",
                                           "model.prompt.text_depth=1", "--out", o],
    "prompt on a prompt-less recipe": lambda d, o: ["finetune", "demo", "--train", "prompt", "--out", o],
    "zeroshot empty labels": lambda d, o: ["zeroshot", d / "videos", "--labels", " , "],
    "zeroshot missing video": lambda d, o: ["zeroshot", d / "nope.mp4", "--labels", "a,b"],
    "export of a missing file": lambda d, o: ["export", d / "nope.pth", "--out", o / "x.safetensors"],
    "export of a non-checkpoint": lambda d, o: ["export", d / "labels.csv", "--out", o / "x.safetensors"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_clear_line_and_changes_nothing(name, data, tmp_path):
    if name == "cuda on cpu machine":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    out = tmp_path / "out"
    args = CASES[name](data, out)
    before = _hashes(data)
    proc = _vifi(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert _hashes(data) == before


@pytest.mark.parametrize("name", ["real arch without weights", "missing clip file", "prompt without bridge",
                                  "micro batch does not divide", "input size the architecture does not take"])
def test_weights_and_batch_errors_come_before_the_data_is_touched(name, data, tmp_path, monkeypatch):
    """Refused before the demo videos are generated (seconds; for a real dataset, the val set's decode check takes
    minutes) and before the run folder is made."""
    import vifi.data.demo

    def generate_demo(*args, **kwargs):
        raise AssertionError("the demo data was generated before the refusal")

    monkeypatch.setattr(vifi.data.demo, "generate_demo", generate_demo)
    out = tmp_path / "out"
    proc = _vifi(*CASES[name](data, out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_clip_weights_that_take_another_input_size_are_one_line_not_a_crash(data, tmp_path):
    """The architecture of a weight file is known once it is read: still one line (was a traceback at the first
    step), and the run folder is not left behind."""
    import copy

    import torch

    from vifi.model.backbone import TINY_CLIP, build_clip

    cfg = copy.deepcopy(TINY_CLIP)
    cfg["vision_cfg"]["head_width"], cfg["text_cfg"]["heads"] = 64, 1  # OpenAI layout: shapes give the arch
    torch.save(build_clip(cfg).state_dict(), tmp_path / "clip.pt")
    out = tmp_path / "out"
    proc = _vifi("finetune", "demo", "--clip", tmp_path / "clip.pt", "--set", "data.input_size=32", "--data",
                 data / "train.txt", "--val", data / "test.txt", *_common(data), "--out", out)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"--clip {tmp_path / 'clip.pt'} takes 64×64 crops" in proc.stderr and "data.input_size=64" in proc.stderr
    assert not out.exists()


def test_corrupt_video_in_eval_names_the_file(data, tmp_path, tiny_model):
    from vifi.model.checkpoint import save_weights

    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, tiny_model, {"frames": 4, "input_size": 64})
    proc = _vifi("eval", "--checkpoint", ckpt, "--data", data / "corrupt.txt", "--labels", data / "labels.csv",
                 "--root", data, "--out", tmp_path / "o", "--workers", "0")
    assert proc.returncode == 2 and "corrupt.mp4" in proc.stderr, proc.stderr


def test_eval_reports_every_undecodable_video_and_scores_the_rest_only_when_asked(data, tmp_path, tiny_model):
    import json

    from vifi.model.checkpoint import save_weights

    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, tiny_model, {"frames": 4, "input_size": 64})
    good = (data / "test.txt").read_text().splitlines()
    mixed = data / "mixed.txt"
    mixed.write_text("\n".join(good[:3] + ["corrupt.mp4 0"] + good[3:5]) + "\n")
    args = ["eval", "--checkpoint", ckpt, "--data", mixed, "--labels", data / "labels.csv", "--root", data / "videos",
            "--workers", "0"]
    shutil.copy(data / "corrupt.mp4", data / "videos" / "corrupt.mp4")
    refused = _vifi(*args, "--out", tmp_path / "refused")
    assert refused.returncode == 2 and "1 of 6 videos could not be decoded" in refused.stderr, refused.stderr
    assert not (tmp_path / "refused" / "results.json").exists()
    allowed = _vifi(*args, "--out", tmp_path / "allowed", "--skip-undecodable")
    assert allowed.returncode == 0, allowed.stderr
    res = json.loads((tmp_path / "allowed" / "results.json").read_text())
    assert res["n_videos"] == 5 and res["n_failed"] == 1
    assert (tmp_path / "allowed" / "failed.txt").read_text().startswith("corrupt.mp4\t")


def test_vanilla_eval_of_plain_clip_weights_equals_the_same_weights_as_a_checkpoint(data, tmp_path):
    import copy
    import json

    import torch

    from vifi.model.backbone import TINY_CLIP, build_clip
    from vifi.model.checkpoint import save_weights
    from vifi.model.vifi_clip import ViFiCLIP

    cfg = copy.deepcopy(TINY_CLIP)
    cfg["vision_cfg"]["head_width"], cfg["text_cfg"]["heads"] = 64, 1  # OpenAI layout: shapes give the arch
    torch.manual_seed(3)
    model = ViFiCLIP(build_clip(cfg), cfg, "frozen")
    torch.save(model.clip.state_dict(), tmp_path / "clip.pt")
    save_weights(tmp_path / "same.safetensors", model, {"frames": 4, "input_size": 64})
    common = ["--data", data / "test.txt", "--labels", data / "labels.csv", "--root", data / "videos", "--vanilla",
              "--frames", "4", "--workers", "0"]
    plain = _vifi("eval", "--clip", tmp_path / "clip.pt", *common, "--out", tmp_path / "plain")
    ckpt = _vifi("eval", "--checkpoint", tmp_path / "same.safetensors", *common, "--out", tmp_path / "ckpt")
    assert plain.returncode == 0 and ckpt.returncode == 0, plain.stderr + ckpt.stderr
    assert (tmp_path / "plain" / "predictions.csv").read_text() == (tmp_path / "ckpt" / "predictions.csv").read_text()
    assert json.loads((tmp_path / "plain" / "results.json").read_text())["text"] == "bare class names"
