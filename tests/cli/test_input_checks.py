"""Values the engine cannot run, typed flags, recipe names and unwritable outputs: one `error:` line naming the key
or flag, exit 2, before any work (no output folder made)."""

import os
from pathlib import Path

import pytest

from tests.conftest import vifi_in_process as _vifi  # in this process: a new one costs seconds of imports a call
from vifi.config import load_config
from vifi.errors import VifiError



def _error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


BOUNDS = ["train.lr=nan", "train.lr=-1", "train.warmup_epochs=-3", "train.mixup=5", "train.eval_every=0",
          "eval.clips=0", "eval.crops=2", "data.frames=0", "data.input_size=0", "data.num_workers=-1",
          "train.keep_last=0", "train.cutmix=1.5", "train.label_smoothing=1", "eval.final_crops=2",
          "train.checkpointing=foo", "train.checkpointing=-2", "train.checkpointing=1.5"]


@pytest.mark.parametrize("value", ["foo", "-2", "1.5"])
def test_checkpointing_error_names_every_accepted_form(value):
    with pytest.raises(VifiError, match="must be true, false, auto or a number of image-tower blocks"):
        load_config("demo", [f"train.checkpointing={value}"])
    for ok, expected in (("auto", "auto"), ("3", 3), ("true", True), ("false", False)):
        assert load_config("demo", [f"train.checkpointing={ok}"]).train.checkpointing == expected


@pytest.mark.parametrize("item", BOUNDS)
def test_config_bound_is_refused_naming_the_key(item):
    with pytest.raises(VifiError, match=f"bad value for '{item.split('=')[0]}'"):
        load_config("demo", [item])


def test_values_inside_the_bounds_are_accepted():
    cfg = load_config("demo", ["train.lr=1e-5", "train.warmup_epochs=0", "train.mixup=0", "eval.crops=3",
                               "data.num_workers=0", "train.keep_last=1", "train.eval_every=1"])
    assert (cfg.train.lr, cfg.eval.crops, cfg.data.num_workers) == (1e-5, 3, 0)
    assert load_config("demo", ["train.lr=0"]).train.lr == 0  # the README's untrained baseline run


@pytest.mark.parametrize("item", ["train.lr=nan", "eval.crops=2", "train.eval_every=0"])
def test_config_bound_on_the_command_line_fails_before_any_work(item, tmp_path):
    out = tmp_path / "out"
    line = _error_line(_vifi("finetune", "demo", "--set", item, "--out", out))
    assert item.split("=")[0] in line
    assert not out.exists()


def _ckpt(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"not read: the flags are checked first")
    return path


FLAGS = {
    "--frames -1": lambda t: ["eval", "--checkpoint", _ckpt(t), "--data", "d", "--labels", "l", "--root", t,
                              "--out", t / "o", "--frames", "-1"],
    "--frames 0": lambda t: ["zeroshot", _ckpt(t), "--labels", "a,b", "--frames", "0"],
    "--batch 0": lambda t: ["eval", "--checkpoint", _ckpt(t), "--data", "d", "--labels", "l", "--root", t,
                            "--out", t / "o", "--batch", "0"],
    "--workers -1": lambda t: ["eval", "--checkpoint", _ckpt(t), "--data", "d", "--labels", "l", "--root", t,
                               "--out", t / "o", "--workers", "-1"],
    "--device tpu": lambda t: ["finetune", "demo", "--device", "tpu", "--out", t / "o"],
    "--template": lambda t: ["zeroshot", _ckpt(t), "--labels", "a,b", "--template", "{} and {}"],
}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_bad_flag_value_is_refused_naming_the_flag(name, tmp_path):
    line = _error_line(_vifi(*FLAGS[name](tmp_path)))
    assert name.split()[0] in line, line
    assert not (tmp_path / "o").exists()


def test_typed_flags_set_values_as_given_not_parsed_as_yaml():
    cfg = load_config("demo", ["train.seed=3"], {"data.root": "2024", "data.labels": "#labels.csv",
                                                 "data.train_list": "a: b", "data.val_list": None})
    assert (cfg.data.root, cfg.data.labels, cfg.data.train_list, cfg.data.val_list) == \
        ("2024", "#labels.csv", "a: b", None)
    assert cfg.train.seed == 3  # --set strings are still parsed


def test_root_named_like_a_number_reaches_the_file_check(demo_data, tmp_path):
    line = _error_line(_vifi("finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"],
                             "--labels", demo_data["labels"], "--root", "2024", "--out", tmp_path / "o",
                             cwd=tmp_path))
    assert "video root not found: 2024" in line


