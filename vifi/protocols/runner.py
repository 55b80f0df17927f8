"""Run every evaluation (and, with `train`, every fine-tune) a protocol needs, then one aggregated table.

Layout under OUT: `<dataset>/<split|seed-k|K-k>/train` (a normal run folder, resumable) and `.../<role>` (one
`vifi eval` folder per list). Finished pieces are reused, so re-running the same command continues a chain that was
stopped: a training run continues from its last checkpoint, finished evaluations are read back, not redone.
A piece is reused only when it was made from the same inputs: an evaluation's results.json carries an inputs record
(model sha256, lists, root, videos' size and mtime, views …) that must match, else it is evaluated again and
replaced whole; a fine-tune's config.yaml must match the recipe and --set values, else the run is refused before
any work (docs/reliability.md, "Results read back").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vifi import console
from vifi.data.annotations import check_videos_exist, read_annotation_list, read_label_csv
from vifi.errors import VifiError
from vifi.protocols.aggregate import summarise
from vifi.protocols.suite import DatasetSuite, EvalSet, Suite
from vifi.run_folder import RunFolder


@dataclass
class EvalTask:
    role: str  # test | base | novel
    data: str
    labels: str


@dataclass
class Unit:
    """One model (given, or trained here) and the lists it is evaluated on."""

    dataset: str
    key: str  # split1 / seed1 / K16 ...
    root: str
    checkpoint: str | None
    evals: list[EvalTask]
    train: dict | None = None  # {"recipe", "train_list", "val_list", "labels"}
    info: dict = field(default_factory=dict)


def plan(suite: Suite, *, train: bool) -> list[Unit]:
    units = []
    for name, ds in suite.datasets.items():
        if suite.protocol in ("zeroshot", "supervised"):
            units += _plan_sets(suite, name, ds)
        elif suite.protocol == "base2novel":
            units += _plan_base2novel(name, ds, train)
        else:
            units += _plan_fewshot(name, ds, train)
    return units


def _plan_sets(suite: Suite, name: str, ds: DatasetSuite) -> list[Unit]:
    if not suite.checkpoint:
        raise VifiError(f"protocol {suite.protocol} evaluates one model: pass --checkpoint")
    if not ds.sets:
        raise VifiError(f"dataset {name}: no evaluation lists (sets) given")
    units = []
    for key, item in ds.sets.items():
        item = EvalSet(list=item) if isinstance(item, str) else item
        labels = item.labels or ds.labels
        if not labels:
            raise VifiError(f"dataset {name}, {key}: no label CSV (set labels for the dataset or the split)")
        units.append(Unit(name, key, ds.root, suite.checkpoint, [EvalTask("test", item.list, labels)]))
    return units


def _model_for(name: str, ds: DatasetSuite, key: str, train: bool, what: str) -> str | None:
    if train:
        return None
    ckpt = ds.checkpoints.get(key)
    if ckpt is None:
        raise VifiError(f"dataset {name}: no checkpoint for {what} {key}; give checkpoints for every {what} "
                        "(or pass --train to fine-tune them here)")
    return ckpt


def _plan_base2novel(name: str, ds: DatasetSuite, train: bool) -> list[Unit]:
    if not ds.splits:
        raise VifiError(f"dataset {name}: base2novel needs `splits`, the folder of `vifi splits make base2novel`")
    folder = Path(ds.splits)
    base_labels, novel_labels = str(folder / "base_labels.csv"), str(folder / "novel_labels.csv")
    units = []
    for seed in ds.seeds:
        unit = Unit(name, f"seed{seed}", ds.root, _model_for(name, ds, str(seed), train, "seed"),
                    [EvalTask("base", str(folder / "base_val.txt"), base_labels),
                     EvalTask("novel", str(folder / "novel_val.txt"), novel_labels)], info={"seed": seed})
        if train:
            unit.train = {"recipe": ds.recipe or "b2n", "train_list": str(folder / f"fs_base_s{seed}_train.txt"),
                          "val_list": str(folder / "base_val.txt"), "labels": base_labels}
        units.append(unit)
    return units


def _plan_fewshot(name: str, ds: DatasetSuite, train: bool) -> list[Unit]:
    if not (ds.splits and ds.val and ds.labels):
        raise VifiError(f"dataset {name}: fewshot needs `splits` (folder of `vifi splits make fewshot`), `val` and "
                        "`labels`")
    units = []
    for k in ds.shots:
        unit = Unit(name, f"K{k}", ds.root, _model_for(name, ds, str(k), train, "K"),
                    [EvalTask("test", ds.val, ds.labels)], info={"K": k})
        if train:
            unit.train = {"recipe": ds.recipe or "fewshot", "train_list": str(Path(ds.splits) / f"train_few_shot_{k}.txt"),
                          "val_list": ds.val, "labels": ds.labels}
        units.append(unit)
    return units


def validate_inputs(units: list[Unit]) -> None:
    """Every list, label file and video is checked before anything runs: no failure after hours of compute."""
    seen = set()
    for unit in units:
        lists = [(t.data, t.labels) for t in unit.evals]
        if unit.train:
            lists.append((unit.train["train_list"], unit.train["labels"]))
        for data, labels in lists:
            if (data, labels) in seen:
                continue
            seen.add((data, labels))
            names = read_label_csv(labels)
            check_videos_exist(read_annotation_list(data, num_classes=len(names)), unit.root, data)
        roles = {t.role: t for t in unit.evals}
        if "base" in roles and "novel" in roles:
            both = set(read_label_csv(roles["base"].labels)) & set(read_label_csv(roles["novel"].labels))
            if both:
                raise VifiError(f"dataset {unit.dataset}: base and novel classes overlap ({sorted(both)[0]!r} is in "
                                f"both {roles['base'].labels} and {roles['novel'].labels}); regenerate the split")


def run_protocol(suite: Suite, out: Path, *, train: bool = False, overrides: list[str] | None = None,
                 views: tuple[int, int] = (1, 1), batch: int = 8, num_workers: int = 2, device: str | None = None,
                 show_progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    units = plan(suite, train=train)
    validate_inputs(units)
    check_fine_tunes(units, out, overrides or [])
    records = []
    for unit in units:
        unit_dir = out / unit.dataset / unit.key
        checkpoint, train_result = unit_model(unit, unit_dir, overrides, device, show_progress)
        results = {task.role: _evaluate(task, unit, checkpoint, unit_dir / task.role, train_result, views, batch,
                                        num_workers, device, show_progress) for task in unit.evals}
        records.append(unit_row(unit, checkpoint, results))
    runs = pd.DataFrame(records)
    return runs, summarise(suite.protocol, runs)


def unit_model(unit: Unit, unit_dir: Path, overrides: list[str] | None, device, show_progress: bool):
    """(the unit's checkpoint, its fine-tune's final evaluation or None): given, or trained in `unit_dir`/train."""
    if unit.train:
        return _train(unit, unit_dir / "train", overrides or [], device, show_progress)
    return unit.checkpoint, None


def unit_row(unit: Unit, checkpoint: str, results: dict[str, dict], extra: dict | None = None) -> dict:
    """The unit's row of runs.csv from the results of its evaluations (by role); said on stderr too."""
    row = {**(extra or {}), "dataset": unit.dataset, **({"split": unit.key} if not unit.info else unit.info)}
    for task in unit.evals:
        res = results[task.role]
        prefix = "" if task.role == "test" else f"{task.role}_"
        row.update({f"{prefix}top1": round(res["top1"], 2), f"{prefix}top5": round(res["top5"], 2),
                    f"{prefix}videos": res["n_videos"]})
    row["checkpoint"] = str(checkpoint)
    said = ", ".join(f"{k} {v}" for k, v in row.items() if "top1" in k)
    console.note(f"{unit.dataset} {unit.key}" + "".join(f" {k} {v}" for k, v in (extra or {}).items()) + f": {said}")
    return row


