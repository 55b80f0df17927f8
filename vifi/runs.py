"""Runs: a config + a folder -> a trained model and its result files. What the CLI's finetune and eval call."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vifi import console
from vifi.config import RunConfig, dump_config, flatten
from vifi.data.annotations import check_videos_exist, read_annotation_list, read_label_csv, read_path_lines
from vifi.data.dataset import ClipSpec, EvalClips, TrainClips
from vifi.engine.evaluate import EvalResult, class_text_features, evaluate
from vifi.engine.runtime import Runtime, seed_everything, set_deterministic, setup_runtime
from vifi.errors import VifiError
from vifi.fileio import check_output_path, write_text_atomic
from vifi.preflight import check_decodable
from vifi.results import print_table, write_table
from vifi.run_folder import RunFolder

# What --resume may change without changing training (applied, and said so); any other difference is refused.
SAFE_ON_RESUME = ("data.num_workers", "data.backend", "train.log_every", "train.save_every", "train.keep_last",
                  "eval.batch", "eval.skip_undecodable", "train.report_to")


def check_run_request(run: RunFolder, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber: a finished run needs --overwrite; a run in progress needs --resume or --overwrite.

    Read-only: nothing is created or removed here (clearing waits until every new input is validated).
    """
    if resume and overwrite:
        raise VifiError("--resume and --overwrite contradict each other; pick one")
    check_output_path(run.path, folder=True)
    if resume:
        if not run.started:
            raise VifiError(f"--resume: {run.path} has no checkpoint to continue from; start the run without --resume")
        return
    if (run.finished or run.started) and not overwrite:
        what = "a finished run" if run.finished else "a run in progress (continue it with --resume)"
        raise VifiError(f"{run.path} already holds {what}; pass --overwrite to replace it or choose another --out")
    if not overwrite and not run.lock_file.exists():  # every run takes the lock before it writes anything
        foreign = [p.name for p in run.run_files() if p.exists()]
        if foreign:
            raise VifiError(f"{run.path} holds {', '.join(foreign)}, which no vifi run wrote there; choose another "
                            "--out, or pass --overwrite to replace them")


@contextmanager
def claimed(run: RunFolder, is_main: bool):
    """Lock the folder for this run (main process); if the folder is new and the run fails, remove it again."""
    created = not run.path.exists()
    if is_main:
        run.lock()
    try:
        yield run
    except BaseException:
        if created and is_main and not run.config.exists():  # failed before training: nothing worth keeping
            shutil.rmtree(run.path, ignore_errors=True)  # a folder only this failed attempt made
        raise
    finally:
        run.unlock()


def saved_config(out: Path) -> RunConfig:
    """The resolved config a run folder was started with: what --resume continues."""
    import yaml

    from vifi.config import validate_config

    path = RunFolder(out).config
    if not path.is_file():
        raise VifiError(f"--resume: {path} not found; start the run without --resume")
    return validate_config(yaml.safe_load(path.read_text()), where=str(path))


