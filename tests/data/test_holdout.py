"""`vifi prepare generic --val-fraction F --seed S`: a stratified, seeded train/val split of one's own videos."""

import subprocess
import sys
from collections import Counter

from tests.conftest import ramp_frames, write_video
from vifi.data.annotations import read_annotation_list
from vifi.prepare.run import prepare


def _prepare(root, out, *extra):
    return subprocess.run([sys.executable, "-m", "vifi", "prepare", "generic", "--root", root, "--out", out,
                           "--no-check", *map(str, extra)], capture_output=True, text=True, timeout=120)


def test_val_fraction_writes_a_stratified_seeded_split(tmp_path):
    root = tmp_path / "videos"
    for cls, n in (("archery", 5), ("bowling", 10), ("curling", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{i:02d}.mp4").write_bytes(b"")  # listing needs no decoding with --no-check
    proc = _prepare(root, tmp_path / "a", "--val-fraction", "0.2", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    every = read_annotation_list(tmp_path / "a" / "all.txt")
    train = read_annotation_list(tmp_path / "a" / "train.txt")
    val = read_annotation_list(tmp_path / "a" / "val.txt")
    # per class: round(0.2 * n) in val, at least 1 when n >= 2, none when the class has one video
    assert Counter(e.label for e in val) == {0: 1, 1: 2}
    assert Counter(e.label for e in train) == {0: 4, 1: 8, 2: 1}
    assert sorted(train + val, key=lambda e: e.path) == sorted(every, key=lambda e: e.path)
    assert not {e.path for e in train} & {e.path for e in val}
    again = _prepare(root, tmp_path / "b", "--val-fraction", "0.2", "--seed", "0")
    assert again.returncode == 0
    assert (tmp_path / "b" / "val.txt").read_text() == (tmp_path / "a" / "val.txt").read_text()
    draws = {(tmp_path / "a" / "val.txt").read_text()}
    for seed in (1, 2, 3):
        assert _prepare(root, tmp_path / f"s{seed}", "--val-fraction", "0.2", "--seed", seed).returncode == 0
        draws.add((tmp_path / f"s{seed}" / "val.txt").read_text())
    assert len(draws) > 1  # the seed chooses which videos


def test_val_fraction_out_of_range_or_on_an_official_layout_is_one_line(tmp_path):
    (tmp_path / "v" / "a").mkdir(parents=True)
    proc = _prepare(tmp_path / "v", tmp_path / "out", "--val-fraction", "1.5")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: --val-fraction 1.5: give a share between 0 and 1, e.g. 0.2")
    assert not (tmp_path / "out").exists()


def test_val_fraction_never_puts_a_quarantined_video_in_val(tmp_path):
    # Evaluation refuses an undecodable video, so the held-out share is drawn among the videos that pass the check;
    # the quarantined one stays in train.txt (training skips it by quarantine.txt). At 0.5 of 4 videos, drawing
    # among all four would have put the broken one in val for about half of the seeds.
    root = tmp_path / "videos"
    for cls in ("archery", "bowling"):
        for i in range(3):
            write_video(root / cls / f"{i}.mp4", ramp_frames(10, 32, 32))
    (root / "archery" / "broken.mp4").write_bytes(b"not a video at all" * 100)
    for seed in range(6):
        out = tmp_path / f"s{seed}"
        prepare("generic", root, out, workers=1, val_fraction=0.5, seed=seed, show_progress=False)
        assert (out / "quarantine.txt").read_text() == "archery/broken.mp4\n"
        val = read_annotation_list(out / "val.txt")
        train = read_annotation_list(out / "train.txt")
        assert "archery/broken.mp4" not in {e.path for e in val}
        assert "archery/broken.mp4" in {e.path for e in train}
        assert Counter(e.label for e in val) == {0: 2, 1: 2}  # round(0.5 · 3 usable), never all 3
        assert sorted(e.path for e in train + val) == sorted(e.path for e in read_annotation_list(out / "all.txt"))
