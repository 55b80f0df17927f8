"""The class-name lists shipped in splits/ and the K600 zero-shot split generator."""

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import SHARED
from vifi.data.annotations import Entry, read_annotation_list, read_label_csv, write_annotation_list, write_label_csv
from vifi.splits import make_zeroshot_k600, normalise_class_name, novel_classes

SPLITS = Path(__file__).resolve().parents[2] / "splits"


@pytest.mark.parametrize("name,count", [("ucf101", 101), ("hmdb51", 51), ("kinetics400", 400),
                                        ("kinetics600", 600), ("ssv2", 174)])
def test_shipped_class_lists_are_complete_id_name_csvs(name, count):
    rows = list(csv.reader(open(SPLITS / f"{name}.csv", newline="")))
    assert rows[0] == ["id", "name"]
    assert [int(r[0]) for r in rows[1:]] == list(range(count))
    assert len(read_label_csv(SPLITS / f"{name}.csv")) == count  # our reader: unique, non-empty names


def test_shipped_ucf101_names_are_the_official_class_index():
    class_ind = SHARED / "fixtures" / "ucf101" / "classInd.txt"
    if not class_ind.is_file():
        pytest.skip("UCF-101 fixture not present")
    official = [line.split()[1] for line in class_ind.read_text().splitlines() if line.strip()]
    assert read_label_csv(SPLITS / "ucf101.csv") == official
    assert official[36] == "HandstandPushups"


def test_name_normalisation_is_case_and_space_only():
    assert normalise_class_name("passing american  football (not in game)") == \
        normalise_class_name("passing American football (not in game)")
    assert normalise_class_name("dyeing hair") != normalise_class_name("dying hair")


def test_k600_candidates_from_the_shipped_lists():
    k400 = read_label_csv(SPLITS / "kinetics400.csv")
    k600 = read_label_csv(SPLITS / "kinetics600.csv")
    cand = novel_classes(k400, k600)
    assert len(cand) == 231
    assert "passing american football (not in game)" not in cand  # differs from K400 only by case
    assert "dyeing hair" in cand and "backflip (human)" in cand
    assert not {normalise_class_name(c) for c in cand} & {normalise_class_name(c) for c in k400}


def test_k600_zeroshot_splits_on_hand_made_lists(tmp_path):
    write_label_csv(tmp_path / "k400.csv", ["Ab", "cd"])
    k600 = ["ab", "new b", "cd ", "new a", "new d", "new c"]
    (tmp_path / "k600.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(k600)))
    videos = [Entry(f"v{i}.mp4", i % 6) for i in range(24)]
    write_annotation_list(tmp_path / "val.txt", videos)
    rec = make_zeroshot_k600(str(tmp_path / "k400.csv"), str(tmp_path / "k600.csv"), tmp_path / "out",
                             eval_list=str(tmp_path / "val.txt"), seeds=(1, 2, 3), n_classes=3)
    assert rec["candidates"] == 4
    for k in (1, 2, 3):
        names = read_label_csv(tmp_path / "out" / f"split{k}" / "labels.csv")
        assert names == sorted(names) and len(names) == 3 and set(names) <= {"new a", "new b", "new c", "new d"}
        got = read_annotation_list(tmp_path / "out" / f"split{k}" / "eval.txt")
        expected = [Entry(v.path, names.index(k600[v.label])) for v in videos if k600[v.label] in names]
        assert got == expected
    again = make_zeroshot_k600(str(tmp_path / "k400.csv"), str(tmp_path / "k600.csv"), tmp_path / "again",
                               seeds=(1, 2, 3), n_classes=3)
    assert {k: v["classes"] for k, v in again["splits"].items()} == {"split1": 3, "split2": 3, "split3": 3}
    for k in (1, 2, 3):
        assert (tmp_path / "again" / f"split{k}" / "labels.csv").read_text() == \
            (tmp_path / "out" / f"split{k}" / "labels.csv").read_text()
    record = json.loads((tmp_path / "out" / "split.json").read_text())
    assert set(record["inputs"]) == {"k400_labels", "k600_labels", "eval_list"}
