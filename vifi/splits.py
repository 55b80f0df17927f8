"""Split generators: base-to-novel (SPEC §5.2–5.3), all-class K-shot.

base/novel: per-class counts on the training list, stable ascending sort (ties keep class-id order), novel = the
first ⌊C/2⌋, base = the rest; each CSV lists its classes in that order, which is the new label index.
Few-shot base lists: for each base class in label order, `random.seed(seed)` then `random.sample(videos, K)`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from vifi.data.annotations import Entry, read_annotation_list, read_label_csv, write_annotation_list, write_label_csv
from vifi.errors import VifiError
from vifi.fileio import sha256_file, write_json_atomic
from vifi.outfolder import staged_folder

RECORD = "split.json"  # written last in every split folder; marks a folder `--overwrite` may replace


def base_novel_classes(counts: list[int]) -> tuple[list[int], list[int]]:
    """(base ids, novel ids), each in ascending-count order with ties in class-id order."""
    order = np.argsort(np.asarray(counts), kind="stable").tolist()
    half = len(counts) // 2
    return order[half:], order[:half]


def reindex(entries: list[Entry], classes: list[int]) -> list[Entry]:
    """Entries of `classes` only, same order, labels renumbered to positions in `classes`."""
    new = {old: i for i, old in enumerate(classes)}
    return [Entry(e.path, new[e.label]) for e in entries if e.label in new]


def videos_by_class(entries: list[Entry], num_classes: int) -> list[list[Entry]]:
    """Each class's entries in list order, in one pass (a scan per class is O(C·N): 1,600 passes at K400 size)."""
    groups: list[list[Entry]] = [[] for _ in range(num_classes)]
    for e in entries:
        groups[e.label].append(e)
    return groups


def few_shot_per_class(entries: list[Entry], num_classes: int, shots: int, seed: int,
                       names: list[str] | None = None, groups: list[list[Entry]] | None = None) -> list[Entry]:
    """The published recipe: per class in label order, reseed Python's `random` with `seed`, sample K videos.

    `groups` (from `videos_by_class(entries, num_classes)`) lets callers drawing several seeds group once.
    """
    groups = videos_by_class(entries, num_classes) if groups is None else groups
    out = []
    for label, videos in enumerate(groups):
        if len(videos) < shots:
            name = f" ({names[label]!r})" if names else ""
            raise VifiError(f"class {label}{name} has {len(videos)} training videos, fewer than --shots {shots}")
        random.seed(seed)
        out.extend(random.sample(videos, shots))
    return out


def make_base2novel(train_list: str, val_list: str, labels_csv: str, out: str | Path, shots: int = 16,
                    seeds: tuple[int, ...] = (1, 2, 3), overwrite: bool = False) -> dict:
    out = Path(out)
    names = read_label_csv(labels_csv)
    if len(names) < 2:
        raise VifiError(f"{labels_csv} lists {len(names)} class; base-to-novel needs at least 2 (half of them novel)")
    train = read_annotation_list(train_list, len(names))
    val = read_annotation_list(val_list, len(names))
    counts = [0] * len(names)
    for e in train:
        counts[e.label] += 1
    empty = [names[i] for i, c in enumerate(counts) if c == 0]
    if empty:
        raise VifiError(f"class {empty[0]!r} has no video in the training list {train_list}; "
                        "base/novel needs a training split covering every class")
    base, novel = base_novel_classes(counts)
    base_train = reindex(train, base)
    base_names = [names[i] for i in base]
    groups = videos_by_class(base_train, len(base))
    few_shot = {seed: few_shot_per_class(base_train, len(base), shots, seed, base_names, groups) for seed in seeds}
    notice_absent_classes(val, names, val_list)
    record = {
        "protocol": "base2novel",
        "rule": "counts on train list; numpy argsort(kind='stable') ascending; novel = first floor(C/2); "
                "few-shot: per base class in label order random.seed(seed); random.sample(videos, shots)",
        "inputs": {"train_list": {"path": str(train_list), "sha256": sha256_file(train_list)},
                   "val_list": {"path": str(val_list), "sha256": sha256_file(val_list)},
                   "labels": {"path": str(labels_csv), "sha256": sha256_file(labels_csv)}},
        "shots": shots, "seeds": list(seeds), "n_base": len(base), "n_novel": len(novel),
    }
    with staged_folder(out, "--out", overwrite, RECORD) as tmp:
        write_label_csv(tmp / "base_labels.csv", base_names)
        write_label_csv(tmp / "novel_labels.csv", [names[i] for i in novel])
        write_annotation_list(tmp / "base_train.txt", base_train)
        write_annotation_list(tmp / "base_val.txt", reindex(val, base))
        write_annotation_list(tmp / "novel_val.txt", reindex(val, novel))
        for seed, chosen in few_shot.items():
            write_annotation_list(tmp / f"fs_base_s{seed}_train.txt", chosen)
        write_json_atomic(tmp / RECORD, record)
    return record


