"""`vifi prepare` on real files: whole-folder outputs, re-encode names and staleness, rotation, clean reasons."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ramp_frames, write_video
from tests.data.real_videos import marked_frames, write_audio_only, write_rotated
from vifi.data.annotations import read_annotation_list
from vifi.data.decoding import read_frames
from vifi.errors import VifiError
from vifi.prepare.run import prepare


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest(out):
    return {r["path"]: r for r in csv.DictReader(open(out / "manifest.csv", encoding="utf-8"))}


def test_overwrite_replaces_the_whole_folder_and_keeps_no_stale_manifest(tmp_path):
    root, out = tmp_path / "videos", tmp_path / "out"
    write_video(root / "a" / "v.mp4", ramp_frames(10))
    (root / "a" / "bad.mp4").write_bytes(b"junk" * 50)
    prepare("generic", root, out, workers=1, min_frames=4, show_progress=False)
    assert {"manifest.csv", "quarantine.txt"} <= set(_tree(out))
    with pytest.raises(VifiError, match=r"--out .* already holds all.txt and 4 more; pass --overwrite"):
        prepare("generic", root, out, check=False, show_progress=False)
    prepare("generic", root, out, check=False, overwrite=True, show_progress=False)
    assert sorted(_tree(out)) == ["all.txt", "labels.csv", "prepare.json"]  # nothing of the checked run is left
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overwrite_refuses_a_folder_prepare_did_not_write(tmp_path):
    write_video(tmp_path / "videos" / "a" / "v.mp4", ramp_frames(10))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    with pytest.raises(VifiError, match=r"no prepare.json; first: notes.txt"):
        prepare("generic", tmp_path / "videos", theirs, overwrite=True, show_progress=False)
    assert _tree(theirs) == {"notes.txt": b"keep me"}


@pytest.mark.parametrize("flag", ["--out", "--reencode"])
def test_an_output_under_a_file_is_one_error_line_before_any_work(tmp_path, flag):
    write_video(tmp_path / "videos" / "a" / "v.mp4", ramp_frames(10))
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub" if flag == "--out" else tmp_path / "lists"
    dst = tmp_path / "file" / "small" if flag == "--reencode" else tmp_path / "small"
    proc = subprocess.run([sys.executable, "-m", "vifi", "prepare", "generic", "--root", tmp_path / "videos",
                           "--out", out, "--reencode", dst], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {flag} ") and "is a file" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "videos"]  # nothing made, nothing re-encoded


def test_same_stem_sources_get_their_own_outputs(tmp_path):
    root, dst = tmp_path / "videos", tmp_path / "small"
    write_video(root / "a" / "clip.mp4", ramp_frames(10))  # levels 0..90
    write_video(root / "a" / "clip.mkv", ramp_frames(10) + 100)  # levels 100..190
    prepare("generic", root, tmp_path / "out", reencode=dst, short_side=32, workers=2, check=False,
            show_progress=False)
    entries = read_annotation_list(tmp_path / "out" / "all.txt")
    assert [e.path for e in entries] == ["a/clip.mkv.avi", "a/clip.mp4.avi"]
    for entry, offset in zip(entries, (100, 0)):
        frames, _ = read_frames(dst / entry.path, lambda n: np.arange(n))
        assert np.abs(frames.mean(axis=(1, 2, 3)) - (offset + 10 * np.arange(10))).max() < 5


def test_a_changed_source_is_encoded_again_not_done_before(tmp_path):
    root, dst = tmp_path / "videos", tmp_path / "small"
    write_video(root / "a" / "v.mp4", ramp_frames(10))

    def run():
        prepare("generic", root, tmp_path / "out", reencode=dst, short_side=32, workers=1, check=False,
                overwrite=True, show_progress=False)
        return {r["path"]: r["status"] for r in csv.DictReader(open(tmp_path / "out" / "reencode.csv"))}

    assert run() == {"a/v.mp4": "encoded"}
    assert run() == {"a/v.mp4": "done before"}
    write_video(root / "a" / "v.mp4", ramp_frames(14) // 2)  # new content, size and mtime
    assert run() == {"a/v.mp4": "encoded"}
    frames, _ = read_frames(dst / "a" / "v.mp4.avi", lambda n: np.arange(n))
    assert frames.shape[0] == 14 and np.abs(frames.mean(axis=(1, 2, 3)) - 5 * np.arange(14)).max() < 5
    prepare("generic", root, tmp_path / "out", reencode=dst, short_side=48, workers=1, check=False, overwrite=True,
            show_progress=False)
    assert read_frames(dst / "a" / "v.mp4.avi", lambda n: [0], "pyav")[0].shape[1:3] == (48, 64)  # new size: redone


def test_reencode_bakes_the_rotation_in(tmp_path):
    root, dst = tmp_path / "videos", tmp_path / "small"
    write_rotated(root / "a" / "phone.mp4", marked_frames(8, 48, 64), 90)
    displayed, _ = read_frames(root / "a" / "phone.mp4", lambda n: np.arange(n), "pyav")  # 64 high, 48 wide
    prepare("generic", root, tmp_path / "out", reencode=dst, short_side=48, workers=1, min_frames=4,
            show_progress=False)
    import av

    with av.open(str(dst / "a" / "phone.mp4.avi")) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (48, 64, 0)
    for backend in ("decord", "pyav"):
        frames, _ = read_frames(dst / "a" / "phone.mp4.avi", lambda n: np.arange(n), backend)
        assert frames.shape == displayed.shape
        assert np.abs(frames.astype(int) - displayed).mean() < 4  # JPEG-lossy, same orientation
    assert _manifest(tmp_path / "out")["a/phone.mp4.avi"]["ok"] == "True"


def test_reencode_failures_are_counted_as_failed_not_missing(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "a" / "v.mp4", ramp_frames(10))
    (root / "a" / "junk.mp4").write_bytes(b"junk" * 50)
    write_audio_only(root / "a" / "voice.mp4")
    record = prepare("generic", root, tmp_path / "out", reencode=tmp_path / "small", short_side=32, workers=1,
                     check=False, show_progress=False)
    assert record["splits"]["all"] == {"listed": 3, "on_disk": 1, "missing": 0, "reencode_failed": 2}
    assert not (tmp_path / "out" / "missing.txt").exists()
    status = {r["path"]: r["status"] for r in csv.DictReader(open(tmp_path / "out" / "reencode.csv"))}
    assert status == {"a/junk.mp4": "failed: Invalid data found when processing input", "a/v.mp4": "encoded",
                      "a/voice.mp4": "failed: no video stream"}


def test_manifest_reasons_are_clean_and_rotated_or_small_videos_pass_the_check(tmp_path):
    root = tmp_path / "videos"
    write_rotated(root / "a" / "phone.mp4", marked_frames(10), 90)
    write_video(root / "a" / "tiny.mp4", ramp_frames(10, 12, 16))
    (root / "a" / "junk.mp4").write_bytes(b"junk" * 50)
    write_audio_only(root / "a" / "voice.mp4")
    prepare("generic", root, tmp_path / "out", workers=1, min_frames=4, backend="decord", show_progress=False)
    m = _manifest(tmp_path / "out")
    assert m["a/phone.mp4"]["ok"] == "True" and m["a/tiny.mp4"]["ok"] == "True"  # decord fails, PyAV reads them
    assert m["a/junk.mp4"]["reason"] == "cannot open: Invalid data found when processing input"
    assert m["a/voice.mp4"]["reason"] == "no video stream"
    record = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert sorted(record["quarantined"]) == ["a/junk.mp4", "a/voice.mp4"]