def test_root_that_is_a_file_is_called_a_file(demo_data, tmp_path):
    line = _error_line(_vifi("finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"],
                             "--labels", demo_data["labels"], "--root", demo_data["labels"], "--out", tmp_path / "o"))
    assert "is a file" in line and "not found" not in line


def test_a_folder_named_like_the_recipe_does_not_hide_it(tmp_path):
    (tmp_path / "demo").mkdir()  # e.g. left by `vifi finetune demo --out demo`
    line = _error_line(_vifi("finetune", "demo", "--set", "train.lr=-1", "--out", "x", cwd=tmp_path))
    assert "train.lr" in line and "in demo" in line  # the recipe was read; the folder was not taken for a file
    assert "config file not found" in _error_line(_vifi("finetune", "nope.yaml", cwd=tmp_path))


# ---- --out that cannot be written: refused before computing ------------------------------------------------------

def _outs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return blocker


OUT_CASES = {
    "finetune under a file": lambda t, b: ["finetune", "demo", "--out", b / "run"],
    "eval under a file": lambda t, b: ["eval", "--checkpoint", _ckpt(t), "--data", "d", "--labels", "l",
                                       "--root", t, "--out", b / "o"],
    "eval out is a file": lambda t, b: ["eval", "--checkpoint", _ckpt(t), "--data", "d", "--labels", "l",
                                        "--root", t, "--out", b],
    "zeroshot under a file": lambda t, b: ["zeroshot", _ckpt(t), "--labels", "a,b", "--out", b / "x.csv"],
    "eval protocol under a file": lambda t, b: ["eval", "--protocol", "zeroshot", "--root", t, "--out", b / "o"],
    "viz attention under a file": lambda t, b: ["viz", "attention", _video(t), "--checkpoint", _ckpt(t),
                                                "--out", b / "viz"],
    "viz tsne under a file": lambda t, b: ["viz", "tsne", "--data", "d", "--labels", "l", "--root", t,
                                           "--checkpoint", _ckpt(t), "--out", b / "viz"],
    "viz curves under a file": lambda t, b: ["viz", "curves", t, "--out", b / "viz"],
    "viz confusion under a file": lambda t, b: ["viz", "confusion", t, "--out", b / "viz"],
}


def test_dash_is_refused_where_a_folder_is_written(tmp_path):
    line = _error_line(_vifi("eval", "--checkpoint", _ckpt(tmp_path), "--data", "d", "--labels", "l", "--root",
                             tmp_path, "--out", "-", cwd=tmp_path))
    assert "--out -" in line and "folder" in line
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("name", sorted(OUT_CASES))
def test_out_under_a_regular_file_is_refused_first(name, tmp_path):
    blocker = _outs(tmp_path)
    line = _error_line(_vifi(*OUT_CASES[name](tmp_path, blocker)))
    assert "--out" in line and str(blocker) in line, line
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("command", ["finetune", "eval", "zeroshot"])
def test_out_in_a_read_only_folder_is_refused_first(command, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes here (the under-a-file cases still run)")
        args = {"finetune": ["finetune", "demo", "--out", locked / "run"],
                "eval": ["eval", "--checkpoint", _ckpt(tmp_path), "--data", "d", "--labels", "l", "--root", tmp_path,
                         "--out", locked / "o"],
                "zeroshot": ["zeroshot", _ckpt(tmp_path), "--labels", "a,b", "--out", locked / "x.csv"]}[command]
        line = _error_line(_vifi(*args))
        assert "no permission" in line and str(locked) in line
    finally:
        locked.chmod(0o755)


# /proc takes no new files even for root, and statvfs does not call it read-only: only trying to create one tells.
PROC_CASES = {
    "finetune": lambda t: ["finetune", "demo", "--out", "/proc/vifi-run"],
    "zeroshot": lambda t: ["zeroshot", _video(t), "--checkpoint", _ckpt(t), "--labels", "a,b", "--out", "/proc/x.csv"],
    "merge": lambda t: ["merge", _ckpt(t), _ckpt(t), "--alpha", "0.5", "--out", "/proc/x.safetensors"],
    "index": lambda t: ["index", _video(t), "--checkpoint", _ckpt(t), "--out", "/proc/vifi-index"],
}


def _video(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"not decoded: the output is checked first")
    return path


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("command", sorted(PROC_CASES))
def test_out_where_no_file_can_be_created_is_refused_first(command, tmp_path):
    line = _error_line(_vifi(*PROC_CASES[command](tmp_path)))
    assert "--out" in line and "/proc" in line, line