def finished_result(out: Path, wanted: dict) -> dict | None:
    """The results.json of an evaluation folder that finished from exactly the `wanted` inputs record (what a rerun
    reads back instead of recomputing); None, with a notice naming what differs, when it was made otherwise."""
    import json

    from vifi.results import differences

    run = RunFolder(out)
    if not run.finished:
        return None
    try:
        done = json.loads(run.results_json.read_text())
    except ValueError:
        done = {}
    differ = differences(done.get("inputs"), wanted)
    if not differ:
        return done
    console.note(f"{out}: its results were made from other inputs ({', '.join(differ)}); evaluating again")
    return None


def task_record(task: EvalTask, unit: Unit, checkpoint: str, views, **extra) -> dict:
    """The inputs record an evaluation of `task` with `checkpoint` gets (vifi/runs.py eval_record)."""
    from vifi.results import model_record
    from vifi.runs import eval_inputs, eval_record

    _, entries = eval_inputs(task.data, task.labels, unit.root)
    model = extra.pop("model", None) or model_record(checkpoint)
    return eval_record(model, task.data, task.labels, unit.root, entries, clips=views[0], crops=views[1], **extra)


def check_fine_tunes(units: list[Unit], out: Path, overrides: list[str]) -> None:
    """Before any work: a fine-tune folder this command would continue or read back must have been started with
    this recipe and these --set values (keys that change only speed or logging aside); else one error line."""
    from vifi.config import flatten
    from vifi.runs import SAFE_ON_RESUME, saved_config

    for unit in units:
        run_dir = out / unit.dataset / unit.key / "train"
        if not unit.train or not RunFolder(run_dir).config.is_file():
            continue
        wanted, saved = flatten(_train_config(unit, overrides)), flatten(saved_config(run_dir))
        differ = [k for k, v in wanted.items() if k not in SAFE_ON_RESUME and v != "auto" and saved.get(k) != v]
        if differ:
            listed = ", ".join(f"{k} ({saved.get(k)!r} there, {wanted[k]!r} now)" for k in differ[:4])
            raise VifiError(f"{run_dir} was fine-tuned with other settings: {listed}"
                            f"{f' and {len(differ) - 4} more' if len(differ) > 4 else ''}; rerun with the same "
                            "--recipe and --set values to continue, or give another --out")


