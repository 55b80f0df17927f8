"""stdout carries only the results asked for (real shell pipes); everything else goes to stderr; --quiet; --json."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ramp_frames, write_video
from vifi.model.checkpoint import save_weights

VIFI = f"{shlex.quote(sys.executable)} -m vifi"


def _vifi(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=300)


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    for name, level in (("dark", 0), ("mid", 8), ("bright", 16)):
        write_video(folder / f"{name}.mp4", ramp_frames(12, 48, 64)[level // 8:level // 8 + 8] + level)
    return folder


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    path = tmp_path / "tiny.safetensors"
    save_weights(path, tiny_model, {"frames": 4, "input_size": 64, "template": "a photo of a {}."})
    return path


def test_zeroshot_csv_flows_through_a_shell_pipe_into_sort(tmp_path, clips, checkpoint):
    # The command, as a user types it: ls … | vifi zeroshot - --out - | sort
    cmd = (f"set -o pipefail; cd {shlex.quote(str(tmp_path))} && ls clips/*.mp4 | {VIFI} zeroshot - "
           f"--labels 'a,b,c' --checkpoint {shlex.quote(str(checkpoint))} --out - | sort -t, -k3 -r")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # Only CSV reached sort: the header and 3 videos x 3 labels, nothing else (no table, no notices).
    assert "video,label,prob" in lines and len(lines) == 1 + 9
    rows = [line.split(",") for line in lines if line != "video,label,prob"]
    assert {r[0] for r in rows} == {f"clips/{n}.mp4" for n in ("dark", "mid", "bright")}
    probs = [float(r[2]) for r in rows]
    assert probs == sorted(probs, reverse=True)
    # Same numbers as the file output of the same command.
    direct = _vifi("zeroshot", *sorted(clips.glob("*.mp4")), "--labels", "a,b,c", "--checkpoint", checkpoint,
                   "--out", tmp_path / "direct.csv")
    assert direct.returncode == 0, direct.stderr
    table = pd.read_csv(tmp_path / "direct.csv")
    assert sorted(table["prob"].round(6)) == sorted(probs)
    assert "top-3 labels per video" in proc.stderr  # the human table moved to stderr


def test_zeroshot_json_prints_only_the_json(clips, checkpoint):
    proc = _vifi("zeroshot", clips, "--labels", "a,b,c", "--checkpoint", checkpoint, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # the whole of stdout parses: nothing else was printed there
    assert [r["video"] for r in result] == [str(p) for p in sorted(clips.glob("*.mp4"))]
    for r in result:
        assert sum(x["prob"] for x in r["labels"]) == pytest.approx(1.0, abs=1e-5)
    assert "top-3 labels per video" in proc.stderr


def test_eval_json_and_quiet(tmp_path, clips, checkpoint):
    (tmp_path / "labels.csv").write_text("id,name\n0,dark\n1,mid\n2,bright\n")
    (tmp_path / "test.txt").write_text("dark.mp4 0\nmid.mp4 1\nbright.mp4 2\n")
    common = ["--checkpoint", checkpoint, "--data", tmp_path / "test.txt", "--labels", tmp_path / "labels.csv",
              "--root", clips, "--workers", "0"]
    proc = _vifi("eval", *common, "--out", tmp_path / "a", "--json")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == json.loads((tmp_path / "a" / "results.json").read_text())
    assert printed["n_videos"] == 3
    plain = _vifi("eval", *common, "--out", tmp_path / "b")
    assert "eval: 3/3" in plain.stderr and "eval:" not in plain.stdout  # progress on stderr, table on stdout
    assert "top1" in plain.stdout
    quiet = _vifi("--quiet", "eval", *common, "--out", tmp_path / "c")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "top1" in quiet.stdout


def test_bench_json_prints_one_json_line():
    proc = _vifi("bench", "eval", "--device", "cpu", "--arch", "tiny", "--frames", "2", "--classes", "4",
                 "--batch", "1", "--steps", "1", "--warmup", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    assert json.loads(proc.stdout)["kind"] == "eval"
    assert "bench eval" in proc.stderr


def test_boolean_flags_show_no_value_placeholder():
    proc = _vifi("zeroshot", "--help")
    line = next(l for l in proc.stdout.splitlines() if "--vanilla" in l)
    assert "<bool>" not in line and "bare labels" in line
    assert "<bool>" not in _vifi("--help").stdout


def test_version_prints_the_installed_number():
    from vifi import __version__

    proc = _vifi("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"vifi {__version__}"


@pytest.mark.slow
def test_under_torchrun_only_rank_0_prints_and_no_deprecation_warning(tmp_path, demo_data):
    args = ["finetune", "demo", "--data", demo_data["train_list"], "--val", demo_data["val_list"], "--labels",
            demo_data["labels"], "--root", demo_data["root"], "--out", tmp_path / "ddp", "--micro-batch", "3",
            "--set", "train.epochs=1", "--set", "data.frames=2", "--set", "data.num_workers=0",
            "--set", "train.log_every=1"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           "29541", "-m", "vifi", *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FutureWarning" not in proc.stderr and "Warning" not in proc.stdout
    # One final-evaluation line and one results table, not one per rank.
    assert proc.stderr.count("epoch 1: top1") == 1, proc.stderr
    assert proc.stdout.count("final evaluation") == 1, proc.stdout
    assert "epoch 1/1" not in proc.stdout  # progress never on stdout


@pytest.mark.parametrize("where", ["before", "after", "middle", "group"])
def test_quiet_is_accepted_anywhere_on_the_command_line(tmp_path, demo_data, where):
    # A val list missing a class makes `splits make fewshot` print a notice; --quiet silences it wherever it stands.
    val = tmp_path / "val.txt"
    val.write_text("".join(l + "\n" for l in Path(demo_data["val_list"]).read_text().splitlines()
                           if not l.endswith(" 2")))
    rest = ["--train", demo_data["train_list"], "--labels", demo_data["labels"], "--shots", "1", "--val", val,
            "--out", tmp_path / "out"]
    args = {"before": ["--quiet", "splits", "make", "fewshot", *rest],
            "after": ["splits", "make", "fewshot", *rest, "--quiet"],
            "middle": ["splits", "make", "-q", "fewshot", *rest],
            "group": ["splits", "--quiet", "make", "fewshot", *rest]}[where]
    proc = _vifi(*args)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "out" / "train_few_shot_1.txt").is_file()
    loud = _vifi("splits", "make", "fewshot", *rest[:-1], tmp_path / "loud")
    assert loud.returncode == 0 and "notice: 1 of 6 classes have no video" in loud.stderr


def test_quiet_after_the_subcommand_does_not_swallow_an_option_value(tmp_path, demo_data):
    # `--out -q` names a folder called "-q" (click reads the value first); quiet stays off.
    proc = subprocess.run([sys.executable, "-m", "vifi", "splits", "make", "fewshot", "--train",
                           str(demo_data["train_list"]), "--labels", str(demo_data["labels"]), "--shots", "1",
                           "--out", "-q"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and "fewshot: K = 1" in proc.stderr
    assert (tmp_path / "-q" / "train_few_shot_1.txt").is_file()
