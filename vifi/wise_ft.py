"""`vifi eval --wise-ft α,…`: weight-space ensembles (1 − α)·A + α·B of a zero-shot model A and a fine-tuned model
B (vifi.model.merge), each evaluated in memory (no weight file is written), one table row per α.

Single list: OUT/alpha-<α>/ holds each α's evaluation (the files of a normal `vifi eval`), OUT/results.* the table
(one row per α). Protocol: OUT/alpha-<α>/ holds each α's protocol run (its own aggregated table), OUT/results.* one
aggregated row per α (per dataset, per K for few-shot); fine-tunes (`--fine-tune`) are shared by every α and live
where a normal protocol run keeps them, OUT/<dataset>/<seed|K>/train. Both ends are loaded once (A once for the
whole run, B once per seed/K), never once per α.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vifi import console
from vifi.model.merge import SideKind, WeightEnsemble, alpha_label, load_side


@dataclass(frozen=True)
class WiseFt:
    alphas: list[float]
    zero_shot: str  # model A: --wise-ft-from, else --clip
    zero_shot_kind: SideKind  # "clip" when A is --clip (plain CLIP weights), "any" for --wise-ft-from
    clip: str | None = None  # the token table a paper .pth needs (eval's --clip)
    arch: str = "ViT-B-16"  # architecture of an open_clip tag

    def load_zero_shot(self):
        return load_side(self.zero_shot, "A", kind=self.zero_shot_kind, clip=self.clip, arch=self.arch)

    def ensemble(self, side_a, checkpoint: str) -> WeightEnsemble:
        return WeightEnsemble(side_a, load_side(checkpoint, "B", kind="checkpoint", clip=self.clip, arch=self.arch))


def alpha_dir(out: Path, alpha: float) -> Path:
    return Path(out) / f"alpha-{alpha_label(alpha)}"


def model_a_record(wise: WiseFt) -> dict:
    """Model A in an inputs record: its weights file by sha256 when it is a path, else the tag as given."""
    from vifi.results import model_record

    if Path(wise.zero_shot).exists():
        return model_record(wise.zero_shot)
    return model_record(None, clip=wise.zero_shot, arch=wise.arch)


def resolved_facts(ensemble: WeightEnsemble, frames: int | None, vanilla: bool):
    """B's facts with --frames/--vanilla applied once (so a contradicting flag draws its notice once, not per α)."""
    from vifi.model.facts import inference_inputs

    inputs = inference_inputs(ensemble.b.facts, frames=frames, vanilla=vanilla)
    return dataclasses.replace(ensemble.b.facts, frames=inputs.frames, template=inputs.template, path=None)


def provenance_of(ensemble: WeightEnsemble, alphas: list[float]) -> dict[str, Any]:
    return {"alphas": alphas, "a": ensemble.a.source, "a_sha256": ensemble.a.sha256, "b": ensemble.b.source,
            "b_sha256": ensemble.b.sha256}


