"""Annotation lists (`relative/path label` per line) and label CSVs (`id,name`, class index = row order).

The label is the LAST whitespace-separated field of a list line and the path is everything before it, so paths may
hold spaces, commas, quotes or any unicode (Kinetics class folders have spaces); docs/data.md describes the format.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vifi.errors import VifiError


@dataclass(frozen=True)
class Entry:
    path: str  # as written in the list, relative to the video root
    label: int


def read_label_csv(path: str | Path) -> list[str]:
    """Class names in row order. The `id` column is ignored, as in the reference: the row is the index."""
    path = Path(path)
    if not path.is_file():
        raise VifiError(f"label CSV not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise VifiError(f"label CSV {path} is empty; it needs an 'id,name' header and one row per class")
        header = [h.strip().lower() for h in header]
        if "name" not in header:
            raise VifiError(f"label CSV {path}: header must contain 'name' (expected 'id,name'), got {','.join(header)}")
        col = header.index("name")
        names = []
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= col or not row[col].strip():
                raise VifiError(f"{path}:{lineno}: row has an empty class name: {','.join(row)!r}; give every "
                                "class a name")
            names.append(row[col].strip())
    if not names:
        raise VifiError(f"label CSV {path} lists no classes")
    dupes = [n for n, count in Counter(names).items() if count > 1]  # one pass: names.count per name was O(C²)
    if dupes:
        raise VifiError(f"label CSV {path}: duplicated class name {min(dupes)!r}")
    return names


def write_label_csv(path: str | Path, names: list[str]) -> None:
    from vifi.fileio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["id", "name"])
            for i, name in enumerate(names):
                writer.writerow([i, name])


def read_annotation_list(path: str | Path, num_classes: int | None = None) -> list[Entry]:
    """Entries of a `path label` list: the label is the last whitespace-separated field, the path all before it.

    Surrounding whitespace (CRLF, tabs) is ignored as in the reference's whitespace split; a UTF-8 BOM is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise VifiError(f"annotation list not found: {path}")
    entries = []
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.strip().rsplit(maxsplit=1)
            if not parts:
                continue
            if len(parts) != 2:
                raise VifiError(f"{path}:{lineno}: expected 'relative/path label', got {line.strip()!r}")
            try:
                label = int(parts[1])
            except ValueError:
                raise VifiError(f"{path}:{lineno}: label {parts[1]!r} is not an integer (the label is the last "
                                "field of the line)") from None
            if label < 0 or (num_classes is not None and label >= num_classes):
                raise VifiError(f"{path}:{lineno}: label {label} is out of range for {num_classes} classes "
                                f"(labels are 0-based rows of the label CSV)")
            entries.append(Entry(parts[0], label))
    if not entries:
        raise VifiError(f"annotation list {path} is empty")
    return entries


def write_annotation_list(path: str | Path, entries: list[Entry]) -> None:
    from vifi.fileio import write_text_atomic

    for e in entries:
        # a path with a line break or surrounding whitespace cannot be read back from a one-line-per-video list
        if not e.path or e.path != e.path.strip() or "\n" in e.path or "\r" in e.path:
            raise VifiError(f"cannot write {e.path!r} to the list {path}: a listed path must not start or end with "
                            "whitespace or hold a line break; rename the file")
    write_text_atomic(path, "".join(f"{e.path} {e.label}\n" for e in entries))


def read_path_lines(path: str | Path) -> list[str]:
    """A one-path-per-line file (quarantine.txt): whole lines, so paths with spaces survive; BOM and blanks dropped."""
    text = Path(path).read_text(encoding="utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_videos_exist(entries: list[Entry], root: str | Path, list_name: str) -> None:
    root = Path(root)
    if root.is_file():
        raise VifiError(f"video root {root} is a file; give the folder the list's paths are relative to (--root)")
    if not root.is_dir():
        raise VifiError(f"video root not found: {root}")
    missing = [e.path for e in entries if not (root / e.path).is_file()]
    if missing:
        raise VifiError(f"{len(missing)} of {len(entries)} videos in {list_name} are missing under {root} "
                        f"(first: {missing[0]}); fix the list or the --root")