def notice_absent_classes(entries: list[Entry], names: list[str], list_path) -> list[str]:
    """Name, in one notice on stderr, the classes with no video in an evaluation list (their accuracy is undefined)."""
    present = {e.label for e in entries}
    absent = [n for i, n in enumerate(names) if i not in present]
    if absent:
        shown = ", ".join(repr(n) for n in absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
        from vifi import console

        console.note(f"notice: {len(absent)} of {len(names)} classes have no video in {list_path}: {shown}")
    return absent


def make_kshot(train_list: str, labels_csv: str, out: str | Path, shots: tuple[int, ...] = (2, 4, 8, 16),
               seed: int = 1, val_list: str | None = None, overwrite: bool = False) -> dict:
    """All-class K-shot lists: per class in label order, K videos drawn by numpy Generator(seed, K, class).

    The published lists' generator is not recoverable (SPEC §5.4); this one is documented and reproducible.
    `val_list` is only checked (labels in range, classes without videos named) and recorded; it is not rewritten.
    """
    out = Path(out)
    names = read_label_csv(labels_csv)
    train = read_annotation_list(train_list, len(names))
    inputs = {"train_list": {"path": str(train_list), "sha256": sha256_file(train_list)},
              "labels": {"path": str(labels_csv), "sha256": sha256_file(labels_csv)}}
    if val_list is not None:
        notice_absent_classes(read_annotation_list(val_list, len(names)), names, val_list)
        inputs["val_list"] = {"path": str(val_list), "sha256": sha256_file(val_list)}
    lists = {}
    groups = videos_by_class(train, len(names))
    for k in shots:
        chosen = []
        for label, videos in enumerate(groups):
            if len(videos) < k:
                raise VifiError(f"class {label} ({names[label]!r}) has {len(videos)} training videos, fewer than K={k}")
            rng = np.random.default_rng([seed, k, label])
            chosen.extend(videos[i] for i in sorted(rng.choice(len(videos), size=k, replace=False).tolist()))
        lists[k] = chosen
    record = {"protocol": "fewshot", "rule": "per class in label order: numpy default_rng([seed, K, class]).choice "
              "without replacement, kept in list order", "seed": seed, "shots": list(shots), "inputs": inputs}
    with staged_folder(out, "--out", overwrite, RECORD) as tmp:
        for k, chosen in lists.items():
            write_annotation_list(tmp / f"train_few_shot_{k}.txt", chosen)
        write_json_atomic(tmp / RECORD, record)
    return record


def normalise_class_name(name: str) -> str:
    """Name key for matching classes across datasets: case-folded, whitespace collapsed, nothing else changed.

    So "passing american football (not in game)" (K600) matches K400's "passing American football (not in game)",
    while renamed classes ("dying hair" → "dyeing hair") stay distinct, as an exact-name rule requires.
    """
    return " ".join(name.casefold().split())


def novel_classes(source: list[str], target: list[str]) -> list[str]:
    """The `target` classes whose normalised name is absent from `source`, in target order."""
    seen = {normalise_class_name(n) for n in source}
    return [n for n in target if normalise_class_name(n) not in seen]


def make_zeroshot_k600(k400_labels: str, k600_labels: str, out: str | Path, eval_list: str | None = None,
                       seeds: tuple[int, ...] = (1, 2, 3), n_classes: int = 160, overwrite: bool = False) -> dict:
    """Zero-shot K600 splits: the K600 classes absent from K400, `n_classes` drawn per seed, sorted by name.

    Draw: numpy default_rng(seed).choice(candidates, n_classes, replace=False), then alphabetical order (the
    published splits are alphabetical). With `eval_list` (a K600 list labelled by `k600_labels`), each split also
    gets its evaluation list: the videos of its classes, in list order, re-indexed to the split's label order.
    """
    out = Path(out)
    k400 = read_label_csv(k400_labels)
    k600 = read_label_csv(k600_labels)
    candidates = novel_classes(k400, k600)
    if len(candidates) < n_classes:
        raise VifiError(f"only {len(candidates)} classes of {k600_labels} are absent from {k400_labels}; "
                        f"cannot draw {n_classes} per split")
    entries = read_annotation_list(eval_list, len(k600)) if eval_list else None
    index = {name: i for i, name in enumerate(k600)}
    splits, files = {}, {}
    for k, seed in enumerate(seeds, start=1):
        rng = np.random.default_rng(seed)
        chosen = sorted(candidates[i] for i in rng.choice(len(candidates), size=n_classes, replace=False))
        videos = reindex(entries, [index[name] for name in chosen]) if entries is not None else None
        files[f"split{k}"] = (chosen, videos)
        splits[f"split{k}"] = {"seed": seed, "classes": len(chosen), "videos": None if videos is None else len(videos)}
    inputs = {"k400_labels": {"path": str(k400_labels), "sha256": sha256_file(k400_labels)},
              "k600_labels": {"path": str(k600_labels), "sha256": sha256_file(k600_labels)}}
    if eval_list:
        inputs["eval_list"] = {"path": str(eval_list), "sha256": sha256_file(eval_list)}
    record = {"protocol": "zeroshot-k600",
              "rule": "candidates = K600 names whose casefolded, whitespace-collapsed form is not a K400 name; per "
                      "seed numpy default_rng(seed).choice(len, n, replace=False); classes sorted by name",
              "candidates": len(candidates), "n_classes": n_classes, "splits": splits, "inputs": inputs}
    with staged_folder(out, "--out", overwrite, RECORD) as tmp:
        for folder, (chosen, videos) in files.items():
            write_label_csv(tmp / folder / "labels.csv", chosen)
            if videos is not None:
                write_annotation_list(tmp / folder / "eval.txt", videos)
        write_json_atomic(tmp / RECORD, record)
    return record
