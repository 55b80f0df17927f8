"""An output swap (vifi/outfolder.py, used by prepare, splits and evaluation outputs) killed at each of its steps:
the next run finishes or rolls it back, says so in one notice, and never leaves two versions."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vifi.outfolder import leftovers, recover, staged_folder
from vifi.splits import make_kshot

# Writes version 2 of OUT over version 1 with staged_folder, and dies (os._exit: no clean-up code runs, as with
# kill -9) at the given step of the swap.
KILLED_SWAP = """
import os, shutil, sys
from pathlib import Path
import vifi.outfolder as of

out, step = Path(sys.argv[1]), sys.argv[2]
real_replace, real_rmtree, real_sibling = of.os.replace, of.shutil.rmtree, of._sibling
calls = {"replace": 0}

def sibling(out, kind):
    made = real_sibling(out, kind)
    if kind == "old" and step == "after-old-made":
        os._exit(9)
    return made

def replace(src, dst):
    calls["replace"] += 1
    if step == "before-old-moved" and calls["replace"] == 1:
        os._exit(9)
    real_replace(src, dst)
    if step == "after-old-moved" and calls["replace"] == 1:
        os._exit(9)
    if step == "after-new-moved" and calls["replace"] == 2:
        os._exit(9)

def rmtree(path, ignore_errors=False):
    if step == "old-half-deleted":
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        files[0].unlink()
        os._exit(9)
    real_rmtree(path, ignore_errors=ignore_errors)

of._sibling, of.shutil.rmtree = sibling, rmtree
of.os.replace = replace  # the module's os is the real os: patch it only in this doomed process
with of.staged_folder(out, "--out", True, "record.json") as tmp:
    (tmp / "record.json").write_text("2")
    (tmp / "a.txt").write_text("new a")
    if step == "while-building":
        os._exit(9)
"""

STEPS = {  # step -> the version in place once the next run has recovered
    "while-building": "1", "after-old-made": "1", "before-old-moved": "1", "after-old-moved": "1",
    "after-new-moved": "2", "old-half-deleted": "2",
}


def _version_1(out: Path) -> None:
    out.mkdir()
    (out / "record.json").write_text("1")
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")


@pytest.mark.parametrize("step", list(STEPS))
def test_a_swap_killed_at_each_step_is_finished_or_rolled_back_with_one_notice(tmp_path, step, capsys):
    out = tmp_path / "out"
    _version_1(out)
    proc = subprocess.run([sys.executable, "-c", KILLED_SWAP, str(out), step], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert leftovers(out), "the kill left no temporary sibling: the step was not reached"
    recover(out)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # one version, no hidden sibling
    version = (out / "record.json").read_text()
    assert version == STEPS[step]
    expected = {"1": {"record.json": "1", "a.txt": "old a", "b.txt": "old b"},
                "2": {"record.json": "2", "a.txt": "new a"}}[version]
    assert {p.name: p.read_text() for p in out.iterdir()} == expected  # whole, never a mix
    recover(out)
    assert capsys.readouterr().err == ""  # nothing left to say


def test_siblings_of_a_running_process_are_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    _version_1(out)
    with staged_folder(out, "--out", True, "record.json") as tmp:
        recover(out)  # another command on the same folder, while this one builds
        assert tmp.is_dir() and capsys.readouterr().err == ""
        (tmp / "record.json").write_text("2")
    assert (out / "record.json").read_text() == "2"


def test_splits_recovers_an_interrupted_swap_before_its_own_and_says_so(tmp_path, demo_data):
    out = tmp_path / "k"
    make_kshot(demo_data["train_list"], demo_data["labels"], out, shots=(1,))
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    aside = tmp_path / f".k.{2 ** 22 + 12345}.abcd1234.old"  # a pid no process has: the killed run's
    os.replace(out, aside)  # killed after moving the old folder aside, before moving the new one in
    proc = subprocess.run([sys.executable, "-m", "vifi", "splits", "make", "fewshot", "--train",
                           str(demo_data["train_list"]), "--labels", str(demo_data["labels"]), "--out", str(out),
                           "--shots", "1"], capture_output=True, text=True, timeout=300)
    # The previous folder is back, so without --overwrite the new run is refused, as for any existing output.
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and "restored the previous k" in lines[0] and lines[1].startswith("error: --out"), lines
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]
