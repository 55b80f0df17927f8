"""Annotation lists and label CSVs as real files: any path, BOMs, blank names."""

import codecs

import numpy as np
import pytest

from tests.conftest import ramp_frames, write_video
from vifi.data.annotations import (Entry, check_videos_exist, read_annotation_list, read_label_csv, read_path_lines,
                                   write_annotation_list)
from vifi.errors import VifiError

ODD_PATHS = ["cat a/clip one.mp4", "b,c/it's \"quoted\".mp4", "日本/vidéo ñ.mp4", "tab\there/x  two  spaces.mp4",
             "plain/v.mp4"]


def test_paths_with_spaces_commas_quotes_and_unicode_round_trip(tmp_path):
    entries = [Entry(p, i) for i, p in enumerate(ODD_PATHS)]
    write_annotation_list(tmp_path / "list.txt", entries)
    assert (tmp_path / "list.txt").read_text(encoding="utf-8").splitlines()[0] == "cat a/clip one.mp4 0"
    assert read_annotation_list(tmp_path / "list.txt", num_classes=len(ODD_PATHS)) == entries


def test_the_label_is_the_last_field_and_surrounding_whitespace_is_ignored(tmp_path):
    (tmp_path / "l.txt").write_text("  a b/c d.mp4\t3\r\n\nx.mp4 1\n", encoding="utf-8")
    assert read_annotation_list(tmp_path / "l.txt") == [Entry("a b/c d.mp4", 3), Entry("x.mp4", 1)]
    (tmp_path / "bad.txt").write_text("a b/c d.mp4\n", encoding="utf-8")
    with pytest.raises(VifiError, match=r"bad.txt:1: label 'd.mp4' is not an integer"):
        read_annotation_list(tmp_path / "bad.txt")


def test_a_path_that_cannot_be_read_back_is_refused_before_writing(tmp_path):
    with pytest.raises(VifiError, match="line break"):
        write_annotation_list(tmp_path / "l.txt", [Entry("ok.mp4", 0), Entry("two\nlines.mp4", 1)])
    assert not (tmp_path / "l.txt").exists()


def test_bom_in_an_annotation_list_is_not_part_of_the_first_path(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "a" / "v.mp4", ramp_frames(4))
    (tmp_path / "l.txt").write_bytes(codecs.BOM_UTF8 + "a/v.mp4 0\n".encode())
    entries = read_annotation_list(tmp_path / "l.txt")
    assert entries == [Entry("a/v.mp4", 0)]
    check_videos_exist(entries, root, "l.txt")  # previously: "1 of 1 videos … missing"


def test_bom_in_a_label_csv_and_quarantine_file(tmp_path):
    (tmp_path / "labels.csv").write_bytes(codecs.BOM_UTF8 + b"id,name\n0,waving\n1,clapping hands\n")
    assert read_label_csv(tmp_path / "labels.csv") == ["waving", "clapping hands"]
    (tmp_path / "q.txt").write_bytes(codecs.BOM_UTF8 + "cat a/clip one.mp4\n\n".encode())
    assert read_path_lines(tmp_path / "q.txt") == ["cat a/clip one.mp4"]


@pytest.mark.parametrize("rows,line", [("0,waving\n1,\n", 3), ("0,  \n1,x\n", 2), ("0,a\n1\n", 3)])
def test_blank_class_names_are_refused_naming_the_row(tmp_path, rows, line):
    (tmp_path / "labels.csv").write_text("id,name\n" + rows, encoding="utf-8")
    with pytest.raises(VifiError, match=rf"labels.csv:{line}: row has an empty class name"):
        read_label_csv(tmp_path / "labels.csv")


def test_prepare_generic_lists_odd_names_that_training_then_reads(tmp_path):
    from vifi.data.dataset import ClipSpec, EvalClips
    from vifi.prepare.run import prepare

    root = tmp_path / "kinetics"
    for rel in ODD_PATHS[:3]:
        write_video(root / rel, ramp_frames(10))
    prepare("generic", root, tmp_path / "out", workers=1, min_frames=4, show_progress=False)
    entries = read_annotation_list(tmp_path / "out" / "all.txt", num_classes=3)
    assert sorted(e.path for e in entries) == sorted(ODD_PATHS[:3])
    assert read_path_lines(tmp_path / "out" / "quarantine.txt") == []
    check_videos_exist(entries, root, "all.txt")
    item = EvalClips(entries, root, ClipSpec(4, 32, "pyav"))[0]
    assert item["failed"] == "" and item["frames"].float().std() > 0
    assert np.asarray(item["frames"]).shape[:2] == (1, 4)
