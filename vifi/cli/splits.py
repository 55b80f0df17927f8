"""`vifi splits make base2novel|fewshot`: protocol split lists from prepared annotation lists."""

from __future__ import annotations

from pathlib import Path

import typer

from vifi import console

splits_app = typer.Typer(help="Generate protocol splits (base-to-novel, K-shot) from annotation lists.",
                         no_args_is_help=True)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    from vifi.errors import VifiError

    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise VifiError(f"{flag} {text!r} must be comma-separated integers, e.g. 1,2,3") from None
    if not values or any(v < 1 for v in values):
        raise VifiError(f"{flag} {text!r} must list positive integers")
    return values


@splits_app.command("make", help="Protocol splits from prepared lists, with a split.json record."
                                    "\n\nExample: vifi splits make base2novel --train train1.txt --val test1.txt "
                                    "--labels labels.csv --out splits/ucf101/b2n")
def make(
    protocol: str = typer.Argument(..., help="base2novel | fewshot | k600-zeroshot"),
    train: str = typer.Option(None, "--train", help="training list (path label, 0-based)"),
    labels: str = typer.Option(..., "--labels", help="label CSV (id,name); for k600-zeroshot the K600 one"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    val: str = typer.Option(None, "--val", help="validation/test list (base2novel; fewshot: checked and recorded)"),
    shots: str = typer.Option(None, "--shots", help="K (base2novel: one value, default 16; fewshot: default 2,4,8,16)"),
    seeds: str = typer.Option(None, "--seeds", help="few-shot seeds (base2novel, k600-zeroshot; default 1,2,3)"),
    seed: int = typer.Option(1, "--seed", help="generator seed (fewshot)"),
    k400_labels: str = typer.Option(None, "--k400-labels", help="K400 label CSV (k600-zeroshot), e.g. splits/kinetics400.csv"),
    classes: int = typer.Option(160, "--classes", help="classes per split (k600-zeroshot)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing split folder (made by vifi splits)"),
) -> None:
    from vifi.errors import VifiError
    from vifi.splits import make_base2novel, make_kshot, make_zeroshot_k600

    if protocol not in ("base2novel", "fewshot", "k600-zeroshot"):
        raise VifiError(f"unknown split protocol {protocol!r}; use base2novel, fewshot or k600-zeroshot")
    for flag, given in (("--train", train), ("--labels", labels), ("--val", val), ("--k400-labels", k400_labels)):
        if given and not Path(given).is_file():
            raise VifiError(f"{flag} {given}: file not found")
    if protocol == "k600-zeroshot":
        if not k400_labels:
            raise VifiError("k600-zeroshot needs --k400-labels (e.g. splits/kinetics400.csv) and --labels (K600's)")
        record = make_zeroshot_k600(k400_labels, labels, out, eval_list=val, seeds=_ints(seeds or "1,2,3", "--seeds"),
                                    n_classes=classes, overwrite=overwrite)
        console.note(f"k600-zeroshot: {record['candidates']} K600 classes absent from K400; "
              f"{len(record['splits'])} splits of {classes} -> {out}")
        return
    if not train:
        raise VifiError(f"{protocol} needs --train (the training list); a dataset without a training split "
                        "cannot give base/novel counts or K-shot samples")
    if protocol == "base2novel":
        if not val:
            raise VifiError("base2novel needs --val (the test list to split into base_val / novel_val)")
        k = _ints(shots or "16", "--shots")
        if len(k) != 1:
            raise VifiError("base2novel takes one --shots value")
        record = make_base2novel(train, val, labels, out, shots=k[0], seeds=_ints(seeds or "1,2,3", "--seeds"),
                                 overwrite=overwrite)
        console.note(f"base2novel: {record['n_base']} base / {record['n_novel']} novel classes, "
              f"{len(record['seeds'])} few-shot seeds of {k[0]} -> {out}")
    else:
        if seeds is not None:  # one generator seed draws every K; silently ignoring --seeds would mislead
            raise VifiError("fewshot draws all K from one generator seed: use --seed N (--seeds is for base2novel "
                            "and k600-zeroshot)")
        record = make_kshot(train, labels, out, shots=_ints(shots or "2,4,8,16", "--shots"), seed=seed, val_list=val,
                            overwrite=overwrite)
        console.note(f"fewshot: K = {', '.join(map(str, record['shots']))} -> {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(splits_app, name="splits")