# ---- one list ------------------------------------------------------------------------------------------------
def run_wise_ft_eval(wise: WiseFt, checkpoint: str, data: str, labels: str, root: str, out: Path, *,
                     frames: int | None = None, clips: int = 1, crops: int = 1, batch: int = 8,
                     num_workers: int = 2, device: str | None = None, vanilla: bool = False,
                     reference_multiclip: bool = False, show_progress: bool = True, skip_undecodable: bool = False,
                     backend: str = "decord", limit: int | None = None, overwrite: bool = False,
                     compile: bool | None = None) -> pd.DataFrame:
    """The table (one row per α). A rerun into a finished OUT needs `overwrite`, as a normal eval; the α folders
    are parts of OUT and are rewritten with it."""
    from vifi.engine.runtime import setup_runtime
    from vifi.fileio import check_output_path
    from vifi.outfolder import replaced_when_done
    from vifi.results import model_record
    from vifi.run_folder import RunFolder
    from vifi.runs import check_eval_out, eval_inputs

    out = Path(out)
    check_eval_out(out, overwrite)
    for alpha in wise.alphas:
        check_output_path(alpha_dir(out, alpha), folder=True)
    names, entries = eval_inputs(data, labels, root, limit)
    model = {"a": model_a_record(wise), "b": model_record(checkpoint)}
    runtime = setup_runtime(device)
    ensemble = wise.ensemble(wise.load_zero_shot(), checkpoint)
    ensemble.model.to(runtime.device)
    facts = resolved_facts(ensemble, frames, vanilla)
    # The whole of OUT (table and α folders) is built beside the previous result and swapped in at the end.
    with replaced_when_done(out, overwrite, RunFolder(out).results_json.name, active=runtime.is_main) as dest:
        return _evaluate_alphas(wise, ensemble, facts, names, entries, dest, runtime, model, data=data,
                                labels=labels, root=root, frames=frames, clips=clips, crops=crops, batch=batch,
                                num_workers=num_workers, vanilla=vanilla, reference_multiclip=reference_multiclip,
                                show_progress=show_progress, skip_undecodable=skip_undecodable, backend=backend,
                                limit=limit, compile=compile)


def _evaluate_alphas(wise, ensemble, facts, names, entries, out: Path, runtime, model: dict, *, data, labels, root,
                     frames, clips, crops, batch, num_workers, vanilla, reference_multiclip, show_progress,
                     skip_undecodable, backend, limit, compile) -> pd.DataFrame:
    from vifi.results import print_table, provenance, write_table
    from vifi.runs import EVAL_SETTINGS, eval_record, evaluate_loaded

    rows, last = [], {}
    for alpha in wise.alphas:
        inputs = eval_record(model, data, labels, root, entries, clips=clips, crops=crops, frames=frames,
                             vanilla=vanilla, limit=limit, reference_multiclip=reference_multiclip, alpha=alpha)
        last = evaluate_loaded(ensemble.set_alpha(alpha), facts, ensemble.describe(alpha), names, entries,
                               alpha_dir(out, alpha), runtime, data=data, root=root, clips=clips, crops=crops,
                               batch=batch, num_workers=num_workers, reference_multiclip=reference_multiclip,
                               show_progress=show_progress, skip_undecodable=skip_undecodable, backend=backend,
                               limit=limit, compile=compile, to_stdout=False, record=inputs)
        rows.append({"alpha": alpha, "videos": last["n_videos"], "top1": round(last["top1"], 2),
                     "top5": round(last["top5"], 2), "mean_class_top1": round(last.get("mean_class_top1", 0.0), 2)})
    table = pd.DataFrame(rows)
    if runtime.is_main:
        title = "WiSE-FT: (1 - alpha) * A + alpha * B"
        summary = {"wise_ft": provenance_of(ensemble, wise.alphas), "data": str(data), "n_classes": len(names),
                   "views": f"{clips}x{crops}", "frames": facts.frames,
                   "text": "bare class names" if facts.template is None else facts.template,
                   **({"limit": limit} if limit is not None else {})}
        config = {**{k: v for k, v in summary.items() if k in EVAL_SETTINGS}, "wise_ft": summary["wise_ft"]}
        write_table(out, table, {**summary, "provenance": provenance(device=runtime.device, config=config)}, title)
        print_table(table, title)
    return table


