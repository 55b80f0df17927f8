import csv
import random
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED
from vifi.data.annotations import (Entry, read_annotation_list, read_label_csv, write_annotation_list,
                                   write_label_csv)
from vifi.errors import VifiError
from vifi.splits import base_novel_classes, few_shot_per_class, make_base2novel, make_kshot

UCF = SHARED / "fixtures" / "ucf101"


def test_base_novel_rule_with_ties_at_the_boundary():
    # counts per class id; sorted ascending, stable: 1(c1),2(c3),3(c0),3(c4),3(c5),9(c2)
    counts = [3, 1, 9, 2, 3, 3]
    base, novel = base_novel_classes(counts)
    assert novel == [1, 3, 0]  # the first three in sort order; tie at 3 broken by class id
    assert base == [4, 5, 2]
    # odd C: base gets the extra class
    base, novel = base_novel_classes([5, 5, 5, 5, 5])
    assert novel == [0, 1] and base == [2, 3, 4]


def test_few_shot_recipe_reseeds_per_class_hand_computed():
    entries = [Entry(p, 0) for p in "abcde"] + [Entry(p, 1) for p in "abcde"] + [Entry(f"v{i}", 2) for i in range(3)]
    got = few_shot_per_class(entries, 3, 2, seed=1)
    # random.seed(1); random.sample(list("abcde"), 2) == ['b', 'a'] in CPython 3.x; the same for the equal-size
    # class 1 (the correlation SPEC §5.3 describes); ['v0', 'v2'] for the 3-video class
    assert [(e.path, e.label) for e in got] == [("b", 0), ("a", 0), ("b", 1), ("a", 1), ("v0", 2), ("v2", 2)]
    with pytest.raises(VifiError, match="class 2 has 3 training videos"):
        few_shot_per_class(entries, 3, 4, seed=1)