def resume_config(out: Path, overrides: list[str], values: dict[str, Any], *, say: bool = True) -> RunConfig:
    """The saved config with this command's --set strings and flags applied, if they change nothing that
    training depends on; safe changes (SAFE_ON_RESUME) are applied and said so, any other is refused by name.

    Only what the command gives explicitly counts: recipe defaults are not re-read, so `--resume` with a short
    command continues the run as it was started. `micro_batch: auto` matches the number it was resolved to.
    """
    from vifi.config import apply_overrides

    saved = saved_config(out)
    values = {k: v for k, v in values.items() if not (k == "train.micro_batch" and v == "auto")}
    overrides = [o for o in overrides if o.replace(" ", "") != "train.micro_batch=auto"]
    requested = apply_overrides(saved.model_dump(mode="json"), overrides, values, where="the --resume command")
    before, after = flatten(saved), flatten(requested)
    changed = {k: (before[k], v) for k, v in after.items() if v != before[k]}
    unsafe = [k for k in changed if k not in SAFE_ON_RESUME]
    if unsafe:
        listed = ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in unsafe)
        raise VifiError(f"--resume: these values differ from the run's config.yaml in {out} and would change "
                        f"training: {listed}; drop them to continue the run, or start a new run (--overwrite or "
                        "another --out)")
    if changed and say:
        console.note("resume: applying " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    return requested


def wants_resume(out: Path, resume: bool, auto_resume: bool, overwrite: bool) -> bool:
    """--resume, or --auto-resume where the folder holds a checkpoint or a finished run (a requeue of a job that
    completed must find it complete, not start it again)."""
    if auto_resume and not overwrite:
        run = RunFolder(out)
        return run.started or run.finished
    return resume


def already_complete(out: Path, overrides: list[str], values: dict[str, Any]) -> bool:
    """A --resume of a finished run is a no-op: the command is still checked against the run's config.yaml (a
    change that would alter training is refused as for any resume), then one line, and nothing is written or
    locked, so every file keeps its bytes and mtime (docs/reliability.md)."""
    run = RunFolder(out)
    if not run.finished:
        return False
    if run.config.is_file():
        resume_config(out, overrides, values, say=False)
    console.note(f"{out}: the run is complete ({run.results_json.name} written); nothing to resume, no file "
                 "changed (pass --overwrite to train it again)")
    return True


def resolve_data(cfg: RunConfig, out: Path) -> RunConfig:
    """Fill the demo dataset's paths (generating it on first use) when the config asks for the demo."""
    d = cfg.data
    if d.demo and not (d.train_list and d.val_list and d.labels and d.root):
        from vifi.data.demo import generate_demo

        files = generate_demo(out / "demo-data")
        # Only the paths not given: a given (e.g. misspelled) --data must fail, not be replaced by the demo's.
        update = {k: str(files[k]) for k in ("train_list", "val_list", "labels", "root") if not getattr(d, k)}
        cfg = cfg.model_copy(update={"data": d.model_copy(update=update)})
    return cfg


def skip_quarantined(entries, cfg: RunConfig, verbose: bool):
    """Training leaves out the videos `vifi prepare --check` quarantined, and says how many."""
    path = cfg.data.quarantine
    if path is None:
        beside = Path(cfg.data.train_list).parent / "quarantine.txt"
        path = str(beside) if beside.is_file() else None
    if path is None:
        return entries
    if not Path(path).is_file():
        raise VifiError(f"data.quarantine {path}: file not found")
    bad = set(read_path_lines(path))  # whole lines: quarantined paths may hold spaces
    kept = [e for e in entries if e.path not in bad]
    if verbose and len(kept) < len(entries):
        console.note(f"skipping {len(entries) - len(kept)} quarantined training videos listed in {path}")
    if not kept:
        raise VifiError(f"every training video is quarantined in {path}")
    return kept


def load_split(list_path: str | None, labels: list[str], root: str | None, what: str):
    if not list_path:
        raise VifiError(f"no {what} list given: set data.{what}_list (or pass --data)")
    if not root:
        raise VifiError("no video root given: set data.root (or pass --root)")
    entries = read_annotation_list(list_path, num_classes=len(labels))
    check_videos_exist(entries, root, list_path)
    return entries


def run_finetune(cfg: RunConfig, out: Path, *, overwrite: bool = False, resume: bool = False,
                 device: str | None = None, deterministic: bool = False, show_progress: bool = True) -> dict[str, Any]:
    run = RunFolder(out)
    check_run_request(run, overwrite, resume)
    _check_start_weights(cfg)
    from vifi.model.factory import check_model_source

    check_model_source(cfg.model, cfg.data.input_size)  # before the demo is generated or the val set checked
    runtime = setup_runtime(device, cfg.train.precision)
    from vifi.engine.train import check_batch_split

    check_batch_split(cfg.train, runtime.world)
    from vifi.data.device_decode import check_device_backend

    check_device_backend(cfg.data.backend, runtime.device)  # one line before any work or change to the folder
    with claimed(run, runtime.is_main):
        # Under the lock, state read again: another run may have finished here since the check above.
        check_run_request(run, overwrite, resume)
        return _finetune(cfg, run, runtime, overwrite=overwrite, resume=resume, deterministic=deterministic,
                         show_progress=show_progress)


def _check_start_weights(cfg: RunConfig) -> None:
    """Before the run folder is touched: the checkpoint a run starts from (model.init_from, a prompt run's bridge)
    must take the run's input size. Read from a vifi file's header (cheap); a paper .pth is checked when built."""
    if not cfg.model.init_from:
        return
    from vifi.model.checkpoint import is_safetensors, read_facts, resolve_checkpoint
    from vifi.model.facts import check_input_size

    path = resolve_checkpoint(cfg.model.init_from)
    if is_safetensors(path):
        role = "the bridge" if cfg.model.train == "prompt" else "model.init_from"
        check_input_size(read_facts(path), cfg.data.input_size, role)


def _finetune(cfg: RunConfig, run: RunFolder, runtime: Runtime, *, overwrite: bool, resume: bool,
              deterministic: bool, show_progress: bool) -> dict[str, Any]:
    from vifi.engine.train import Trainer

    out = run.path
    if runtime.is_main:
        cfg = resolve_data(cfg, out)
    if runtime.distributed:
        holder = [cfg.model_dump()]
        torch.distributed.broadcast_object_list(holder)
        cfg = RunConfig.model_validate(holder[0])
    set_deterministic(deterministic)
    seed_everything(cfg.train.seed)
    names = read_label_csv(_need(cfg.data.labels, "data.labels (or --labels)"))
    train_entries = skip_quarantined(load_split(cfg.data.train_list, names, cfg.data.root, "train"), cfg,
                                     runtime.is_main)
    val_entries = load_split(cfg.data.val_list, names, cfg.data.root, "val")
    if runtime.is_main:
        check_decodable(val_entries, cfg.data.root, cfg.data.backend, cfg.data.val_list,
                        skip=cfg.eval.skip_undecodable, workers=cfg.data.num_workers)
    parts = build_training(cfg, runtime, names, train_entries, val_entries)
    cfg, model, template, tokens, train_set = parts.cfg, parts.model, parts.template, parts.tokens, parts.train_set
    val_set, final_set, final_views, e = parts.val_set, parts.final_set, parts.final_views, cfg.eval
    last: dict[str, EvalResult] = {}

    def evaluate_epoch(epoch: int) -> dict:
        dataset = final_set if epoch == cfg.train.epochs - 1 else val_set  # e.g. 4x3 views after the last epoch
        result = evaluate(model, dataset, names, runtime, batch=cfg.eval.batch, num_workers=cfg.data.num_workers,
                          template=template, show_progress=show_progress, skip_undecodable=e.skip_undecodable)
        model.train()
        last["result"] = result
        if runtime.is_main:
            console.note(f"epoch {epoch + 1}: top1 {result.top1:.2f}  top5 {result.top5:.2f}  ({result.n_videos} videos)")
        return result.summary()

    facts = parts.facts
    trainer = Trainer(cfg, model, runtime, out, train_set, tokens, len(names), evaluate_fn=evaluate_epoch,
                      ckpt_meta=facts, show_progress=show_progress)  # checks batch sizes: still before any change
    if runtime.is_main:
        if overwrite:
            run.clear()  # only now: every new input above has been read and checked
        write_text_atomic(run.config, dump_config(cfg))  # on resume: the saved one plus the safe changes applied
        console.start_mirror(run.run_log)  # from here on, what the run says on stderr is kept with it
    runtime.barrier()
    if resume:
        trainer.resume()
    elif runtime.is_main:
        trainer.drop_rows_past_progress()  # left by an attempt killed before its first checkpoint
    model.train()
    trainer.fit()
    if "result" not in last:  # resumed after the final evaluation had already been saved
        evaluate_epoch(cfg.train.epochs - 1)
    result = last["result"]
    if runtime.is_main:
        from vifi.model.checkpoint import save_weights

        save_weights(run.final_weights, model, facts)
        summary = {**result.summary(), "n_classes": len(names), "views": "x".join(map(str, final_views)),
                   "reported": "last epoch",
                   "frames": cfg.data.frames, "epochs": cfg.train.epochs, "steps": trainer.progress["step"],
                   "checkpoint": str(run.final_weights)}
        write_eval_outputs(out, result, summary, title=f"{cfg.name}: final evaluation", class_names=names,
                           device=runtime.device, config=dump_config(cfg))
    console.stop_mirror()
    runtime.barrier()
    return result.summary()


@dataclass
class TrainingParts:
    """What a training run is made of once its inputs are read: `vifi finetune` trains with it, `vifi bench e2e`
    times it (docs/performance.md), so the benchmark measures the run's own model, micro-batch plan and datasets."""
    cfg: RunConfig  # with train.checkpointing / train.micro_batch auto resolved
    model: Any
    template: str | None
    tokens: torch.Tensor
    train_set: TrainClips
    val_set: EvalClips
    final_set: EvalClips  # the views after the last epoch (e.g. 4x3), else val_set
    final_views: tuple[int, int]
    facts: Any


def build_training(cfg: RunConfig, runtime: Runtime, names: list[str], train_entries: list, val_entries: list,
                   model=None) -> TrainingParts:
    """The model (built from `cfg.model` unless given), class tokens, the auto memory and micro-batch plans and the
    train/eval datasets of a run."""
    from vifi.model.facts import describe
    from vifi.model.factory import build_model, prompt_template

    model = (model if model is not None else build_model(cfg.model, cfg.data)).to(runtime.device)
    template = prompt_template(cfg.model)
    tokens = model.tokenize(model.class_texts(names, template))
    if cfg.train.checkpointing == "auto":
        cfg = _auto_checkpointing(cfg, runtime, model, len(names), text_tokens=int(tokens.argmax(-1).max()) + 1)
    if cfg.train.micro_batch == "auto":
        cfg = _auto_micro_batch(cfg, runtime, len(names))
    spec = ClipSpec(cfg.data.frames, cfg.data.input_size, cfg.data.backend)
    from vifi.data.device_decode import GPU_BACKENDS, PlannedClips

    clips = PlannedClips if cfg.data.backend in GPU_BACKENDS else TrainClips  # nvjpeg/nvdec: decoded on the GPU
    train_set = clips(train_entries, cfg.data.root, spec, cfg.train.seed, cfg.train.color_jitter, cfg.train.grayscale)
    e = cfg.eval
    val_set = EvalClips(val_entries, cfg.data.root, spec, e.clips, e.crops, e.reference_multiclip, cfg.train.seed)
    final_views = (e.final_clips or e.clips, e.final_crops or e.crops)
    final_set = val_set if final_views == (e.clips, e.crops) else EvalClips(
        val_entries, cfg.data.root, spec, *final_views, e.reference_multiclip, cfg.train.seed)
    facts = describe(model, frames=cfg.data.frames, input_size=cfg.data.input_size, template=template,
                     class_names=names)
    return TrainingParts(cfg, model, template, tokens, train_set, val_set, final_set, final_views, facts)


def run_eval(checkpoint: str, data: str, labels: str, root: str, out: Path, *, frames: int | None = None,
             clips: int = 1, crops: int = 1, batch: int = 8, num_workers: int = 2, device: str | None = None,
             precision: str = "auto", vanilla: bool = False, reference_multiclip: bool = False,
             show_progress: bool = True, clip: str | None = None, skip_undecodable: bool = False,
             arch: str = "ViT-B-16", backend: str = "decord", limit: int | None = None,
             overwrite: bool = False, compile: bool | None = None) -> dict[str, Any]:
    """`frames` None: the checkpoint's; `vanilla`: bare class names instead of the checkpoint's template;
    `limit`: that many videos spread over the list; `overwrite`: replace results already in `out`."""
    from vifi.model.factory import load_for_inference
    from vifi.outfolder import replaced_when_done
    from vifi.results import model_record

    out = Path(out)
    check_eval_out(out, overwrite)
    names, entries = eval_inputs(data, labels, root, limit)
    inputs = eval_record(model_record(checkpoint, clip=clip, arch=arch), data, labels, root, entries, clips=clips,
                         crops=crops, frames=frames, vanilla=vanilla, limit=limit,
                         reference_multiclip=reference_multiclip)
    runtime = setup_runtime(device, precision)
    model, facts = load_for_inference(checkpoint, clip, arch)  # plain CLIP when no checkpoint (vanilla zero-shot)
    model.to(runtime.device)
    with replaced_when_done(out, overwrite, RunFolder(out).results_json.name, active=runtime.is_main) as dest:
        return evaluate_loaded(model, facts, str(checkpoint or f"plain CLIP {arch} ({clip})"), names, entries, dest,
                               runtime, data=data, root=root, frames=frames, clips=clips, crops=crops, batch=batch,
                               num_workers=num_workers, vanilla=vanilla, reference_multiclip=reference_multiclip,
                               show_progress=show_progress, skip_undecodable=skip_undecodable, backend=backend,
                               limit=limit, compile=compile, record=inputs)


def eval_record(model: dict, data: str, labels: str, root: str, entries: list, *, clips: int, crops: int,
                frames: int | None = None, vanilla: bool = False, limit: int | None = None,
                reference_multiclip: bool = False, **extra) -> dict[str, Any]:
    """The inputs record of one evaluation (vifi/results.py): what a later read-back must match exactly."""
    from vifi.results import inputs_record

    return inputs_record(model, data=data, labels=labels, root=root, entries=entries, views=f"{clips}x{crops}",
                         frames=frames, vanilla=vanilla, limit=limit, reference_multiclip=reference_multiclip, **extra)


def check_eval_out(out: Path, overwrite: bool) -> None:
    """An evaluation's --out: writable, not holding results already unless `overwrite`, and not a training run
    (--overwrite replaces the whole folder, which would take the run's checkpoints with it)."""
    check_output_path(out, folder=True)
    run = RunFolder(out)
    if run.config.is_file() or run.checkpoints.is_dir():
        raise VifiError(f"{out} is a training run folder; give the evaluation its own --out (e.g. {out}/eval)")
    if run.finished and not overwrite:
        raise VifiError(f"{out} already holds results.json; pass --overwrite to replace it or choose another --out")


def eval_inputs(data: str, labels: str, root: str, limit: int | None = None):
    """(class names, annotation entries) of an evaluation list, every video checked to exist."""
    if limit is not None and limit < 1:
        raise VifiError(f"--limit {limit}: give a number of videos ≥ 1")
    names = read_label_csv(labels)
    entries = read_annotation_list(data, num_classes=len(names))
    if limit is not None:
        entries = evenly_spaced(entries, limit)
    check_videos_exist(entries, root, data)
    return names, entries


def evaluate_loaded(model, facts, described: str, names: list[str], entries: list, out: Path, runtime: Runtime, *,
                    data: str, root: str, frames: int | None = None, clips: int = 1, crops: int = 1, batch: int = 8,
                    num_workers: int = 2, vanilla: bool = False, reference_multiclip: bool = False,
                    show_progress: bool = True, skip_undecodable: bool = False, backend: str = "decord",
                    limit: int | None = None, compile: bool | None = None, to_stdout: bool = True,
                    record: dict | None = None) -> dict[str, Any]:
    """Evaluate a model already on `runtime.device` (`facts`: what it was trained with; `described`: what it is, for
    results.json; `record`: the inputs record of everything that produced the numbers, see `eval_record`) and write the evaluation's files into `out`; its table goes to stdout unless `to_stdout` is False
    (then it is one part of a larger result, and goes to stderr)."""
    from vifi.model.facts import inference_inputs

    inputs = inference_inputs(facts, frames=frames, vanilla=vanilla)
    template = inputs.template
    spec = ClipSpec(inputs.frames, inputs.input_size, backend)
    dataset = EvalClips(entries, root, spec, clips, crops, reference_multiclip)
    text = class_text_features(model, names, template, runtime)
    result = evaluate(model, dataset, names, runtime, batch=batch, num_workers=num_workers, template=template,
                      text_features=text, show_progress=show_progress, skip_undecodable=skip_undecodable,
                      compile=compile)
    summary = {**result.summary(), "n_classes": len(names), "views": f"{clips}x{crops}", "frames": inputs.frames,
               "checkpoint": described, "data": str(data),
               "text": "bare class names" if template is None else template,
               **({"limit": limit} if limit is not None else {}), **({"inputs": record} if record else {})}
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        summary = write_eval_outputs(out, result, summary, title=f"evaluation of {described}", class_names=names,
                                     device=runtime.device, to_stdout=to_stdout,
                                     config={k: v for k, v in summary.items() if k in EVAL_SETTINGS})
    return summary


EVAL_SETTINGS = ("checkpoint", "data", "views", "frames", "text", "limit")  # what an evaluation's hash covers


def write_eval_outputs(out: Path, result: EvalResult, summary: dict[str, Any], title: str, *,
                       class_names: list[str], device=None, config=None, to_stdout: bool = True) -> dict[str, Any]:
    """predictions, per-class, confusion and results.* in `out`; returns `summary` with mean_class_top1 added."""
    from vifi.results import class_metrics, provenance, with_class_names

    run = RunFolder(out)
    write_text_atomic(run.predictions, with_class_names(result.predictions, class_names).to_csv(index=False))
    per_class, confusion, mean_class = class_metrics(result.predictions, class_names)
    write_text_atomic(run.per_class, per_class.to_csv(index=False))
    write_text_atomic(run.confusion, confusion.to_csv())
    summary = {**summary, "mean_class_top1": mean_class}
    if result.failed:
        write_text_atomic(run.failed, "".join(f"{path}\t{why}\n" for path, why in result.failed))
        console.warn(f"{len(result.failed)} undecodable videos left out of the scores (listed in {run.failed})")
    else:
        run.failed.unlink(missing_ok=True)  # from an earlier evaluation replaced with --overwrite
    table = pd.DataFrame([{"videos": result.n_videos, "top1": round(result.top1, 2), "top5": round(result.top5, 2),
                           "mean_class_top1": round(mean_class, 2), "views": summary.get("views", "1x1")}])
    write_table(out, table, {**summary, "provenance": provenance(device=device, config=config)}, title)
    print_table(table, title, to_stdout=to_stdout)
    return summary


def evenly_spaced(entries: list, limit: int) -> list:
    """`limit` entries spread over the whole list (lists are often sorted by class; the first N would be one class)."""
    if limit >= len(entries):
        return entries
    return [entries[i * len(entries) // limit] for i in range(limit)]


def _auto_checkpointing(cfg: RunConfig, runtime: Runtime, model, n_classes: int, text_tokens: int) -> RunConfig:
    """train.checkpointing auto: the fewest image blocks the memory estimate says this GPU needs checkpointed
    (vifi/model/memory.py); on CPU none. The micro-batch it assumed is used when train.micro_batch is auto too."""
    from vifi.engine.train import compile_enabled
    from vifi.model.memory import Shape, plan_memory

    train = {"checkpointing": False}
    if runtime.device.type == "cuda":
        mixing = cfg.train.mixup > 0 or cfg.train.cutmix > 0
        device_gib = torch.cuda.get_device_properties(runtime.device).total_memory / 2 ** 30
        plan = plan_memory(Shape.of(model.arch), device_gib=device_gib, frames=cfg.data.frames, classes=n_classes,
                           batch=cfg.train.global_batch // runtime.world, mode=cfg.model.train,
                           compiled=compile_enabled(cfg, runtime.device),
                           mix_group=cfg.train.mix_group if mixing else 1, text_tokens=text_tokens)
        train["checkpointing"] = plan.checkpointing
        if cfg.train.micro_batch == "auto":
            train["micro_batch"] = plan.micro_batch
        if runtime.is_main:
            console.note(f"memory plan for {device_gib:.0f} GiB: micro-batch {plan.micro_batch}, "
                         f"{plan.checkpoint_blocks} image block(s) checkpointed (estimate {plan.estimate_gib:.1f} GiB)")
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})


def _auto_micro_batch(cfg: RunConfig, runtime: Runtime, n_classes: int) -> RunConfig:
    """Probe the largest micro-batch that fits (GPU); on CPU the largest divisor of the per-rank batch up to 8.
    Either way a multiple of train.mix_group, so that mix groups never straddle micro-batches."""
    per_rank = cfg.train.global_batch // runtime.world
    if runtime.device.type == "cuda":
        from vifi.bench.model import BenchSpec, auto_micro_batch

        spec = BenchSpec(arch=cfg.model.arch, frames=cfg.data.frames, classes=n_classes, global_batch=per_rank,
                         train_mode=cfg.model.train if cfg.model.train != "prompt" else "both",
                         checkpointing=cfg.train.checkpointing)
        mixing = cfg.train.mixup > 0 or cfg.train.cutmix > 0
        micro = auto_micro_batch(spec, runtime, multiple_of=cfg.train.mix_group if mixing else 1)
    else:
        group = cfg.train.mix_group if (cfg.train.mixup > 0 or cfg.train.cutmix > 0) else 1
        fits = [m for m in range(group, max(min(per_rank, 8), group) + 1, group) if per_rank % m == 0]
        if not fits:
            raise VifiError(f"no micro-batch divides the per-process batch {per_rank} in whole mix groups of {group}; "
                            "change train.global_batch or train.mix_group")
        micro = max(fits)
    if runtime.is_main:
        console.note(f"micro-batch auto: {micro} per process (accumulation {per_rank // micro})")
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"micro_batch": micro})})


def _need(value, what: str):
    if not value:
        raise VifiError(f"missing {what}")
    return value