def _train_config(unit: Unit, overrides: list[str]):
    from vifi.config import load_config

    t = unit.train
    return load_config(t["recipe"], list(overrides) + [
        f"data.train_list={t['train_list']}", f"data.val_list={t['val_list']}", f"data.labels={t['labels']}",
        f"data.root={unit.root}", "data.demo=false"])


def _train(unit: Unit, run_dir: Path, overrides: list[str], device, show_progress):
    from vifi.runs import run_finetune, saved_config

    run = RunFolder(run_dir)
    if run.finished:
        import json

        console.note(f"{unit.dataset} {unit.key}: training already finished in {run_dir}")
        done = json.loads(run.results_json.read_text())
        return str(run_dir), {**done, "data": unit.train["val_list"]}
    resume = run.started
    cfg = saved_config(run_dir) if resume else _train_config(unit, overrides)
    console.note(f"{unit.dataset} {unit.key}: {'resuming' if resume else 'training'} {cfg.name} in {run_dir}")
    result = run_finetune(cfg, run_dir, resume=resume, device=device, show_progress=show_progress)
    return str(run_dir), {**result, "data": unit.train["val_list"], "views": f"{cfg.eval.final_clips or cfg.eval.clips}x"
                          f"{cfg.eval.final_crops or cfg.eval.crops}"}


def _evaluate(task: EvalTask, unit: Unit, checkpoint: str, out: Path, train_result, views, batch, num_workers,
              device, show_progress) -> dict:
    from vifi.runs import run_eval

    if train_result is not None and train_result.get("data") == task.data and \
            train_result.get("views") == f"{views[0]}x{views[1]}":
        return train_result  # the fine-tune's last-epoch evaluation is this very evaluation
    done = finished_result(out, task_record(task, unit, checkpoint, views))
    if done is not None:
        return done
    return run_eval(checkpoint, task.data, task.labels, unit.root, out, clips=views[0], crops=views[1], batch=batch,
                    num_workers=num_workers, device=device, show_progress=show_progress, overwrite=True)