def _official_to_lists(tmp: Path):
    names = [line.split()[1] for line in (UCF / "classInd.txt").read_text().splitlines() if line.strip()]
    with open(tmp / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name"])
        w.writerows(enumerate(names))
    for src, dst in (("trainlist01.txt", "train.txt"), ("testlist01.txt", "val.txt")):
        lines = [l.split() for l in (UCF / src).read_text().splitlines() if l.strip()]
        (tmp / dst).write_text("".join(f"{p} {int(l) - 1}\n" for p, l in lines))
    return names


@pytest.mark.skipif(not UCF.is_dir(), reason="shared UCF-101 fixtures absent")
def test_ucf101_split1_reproduces_the_published_base_novel_facts(tmp_path):
    names = _official_to_lists(tmp_path)
    make_base2novel(tmp_path / "train.txt", tmp_path / "val.txt", tmp_path / "labels.csv", tmp_path / "out")
    base = read_label_csv(tmp_path / "out" / "base_labels.csv")
    novel = read_label_csv(tmp_path / "out" / "novel_labels.csv")
    assert (len(base), len(novel)) == (51, 50)
    assert set(base) | set(novel) == set(names) and not set(base) & set(novel)
    # SPEC §5.2: tie at 93 clips at the boundary; stable sort sends Typing (id 94) to base
    assert "Typing" in base and "BlowDryHair" in novel and "Surfing" in novel
    train = read_annotation_list(tmp_path / "train.txt")
    counts = {n: 0 for n in names}
    for e in train:
        counts[names[e.label]] += 1
    assert [counts[n] for n in novel + base] == sorted(counts.values())  # CSV order = ascending count
    # base_val + novel_val partition val, same order, re-indexed
    val = read_annotation_list(tmp_path / "val.txt")
    bv = read_annotation_list(tmp_path / "out" / "base_val.txt")
    nv = read_annotation_list(tmp_path / "out" / "novel_val.txt")
    assert len(bv) + len(nv) == len(val) == 3783
    assert [e.path for e in bv] == [e.path for e in val if names[e.label] in base]
    assert all(base[e.label] == names[v.label] for e, v in zip(bv, [v for v in val if names[v.label] in base]))
    # few-shot base lists: 16 per base class, per-class reseeded sampling from base_train order
    bt = read_annotation_list(tmp_path / "out" / "base_train.txt")
    for seed in (1, 2, 3):
        fs = read_annotation_list(tmp_path / "out" / f"fs_base_s{seed}_train.txt")
        assert len(fs) == 51 * 16
        first = [e.path for e in bt if e.label == 0]
        random.seed(seed)
        assert [e.path for e in fs[:16]] == random.sample(first, 16)


def test_kshot_lists_are_reproducible_and_exact(tmp_path, demo_data):
    make_kshot(demo_data["train_list"], demo_data["labels"], tmp_path / "a", shots=(2, 4))
    make_kshot(demo_data["train_list"], demo_data["labels"], tmp_path / "b", shots=(2, 4))
    for k in (2, 4):
        a = (tmp_path / "a" / f"train_few_shot_{k}.txt").read_text()
        assert a == (tmp_path / "b" / f"train_few_shot_{k}.txt").read_text()
        labels = [int(l.split()[1]) for l in a.splitlines()]
        assert all(labels.count(c) == k for c in range(6))
    with pytest.raises(VifiError, match="fewer than K=16"):
        make_kshot(demo_data["train_list"], demo_data["labels"], tmp_path / "c", shots=(16,))


@pytest.mark.skipif(not UCF.is_dir(), reason="shared UCF-101 fixtures absent")
def test_cli_interface_writes_the_named_files(tmp_path):
    import subprocess
    import sys

    _official_to_lists(tmp_path)
    out = tmp_path / "b2n"
    proc = subprocess.run([sys.executable, "-m", "vifi", "splits", "make", "base2novel", "--train",
                           tmp_path / "train.txt", "--val", tmp_path / "val.txt", "--labels", tmp_path / "labels.csv",
                           "--out", out, "--shots", "16", "--seeds", "1,2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    expected = {"base_labels.csv", "novel_labels.csv", "base_train.txt", "base_val.txt", "novel_val.txt",
                "fs_base_s1_train.txt", "fs_base_s2_train.txt", "split.json"}
    assert {p.name for p in out.iterdir()} == expected
    train_paths = {l.split()[0] for l in (tmp_path / "train.txt").read_text().splitlines()}
    assert {l.split()[0] for l in (out / "fs_base_s1_train.txt").read_text().splitlines()} <= train_paths


# --- output folders: refused when present, built complete or not at all -------------------------------------------

def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _vifi(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_existing_split_folder_is_refused_without_overwrite_and_left_intact(tmp_path, demo_data):
    d = demo_data
    out = tmp_path / "b2n"
    make_base2novel(d["train_list"], d["val_list"], d["labels"], out, shots=2)
    before = _tree(out)
    for protocol, extra in (("base2novel", ["--val", d["val_list"], "--shots", "1"]), ("fewshot", ["--shots", "1"])):
        proc = _vifi("splits", "make", protocol, "--train", d["train_list"], "--labels", d["labels"], "--out", out,
                     *extra)
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: --out {out} already holds base_labels.csv")
        assert _tree(out) == before  # fewshot no longer replaces a base-to-novel split.json
    proc = _vifi("splits", "make", "fewshot", "--train", d["train_list"], "--labels", d["labels"], "--out", out,
                 "--shots", "1", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert sorted(_tree(out)) == ["split.json", "train_few_shot_1.txt"]  # replaced as a whole: nothing old mixed in
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_overwrite_never_replaces_a_folder_that_splits_did_not_write(tmp_path, demo_data):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(VifiError, match=r"holds files this command did not write \(no split.json; first: thesis.tex\)"):
        make_kshot(demo_data["train_list"], demo_data["labels"], mine, shots=(1,), overwrite=True)
    assert _tree(mine) == {"thesis.tex": b"precious"}


def test_fewshot_failing_at_a_later_k_leaves_no_earlier_list(tmp_path, demo_data):
    out = tmp_path / "fs"
    with pytest.raises(VifiError, match="fewer than K=50"):
        make_kshot(demo_data["train_list"], demo_data["labels"], out, shots=(1, 50))
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # and over an existing folder (with --overwrite): the previous lists stay exactly as they were
    make_kshot(demo_data["train_list"], demo_data["labels"], out, shots=(2,))
    before = _tree(out)
    with pytest.raises(VifiError, match="fewer than K=50"):
        make_kshot(demo_data["train_list"], demo_data["labels"], out, shots=(1, 50), overwrite=True)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["fs"]


def test_one_class_base_to_novel_is_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("id,name\n0,waving\n")
    (tmp_path / "train.txt").write_text("a.mp4 0\nb.mp4 0\n")
    with pytest.raises(VifiError, match="lists 1 class; base-to-novel needs at least 2"):
        make_base2novel(tmp_path / "train.txt", tmp_path / "train.txt", tmp_path / "labels.csv", tmp_path / "out",
                        shots=1)
    assert not (tmp_path / "out").exists()


def test_classes_absent_from_val_are_named_in_one_notice(tmp_path, demo_data, capsys):
    val = tmp_path / "val.txt"
    val.write_text("".join(l + "\n" for l in Path(demo_data["val_list"]).read_text().splitlines()
                           if not l.endswith((" 2", " 4"))))
    names = read_label_csv(demo_data["labels"])
    make_base2novel(demo_data["train_list"], val, demo_data["labels"], tmp_path / "b2n", shots=2)
    err = capsys.readouterr().err
    assert err == f"notice: 2 of 6 classes have no video in {val}: {names[2]!r}, {names[4]!r}\n"


def test_fewshot_refuses_seeds_and_a_missing_val(tmp_path, demo_data):
    d = demo_data
    base = ["splits", "make", "fewshot", "--train", d["train_list"], "--labels", d["labels"], "--shots", "1"]
    proc = _vifi(*base, "--out", tmp_path / "a", "--seeds", "4")
    assert proc.returncode == 2 and "use --seed N" in proc.stderr and not (tmp_path / "a").exists()
    proc = _vifi(*base, "--out", tmp_path / "b", "--val", tmp_path / "nope.txt")
    assert proc.returncode == 2 and proc.stderr == f"error: --val {tmp_path / 'nope.txt'}: file not found\n"
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_out_in_an_impossible_place_is_one_error_line_before_work(tmp_path, demo_data, where):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    out = blocker / "splits" if where == "under_a_file" else blocker
    proc = _vifi("splits", "make", "fewshot", "--train", demo_data["train_list"], "--labels", demo_data["labels"],
                 "--out", out, "--shots", "1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: --out")
    assert blocker.read_text() == "x"


def _naive_class_indices(labels: np.ndarray, label: int) -> list[int]:
    """A scan of the whole list per class (what the generators did before grouping once): the reference result."""
    return np.flatnonzero(labels == label).tolist()


def test_k400_sized_lists_equal_a_per_class_scan(tmp_path):
    # 240,000 lines over 400 classes (K400's size), uneven class sizes; the one-pass grouping must pick exactly the
    # videos, in exactly the order, that a scan per class picks (docs/design.md "Splits").
    rng = np.random.default_rng(7)
    labels = rng.choice(400, size=240_000, p=rng.dirichlet(np.full(400, 20.0)))
    entries = [Entry(f"class {l}/v{i:06d}.mp4", int(l)) for i, l in enumerate(labels)]
    names = [f"class {c}" for c in range(400)]
    write_annotation_list(tmp_path / "train.txt", entries)
    write_annotation_list(tmp_path / "val.txt", entries[::50])
    write_label_csv(tmp_path / "labels.csv", names)
    per_class = [_naive_class_indices(labels, c) for c in range(400)]

    make_kshot(tmp_path / "train.txt", tmp_path / "labels.csv", tmp_path / "kshot", shots=(2, 16))
    for k in (2, 16):
        expect = []
        for c in range(400):
            picks = np.random.default_rng([1, k, c]).choice(len(per_class[c]), size=k, replace=False)
            expect.extend(entries[per_class[c][i]] for i in sorted(picks.tolist()))
        assert read_annotation_list(tmp_path / "kshot" / f"train_few_shot_{k}.txt") == expect

    make_base2novel(tmp_path / "train.txt", tmp_path / "val.txt", tmp_path / "labels.csv", tmp_path / "b2n",
                    seeds=(1, 2))
    base, _ = base_novel_classes(np.bincount(labels, minlength=400).tolist())
    for seed in (1, 2):
        expect = []
        for new_label, c in enumerate(base):
            videos = [Entry(entries[i].path, new_label) for i in per_class[c]]
            random.seed(seed)
            expect.extend(random.sample(videos, 16))
        assert read_annotation_list(tmp_path / "b2n" / f"fs_base_s{seed}_train.txt") == expect

    # the first class (in label order) short of K is the one named, as with the scan
    k = min(len(v) for v in per_class) + 1
    first = next(c for c in range(400) if len(per_class[c]) < k)
    with pytest.raises(VifiError, match=rf"class {first} \('class {first}'\) has {len(per_class[first])} "):
        make_kshot(tmp_path / "train.txt", tmp_path / "labels.csv", tmp_path / "k2", shots=(k,))


def test_duplicate_class_names_in_a_long_csv_name_the_first_in_sort_order(tmp_path):
    names = [f"class {c:03d}" for c in range(400)]
    names[390], names[250] = names[10], names[5]  # "class 010" and "class 005" twice
    write_label_csv(tmp_path / "labels.csv", names)
    with pytest.raises(VifiError, match="duplicated class name 'class 005'"):
        read_label_csv(tmp_path / "labels.csv")