# ---- a protocol ----------------------------------------------------------------------------------------------
def run_wise_ft_protocol(wise: WiseFt, suite, out: Path, *, train: bool = False, overrides: list[str] | None = None,
                         views: tuple[int, int] = (1, 1), batch: int = 8, num_workers: int = 2,
                         device: str | None = None, show_progress: bool = True) -> dict[float, tuple]:
    """{α: (runs, summary)} as `run_protocol` gives them for one model. Finished evaluations are read back and
    stopped fine-tunes resume, so rerunning the command continues it; a model is loaded only when something is
    left to evaluate with it."""
    from vifi.engine.runtime import setup_runtime
    from vifi.protocols.aggregate import summarise
    from vifi.outfolder import replaced_when_done
    from vifi.protocols.runner import (check_fine_tunes, finished_result, plan, task_record, unit_model, unit_row,
                                       validate_inputs)
    from vifi.results import model_record
    from vifi.run_folder import RunFolder
    from vifi.runs import eval_inputs, evaluate_loaded

    out = Path(out)
    units = plan(suite, train=train)
    validate_inputs(units)
    check_fine_tunes(units, out, overrides or [])
    a_record = model_a_record(wise)
    runtime = setup_runtime(device)
    side_a = None
    records: dict[float, list] = {alpha: [] for alpha in wise.alphas}
    for unit in units:
        checkpoint, _ = unit_model(unit, out / unit.dataset / unit.key, overrides, device, show_progress)
        ensemble = facts = current = None
        for alpha in wise.alphas:
            results = {}
            for task in unit.evals:
                dest = alpha_dir(out, alpha) / unit.dataset / unit.key / task.role
                inputs = task_record(task, unit, checkpoint, views, alpha=alpha,
                                     model={"a": a_record, "b": model_record(checkpoint)})
                results[task.role] = finished_result(dest, inputs)
                if results[task.role] is not None:
                    continue
                if ensemble is None:
                    side_a = side_a or wise.load_zero_shot()
                    ensemble = wise.ensemble(side_a, checkpoint)
                    ensemble.model.to(runtime.device)
                    facts = resolved_facts(ensemble, None, False)
                if current != alpha:
                    ensemble.set_alpha(alpha)
                    current = alpha
                names, entries = eval_inputs(task.data, task.labels, unit.root)
                with replaced_when_done(dest, True, RunFolder(dest).results_json.name,
                                        active=runtime.is_main) as where:
                    results[task.role] = evaluate_loaded(
                        ensemble.model, facts, ensemble.describe(alpha), names, entries, where, runtime,
                        data=task.data, root=unit.root, clips=views[0], crops=views[1], batch=batch,
                        num_workers=num_workers, show_progress=show_progress, to_stdout=False, record=inputs)
            records[alpha].append(unit_row(unit, checkpoint, results, extra={"alpha": alpha}))
        if ensemble is not None:
            ensemble.model.to("cpu")  # the next seed's B takes its place on the device
    return {alpha: (pd.DataFrame(rows), summarise(suite.protocol, pd.DataFrame(rows)))
            for alpha, rows in records.items()}


def run_and_report_wise_ft(wise: WiseFt, suite, out: Path, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each α's protocol report in OUT/alpha-<α>/, and OUT's report with one aggregated row per α."""
    from vifi.protocols.report import NOTES, shown, write_report
    from vifi.results import print_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_alpha = run_wise_ft_protocol(wise, suite, out, **kwargs)
    views = kwargs.get("views", (1, 1))
    for alpha, (runs, summary) in per_alpha.items():
        write_report(alpha_dir(out, alpha), suite.protocol, runs, summary, views, device=kwargs.get("device"))
    runs = pd.concat([r for r, _ in per_alpha.values()], ignore_index=True)
    summary = pd.concat([s.assign(alpha=alpha)[["alpha", *s.columns]] for alpha, (_, s) in per_alpha.items()],
                        ignore_index=True)
    write_report(out, suite.protocol, runs, summary, views,
                 extra={"wise_ft": {"alphas": wise.alphas, "a": wise.zero_shot,
                                    "a_sha256": model_a_record(wise).get("sha256")}},
                 device=kwargs.get("device"),
                 heading="WiSE-FT: one aggregated row per alpha, (1 - alpha) * A + alpha * B")
    print_table(runs[[c for c in runs.columns if c != "checkpoint" and "top5" not in c]],
                f"{suite.protocol}: per alpha and split/seed", to_stdout=False)
    print_table(shown(summary), f"{suite.protocol}: aggregated per alpha")
    console.note(NOTES[suite.protocol])
    return runs, summary
