"""`vifi prepare` on miniature official layouts: lists, label CSVs, manifest, quarantine, messages."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED, ramp_frames, write_video
from vifi.data.annotations import Entry, read_annotation_list, read_label_csv
from vifi.errors import VifiError
from vifi.prepare.run import prepare


def _video(path: Path, n: int = 12):
    write_video(path, ramp_frames(n), codec="mpeg4" if path.suffix == ".avi" else "libx264")


def _broken(root: Path, corrupt: str, empty: str):
    (root / corrupt).parent.mkdir(parents=True, exist_ok=True)
    (root / corrupt).write_bytes(b"\x00not a video" * 20)
    (root / empty).parent.mkdir(parents=True, exist_ok=True)
    (root / empty).write_bytes(b"")


def _quarantine(out: Path) -> set[str]:
    return {line for line in (out / "quarantine.txt").read_text().splitlines() if line}


def test_ucf101_layout(tmp_path):
    root, lists = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nHandStandPushups/v_HandStandPushups_g08_c01.avi 2\r\n"
        "YoYo/v_YoYo_g08_c01.avi 3\r\nYoYo/v_YoYo_g09_c01.avi 3\r\nYoYo/v_YoYo_g10_c01.avi 3\r\n")
    (lists / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
                                          "HandStandPushups/v_HandStandPushups_g01_c01.avi\n")
    for line in [*(lists / "trainlist01.txt").read_text().split(), *(lists / "testlist01.txt").read_text().split()]:
        if line.endswith(".avi") and "g09" not in line and "g10" not in line:
            _video(root / line)
    _broken(root, "YoYo/v_YoYo_g09_c01.avi", "YoYo/v_YoYo_g10_c01.avi")
    (root / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi").unlink()  # listed, missing
    out = tmp_path / "out"
    record = prepare("ucf101", root, out, lists=lists, workers=2, min_frames=4, show_progress=False)
    assert read_label_csv(out / "labels.csv") == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert read_annotation_list(out / "train1.txt") == [
        Entry("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0), Entry("HandStandPushups/v_HandStandPushups_g08_c01.avi", 1),
        Entry("YoYo/v_YoYo_g08_c01.avi", 2), Entry("YoYo/v_YoYo_g09_c01.avi", 2), Entry("YoYo/v_YoYo_g10_c01.avi", 2)]
    assert read_annotation_list(out / "test1.txt") == [
        Entry("YoYo/v_YoYo_g01_c01.avi", 2), Entry("HandStandPushups/v_HandStandPushups_g01_c01.avi", 1)]
    assert (out / "missing.txt").read_text() == "test1 ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
    assert _quarantine(out) == {"YoYo/v_YoYo_g09_c01.avi", "YoYo/v_YoYo_g10_c01.avi"}
    manifest = {r["path"]: r for r in csv.DictReader(open(out / "manifest.csv"))}
    assert manifest["YoYo/v_YoYo_g08_c01.avi"]["ok"] == "True" and manifest["YoYo/v_YoYo_g08_c01.avi"]["frames"] == "12"
    assert manifest["YoYo/v_YoYo_g08_c01.avi"]["codec"] == "mpeg4"
    assert manifest["YoYo/v_YoYo_g10_c01.avi"]["reason"] == "empty file"
    assert record["splits"]["train1"] == {"listed": 5, "on_disk": 5, "missing": 0, "quarantined": 2}
    with pytest.raises(VifiError, match="already holds"):
        prepare("ucf101", root, out, lists=lists, check=False, show_progress=False)


def test_ucf101_official_split1_lists_come_out_in_the_published_form(tmp_path):
    fixture = SHARED / "fixtures" / "ucf101"
    if not fixture.is_dir():
        pytest.skip("UCF-101 fixture not present")
    root = tmp_path / "videos"
    train = [l.split() for l in (fixture / "trainlist01.txt").read_text().splitlines() if l.strip()]
    test = [l.split()[0] for l in (fixture / "testlist01.txt").read_text().splitlines() if l.strip()]
    for path in [p for p, _ in train] + test:  # empty placeholders: layout only, no check
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).touch()
    prepare("ucf101", root, tmp_path / "out", lists=fixture, check=False, show_progress=False)
    got_train = read_annotation_list(tmp_path / "out" / "train1.txt")
    assert [(e.path, e.label) for e in got_train] == [(p, int(l) - 1) for p, l in train]
    assert [e.path for e in read_annotation_list(tmp_path / "out" / "test1.txt")] == test  # = published val1 order
    names = read_label_csv(tmp_path / "out" / "labels.csv")
    assert len(names) == 101 and names[36] == "HandstandPushups"


def test_hmdb51_layout(tmp_path):
    root, lists = tmp_path / "hmdb51", tmp_path / "splits"
    lists.mkdir()
    for cls in ("brush_hair", "climb_stairs"):
        for k in (1, 2, 3):
            (lists / f"{cls}_test_split{k}.txt").write_text(
                f"{cls}_a.avi 1 \n{cls}_b.avi 2 \n{cls}_c.avi {0 if k == 1 else 1} \n")
        for v in "abc":
            _video(root / cls / f"{cls}_{v}.avi")
    _broken(root, "climb_stairs/climb_stairs_b.avi", "brush_hair/brush_hair_c.avi")
    out = tmp_path / "out"
    prepare("hmdb51", root, out, lists=lists, workers=1, min_frames=4, show_progress=False)
    assert read_label_csv(out / "labels.csv") == ["brush hair", "climb stairs"]
    assert read_annotation_list(out / "train1.txt") == [Entry("brush_hair/brush_hair_a.avi", 0),
                                                       Entry("climb_stairs/climb_stairs_a.avi", 1)]
    assert [e.path for e in read_annotation_list(out / "train2.txt")] == [
        "brush_hair/brush_hair_a.avi", "brush_hair/brush_hair_c.avi", "climb_stairs/climb_stairs_a.avi",
        "climb_stairs/climb_stairs_c.avi"]
    assert read_annotation_list(out / "test3.txt") == [Entry("brush_hair/brush_hair_b.avi", 0),
                                                      Entry("climb_stairs/climb_stairs_b.avi", 1)]
    assert _quarantine(out) == {"climb_stairs/climb_stairs_b.avi", "brush_hair/brush_hair_c.avi"}


@pytest.mark.parametrize("per_class_folders", [True, False])
def test_kinetics_layout_flat_or_per_class(tmp_path, per_class_folders):
    root, lists = tmp_path / "k400", tmp_path / "csv"
    lists.mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    (lists / "train.csv").write_text(header + "abseiling,aaa,10,20,train\nzumba,bbb,0,10,train\n"
                                     "abseiling,ccc,5,15,train\nzumba,ddd,1,11,train\n")
    (lists / "validate.csv").write_text(header + "zumba,eee,30,40,val\nabseiling,fff,2,12,val\n"
                                        "abseiling,ggg,0,10,val\nzumba,hhh,0,10,val\n")
    files = {"aaa_000010_000020": "abseiling", "bbb_000000_000010": "zumba", "ccc_000005_000015": "abseiling",
             "eee_000030_000040": "zumba", "fff_000002_000012": "abseiling"}  # ddd is missing
    for stem, cls in files.items():
        _video(root / (f"train/{cls}" if per_class_folders else "") / f"{stem}.mp4")
    _broken(root, "val/ggg_000000_000010.mp4", "hhh_000000_000010.mkv")  # one corrupt, one empty
    (root / "notes.txt").write_text("not a video")  # non-video files are ignored
    out = tmp_path / "out"
    prepare("kinetics400", root, out, lists=lists, workers=2, min_frames=4, show_progress=False)
    assert read_label_csv(out / "labels.csv") == ["abseiling", "zumba"]
    train = read_annotation_list(out / "train.txt")
    assert [(Path(e.path).stem, e.label) for e in train] == [("aaa_000010_000020", 0), ("bbb_000000_000010", 1),
                                                             ("ccc_000005_000015", 0)]
    assert [Path(e.path).stem for e in read_annotation_list(out / "val.txt")] == [
        "eee_000030_000040", "fff_000002_000012", "ggg_000000_000010", "hhh_000000_000010"]
    assert (out / "missing.txt").read_text() == "train ddd_000001_000011\n"
    assert _quarantine(out) == {"val/ggg_000000_000010.mp4", "hhh_000000_000010.mkv"}


def test_kinetics_csv_without_columns_and_unknown_class(tmp_path):
    lists = tmp_path / "csv"
    lists.mkdir()
    (tmp_path / "v").mkdir()
    (lists / "train.csv").write_text("label,youtube_id\nzumba,aaa\n")
    with pytest.raises(VifiError, match="missing column.*time_end"):
        prepare("kinetics600", tmp_path / "v", tmp_path / "o", lists=lists, show_progress=False)
    (lists / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,aaa,0,10,train\n")
    (lists / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nyoga,bbb,0,10,val\n")
    with pytest.raises(VifiError, match="class 'yoga' is not among"):
        prepare("kinetics600", tmp_path / "v", tmp_path / "o", lists=lists, show_progress=False)


def test_ssv2_layout(tmp_path):
    root, lists = tmp_path / "20bn", tmp_path / "labels"
    lists.mkdir()
    (lists / "labels.json").write_text(json.dumps({"Holding something": "1", "Approaching something with your camera": "0"}))
    (lists / "train.json").write_text(json.dumps([
        {"id": "11", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]},
        {"id": "12", "label": "approaching", "template": "Approaching [something] with your camera", "placeholders": []},
        {"id": "13", "label": "holding", "template": "Holding [something]", "placeholders": []}]))
    (lists / "validation.json").write_text(json.dumps([
        {"id": "21", "label": "x", "template": "Holding [something]", "placeholders": []}]))
    for vid in ("11", "12", "21"):
        _video(root / f"{vid}.webm".replace(".webm", ".mp4"))
    out = tmp_path / "out"
    prepare("ssv2", root, out, lists=lists, workers=1, min_frames=4, show_progress=False)
    assert read_label_csv(out / "labels.csv") == ["Approaching something with your camera", "Holding something"]
    assert read_annotation_list(out / "train.txt") == [Entry("11.mp4", 1), Entry("12.mp4", 0)]
    assert read_annotation_list(out / "val.txt") == [Entry("21.mp4", 1)]
    assert (out / "missing.txt").read_text() == "train 13\n"


def test_generic_folder_per_class(tmp_path):
    root = tmp_path / "mine"
    for cls, n in (("waving", 2), ("clapping", 1)):
        for i in range(n):
            _video(root / cls / f"{i}.mp4")
    _broken(root, "clapping/bad.mp4", "waving/empty.mp4")
    out = tmp_path / "out"
    prepare("generic", root, out, workers=1, min_frames=4, show_progress=False)
    assert read_label_csv(out / "labels.csv") == ["clapping", "waving"]
    assert read_annotation_list(out / "all.txt") == [Entry("clapping/0.mp4", 0), Entry("clapping/bad.mp4", 0),
                                                    Entry("waving/0.mp4", 1), Entry("waving/1.mp4", 1),
                                                    Entry("waving/empty.mp4", 1)]
    assert _quarantine(out) == {"clapping/bad.mp4", "waving/empty.mp4"}


def test_too_short_videos_are_quarantined(tmp_path):
    root = tmp_path / "mine"
    _video(root / "a" / "long.mp4", n=12)
    _video(root / "a" / "short.mp4", n=3)
    prepare("generic", root, tmp_path / "out", workers=1, min_frames=8, show_progress=False)
    assert _quarantine(tmp_path / "out") == {"a/short.mp4"}


def test_reencode_keeps_every_frame_never_touches_sources_and_resumes(tmp_path):
    import numpy as np

    from vifi.data.decoding import read_frames

    root = tmp_path / "src"
    write_video(root / "a" / "v.avi", ramp_frames(20, 96, 128), codec="mpeg4")
    _broken(root, "a/bad.avi", "a/zero.avi")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    out, dst = tmp_path / "lists", tmp_path / "small"
    proc = subprocess.run([sys.executable, "-m", "vifi", "prepare", "generic", "--root", root, "--out", out,
                           "--reencode", dst, "--short-side", "48", "--workers", "1", "--min-frames", "4"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # two sources could not be re-encoded: not a clean result
    assert "2 videos failed to re-encode" in proc.stderr and "MiB ->" in proc.stderr
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    # MJPEG/AVI named after the whole source name, with its source record; no partial outputs
    assert sorted(p.name for p in dst.rglob("*") if p.is_file()) == [".v.avi.avi.source.json", "v.avi.avi"]
    assert read_annotation_list(out / "all.txt") == [Entry("a/v.avi.avi", 0)]
    frames, _ = read_frames(dst / "a" / "v.avi.avi", lambda n: np.arange(n))
    assert frames.shape[:3] == (20, 48, 64)
    assert np.abs(frames.mean(axis=(1, 2, 3)) - 10 * np.arange(20)).max() < 5  # frame i is still frame i (step 10)
    stamp = (dst / "a" / "v.avi.avi").stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-m", "vifi", "prepare", "generic", "--root", root, "--out", out,
                            "--reencode", dst, "--short-side", "48", "--overwrite", "--no-check"],
                           capture_output=True, text=True, timeout=300)
    assert (dst / "a" / "v.avi.avi").stat().st_mtime_ns == stamp  # done files are skipped
    h264 = subprocess.run([sys.executable, "-m", "vifi", "prepare", "generic", "--root", root, "--out", out,
                           "--reencode", tmp_path / "h264", "--format", "h264", "--short-side", "48", "--overwrite",
                           "--no-check"], capture_output=True, text=True, timeout=300)
    assert h264.returncode == 1 and (tmp_path / "h264" / "a" / "v.avi.mp4").is_file()
    frames, _ = read_frames(tmp_path / "h264" / "a" / "v.avi.mp4", lambda n: np.arange(n))
    assert frames.shape[0] == 20 and np.abs(frames.mean(axis=(1, 2, 3)) - 10 * np.arange(20)).max() < 5
    inside = subprocess.run([sys.executable, "-m", "vifi", "prepare", "generic", "--root", root, "--out", out,
                             "--reencode", root / "small", "--overwrite"], capture_output=True, text=True, timeout=300)
    assert inside.returncode == 2 and "outside the video root" in inside.stderr


@pytest.mark.parametrize("dataset,needle", [("youtube8m", "unknown dataset"), ("ucf101", "classInd.txt not found"),
                                            ("hmdb51", "_test_split1.txt"), ("kinetics400", "train.csv not found"),
                                            ("ssv2", "labels.json not found")])
def test_layout_errors_name_what_is_missing(tmp_path, dataset, needle):
    (tmp_path / "root").mkdir()
    with pytest.raises(VifiError, match=needle):
        prepare(dataset, tmp_path / "root", tmp_path / "out", show_progress=False)


def test_training_skips_quarantined_videos_and_says_how_many(demo_data, tmp_path, capsys):
    from vifi.config import load_config
    from vifi.runs import skip_quarantined

    lists = tmp_path / "lists"
    lists.mkdir()
    train = read_annotation_list(demo_data["train_list"])
    (lists / "train.txt").write_text(Path(demo_data["train_list"]).read_text())
    (lists / "quarantine.txt").write_text(f"{train[0].path}\n{train[5].path}\n")
    cfg = load_config("demo", [f"data.train_list={lists / 'train.txt'}"])
    kept = skip_quarantined(train, cfg, verbose=True)
    assert kept == [e for i, e in enumerate(train) if i not in (0, 5)]
    assert "skipping 2 quarantined training videos" in capsys.readouterr().err  # a notice: stderr


def test_disk_full_while_re_encoding_leaves_no_half_written_output(tmp_path, monkeypatch):
    import errno

    import vifi.prepare.reencode as reencode

    write_video(tmp_path / "src" / "v.mp4", ramp_frames(10))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(reencode.os, "replace", full)
    row = reencode.reencode_one(("v.mp4", str(tmp_path / "src"), str(tmp_path / "dst"), 48, "mjpeg"))
    assert row["status"].startswith("failed") and "No space left" in row["status"]
    assert [p for p in (tmp_path / "dst").rglob("*") if p.is_file()] == []  # neither output nor temp file
