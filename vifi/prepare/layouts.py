"""Official dataset layouts -> annotation lists (`relative/path label`, 0-based) and one label CSV.

Each reader returns a Prepared: class names (label order), named splits of entries, and the listed videos that
are not on disk. Paths are relative to the video root, exactly as the lists the paper used (SPEC §2.1-2.2).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from vifi.data.annotations import Entry
from vifi.data.decoding import VIDEO_SUFFIXES
from vifi.errors import VifiError

DATASETS = ("ucf101", "hmdb51", "kinetics400", "kinetics600", "ssv2", "generic")


@dataclass
class Prepared:
    names: list[str]
    splits: dict[str, list[Entry]]
    missing: dict[str, list[str]] = field(default_factory=dict)  # split -> listed paths absent under the root
    inputs: list[Path] = field(default_factory=list)


def _need(folder: Path, name: str, dataset: str) -> Path:
    hits = [folder / name] if (folder / name).is_file() else sorted(folder.rglob(name))
    if not hits:
        raise VifiError(f"{dataset}: {name} not found under {folder}; point --lists at the folder holding the "
                        "official split files")
    return hits[0]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _split_missing(prepared: Prepared, root: Path) -> Prepared:
    """Move listed-but-absent videos out of the splits into `missing` (reported, never silently kept)."""
    for split, entries in prepared.splits.items():
        present = [e for e in entries if (root / e.path).is_file()]
        gone = [e.path for e in entries if not (root / e.path).is_file()]
        prepared.splits[split] = present
        if gone:
            prepared.missing[split] = gone
    return prepared


def read_ucf101(root: Path, lists: Path) -> Prepared:
    class_ind = _need(lists, "classInd.txt", "ucf101")
    rows = [line.split() for line in _lines(class_ind)]
    try:
        names = [name for _, name in sorted(((int(i), n) for i, n in rows), key=lambda r: r[0])]
    except ValueError:
        raise VifiError(f"{class_ind}: expected '<1-based id> <ClassName>' per line") from None
    by_folder = {n.lower(): i for i, n in enumerate(names)}  # files say HandStandPushups, classInd HandstandPushups
    splits, inputs = {}, [class_ind]
    for k in (1, 2, 3):
        train_file, test_file = lists / f"trainlist0{k}.txt", lists / f"testlist0{k}.txt"
        if not train_file.is_file():
            train_file = next(iter(sorted(lists.rglob(f"trainlist0{k}.txt"))), None)
            test_file = next(iter(sorted(lists.rglob(f"testlist0{k}.txt"))), None)
        if train_file is None or test_file is None or not Path(test_file).is_file():
            if k == 1:
                raise VifiError(f"ucf101: trainlist01.txt / testlist01.txt not found under {lists}")
            continue
        splits[f"train{k}"] = [_ucf_entry(line, by_folder, train_file, with_label=True) for line in _lines(train_file)]
        splits[f"test{k}"] = [_ucf_entry(line, by_folder, test_file, with_label=False) for line in _lines(test_file)]
        inputs += [Path(train_file), Path(test_file)]
    return _split_missing(Prepared(names, splits, inputs=inputs), root)


def _ucf_entry(line: str, by_folder: dict[str, int], source: Path, with_label: bool) -> Entry:
    parts = line.split()
    path = parts[0]
    folder = path.split("/")[0].lower()
    if folder not in by_folder:
        raise VifiError(f"{source}: class folder {path.split('/')[0]!r} is not in classInd.txt")
    label = by_folder[folder]
    if with_label and len(parts) > 1 and int(parts[1]) - 1 != label:
        raise VifiError(f"{source}: {path} is labelled {parts[1]} but its folder is class {label + 1}")
    return Entry(path, label)


def read_hmdb51(root: Path, lists: Path) -> Prepared:
    files = sorted(lists.rglob("*_test_split[123].txt"))
    if not files:
        raise VifiError(f"hmdb51: no '<class>_test_split1.txt' files under {lists}; point --lists at the folder of "
                        "the official split files (testTrainMulti_7030_splits)")
    classes = sorted({re.sub(r"_test_split[123]\.txt$", "", f.name) for f in files})
    names = [c.replace("_", " ") for c in classes]
    splits: dict[str, list[Entry]] = {}
    for k in (1, 2, 3):
        train, test = [], []
        for label, cls in enumerate(classes):
            f = lists / f"{cls}_test_split{k}.txt"
            if not f.is_file():
                f = next(iter(sorted(lists.rglob(f"{cls}_test_split{k}.txt"))), None)
            if f is None:
                if k == 1:
                    raise VifiError(f"hmdb51: {cls}_test_split1.txt not found under {lists}")
                break
            for line in _lines(f):
                name, _, flag = line.partition(" ")
                entry = Entry(f"{cls}/{name}", label)
                if flag.strip() == "1":
                    train.append(entry)
                elif flag.strip() == "2":
                    test.append(entry)
        else:
            splits[f"train{k}"], splits[f"test{k}"] = train, test
    return _split_missing(Prepared(names, splits, inputs=files), root)


def _video_index(root: Path) -> dict[str, str]:
    """File stem -> path relative to root, for every video file under root (flat or per-class folders)."""
    index = {}
    for path in root.rglob("*"):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            index.setdefault(path.stem, str(path.relative_to(root)))
    return index


def read_kinetics(root: Path, lists: Path, dataset: str) -> Prepared:
    train_csv = _need(lists, "train.csv", dataset)
    names = sorted({row["label"] for row in _kinetics_rows(train_csv)})
    index_of = {n: i for i, n in enumerate(names)}
    videos = _video_index(root)
    splits, missing, inputs = {}, {}, [train_csv]
    for split, candidates in (("train", ("train.csv",)), ("val", ("validate.csv", "val.csv")), ("test", ("test.csv",))):
        csv_path = next((lists / c for c in candidates if (lists / c).is_file()), None)
        if csv_path is None:
            continue
        inputs.append(csv_path)
        entries, gone = [], []
        for lineno, row in enumerate(_kinetics_rows(csv_path), start=2):
            label = row["label"]
            if not label:
                break  # an unlabelled test split: nothing to evaluate against
            if label not in index_of:
                raise VifiError(f"{csv_path}:{lineno}: class {label!r} is not among the {len(names)} classes of "
                                f"{train_csv.name}")
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            if stem in videos:
                entries.append(Entry(videos[stem], index_of[label]))
            else:
                gone.append(stem)
        if entries or gone:
            splits[split] = entries
            if gone:
                missing[split] = gone
    return Prepared(names, splits, missing, inputs)


def _kinetics_rows(path: Path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"label", "youtube_id", "time_start", "time_end"}
        have = set(reader.fieldnames or [])
        if not need <= have:
            raise VifiError(f"{path}: missing column(s) {', '.join(sorted(need - have))}; expected the official "
                            "label,youtube_id,time_start,time_end,split header")
        yield from reader


def read_ssv2(root: Path, lists: Path) -> Prepared:
    labels_json = _need(lists, "labels.json", "ssv2")
    try:
        table = json.loads(labels_json.read_text())
        # keys are templates; strip brackets in case a copy keeps them, as train.json's templates do
        names_by_id = sorted(((int(i), n.replace("[", "").replace("]", "")) for n, i in table.items()),
                             key=lambda r: r[0])
    except (ValueError, AttributeError):
        raise VifiError(f"{labels_json}: expected a JSON object {{template: id}}") from None
    names = [n for _, n in names_by_id]
    index_of = {n: i for i, n in enumerate(names)}
    videos = _video_index(root)
    splits, missing, inputs = {}, {}, [labels_json]
    for split, fname in (("train", "train.json"), ("val", "validation.json")):
        path = lists / fname
        if not path.is_file():
            if split == "train":
                raise VifiError(f"ssv2: {fname} not found under {lists}")
            continue
        inputs.append(path)
        entries, gone = [], []
        for item in json.loads(path.read_text()):
            name = item["template"].replace("[", "").replace("]", "")
            if name not in index_of:
                raise VifiError(f"{path}: template {name!r} (video {item['id']}) is not in {labels_json.name}")
            key = str(item["id"])
            if key in videos:
                entries.append(Entry(videos[key], index_of[name]))
            else:
                gone.append(key)
        splits[split] = entries
        if gone:
            missing[split] = gone
    return Prepared(names, splits, missing, inputs)


def read_generic(root: Path) -> Prepared:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise VifiError(f"generic: {root} has no class folders; expected {root}/<class>/<video>")
    entries = []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).rglob("*")):
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                entries.append(Entry(str(path.relative_to(root)), label))
    if not entries:
        raise VifiError(f"generic: no video files under {root}/<class>/")
    return Prepared(classes, {"all": entries})


def read_layout(dataset: str, root: Path, lists: Path | None) -> Prepared:
    if dataset not in DATASETS:
        raise VifiError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise VifiError(f"--root {root}: folder not found")
    lists = lists or root
    if not lists.is_dir():
        raise VifiError(f"--lists {lists}: folder not found")
    if dataset == "ucf101":
        return read_ucf101(root, lists)
    if dataset == "hmdb51":
        return read_hmdb51(root, lists)
    if dataset in ("kinetics400", "kinetics600"):
        return read_kinetics(root, lists, dataset)
    if dataset == "ssv2":
        return read_ssv2(root, lists)
    return read_generic(root)
