"""What a protocol evaluates: a suite of datasets, from a YAML file or from command-line flags (one dataset).

A suite file (paths relative to the file):

    protocol: zeroshot
    checkpoint: runs/k400            # zeroshot / supervised: the one model evaluated everywhere
    datasets:
      hmdb51: {root: /data/hmdb51, labels: lists/hmdb51/labels.csv,
               sets: {split1: lists/hmdb51/test1.txt, split2: lists/hmdb51/test2.txt, split3: lists/hmdb51/test3.txt}}
      k600:   {root: /data/k600, sets: {split1: {list: zs/split1/eval.txt, labels: zs/split1/labels.csv}, ...}}

    protocol: base2novel
    datasets:
      ucf101: {root: /data/ucf101, splits: splits/ucf101/base2novel, seeds: [1, 2, 3],
               checkpoints: {1: runs/ucf-s1, 2: runs/ucf-s2, 3: runs/ucf-s3}}   # or `recipe:` with --train

    protocol: fewshot
    datasets:
      ucf101: {root: ..., splits: splits/ucf101/fewshot, val: lists/ucf101/test1.txt, labels: lists/ucf101/labels.csv,
               shots: [2, 4, 8, 16], checkpoints: {2: ..., 4: ...}}                # or `recipe:` with --train
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from vifi.errors import VifiError

PROTOCOLS = ("zeroshot", "base2novel", "fewshot", "supervised")
# The datasets each protocol reports in the paper; a suite without one of them runs only with --partial.
PAPER_DATASETS = {
    "zeroshot": ("hmdb51", "ucf101", "k600"),
    "base2novel": ("k400", "hmdb51", "ucf101", "ssv2"),
    "fewshot": ("hmdb51", "ucf101", "ssv2"),
    "supervised": ("k400",),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalSet(_Strict):
    list: str
    labels: Optional[str] = None  # default: the dataset's labels


class DatasetSuite(_Strict):
    root: str
    labels: Optional[str] = None
    sets: dict[str, Union[str, EvalSet]] = {}  # zeroshot / supervised: split name -> list
    splits: Optional[str] = None  # base2novel / fewshot: folder written by `vifi splits make`
    val: Optional[str] = None  # fewshot: the evaluation list
    seeds: list[int] = [1, 2, 3]
    shots: list[int] = [2, 4, 8, 16]
    checkpoints: dict[str, str] = {}  # seed or K -> checkpoint / run folder
    recipe: Optional[str] = None  # with --train: the recipe each seed / K trains with


class Suite(_Strict):
    protocol: Literal["zeroshot", "base2novel", "fewshot", "supervised"]
    checkpoint: Optional[str] = None
    views: Optional[str] = None
    datasets: dict[str, DatasetSuite]


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise VifiError(f"suite file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise VifiError(f"malformed YAML in suite {path}: {getattr(exc, 'problem', exc)}") from None
    try:
        suite = Suite.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise VifiError(f"suite {path}: '{loc}': {err['msg']}") from None
    return _relative_to(suite, path.parent)


def _relative_to(suite: Suite, folder: Path) -> Suite:
    def fix(p):
        return p if p is None or Path(p).is_absolute() else str(folder / p)

    for ds in suite.datasets.values():
        ds.root, ds.labels, ds.splits, ds.val = fix(ds.root), fix(ds.labels), fix(ds.splits), fix(ds.val)
        ds.sets = {k: (fix(v) if isinstance(v, str) else EvalSet(list=fix(v.list), labels=fix(v.labels)))
                   for k, v in ds.sets.items()}
        ds.checkpoints = {k: fix(v) for k, v in ds.checkpoints.items()}
    suite.checkpoint = fix(suite.checkpoint)
    return suite


def check_complete(suite: Suite, partial: bool) -> list[str]:
    """Names of the paper's datasets the suite lacks; an error unless `partial`."""
    missing = [d for d in PAPER_DATASETS[suite.protocol] if d not in suite.datasets]
    if missing and not partial:
        raise VifiError(f"protocol {suite.protocol} reports {', '.join(PAPER_DATASETS[suite.protocol])}; the suite "
                        f"lacks {', '.join(missing)}. Add it, or pass --partial to run the others only")
    return missing
