"""Runs: a config + a folder -> a trained model and its result files. What the CLI's finetune and eval call."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vifi.config import RunConfig, dump_config
from vifi.data.annotations import check_videos_exist, read_annotation_list, read_label_csv, read_path_lines
from vifi.data.dataset import ClipSpec, EvalClips, TrainClips
from vifi.engine.evaluate import EvalResult, class_text_features, evaluate
from vifi.engine.runtime import Runtime, seed_everything, set_deterministic, setup_runtime
from vifi.errors import VifiError
from vifi.fileio import write_text_atomic
from vifi.results import print_table, write_table

RUN_FILES = ("config.yaml", "log.csv", "summary.csv", "results.csv", "results.md", "results.json", "predictions.csv")


def prepare_run_dir(out: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber: a finished run needs --overwrite; a run in progress needs --resume or --overwrite."""
    if resume and overwrite:
        raise VifiError("--resume and --overwrite contradict each other; pick one")
    if out.exists() and not out.is_dir():
        raise VifiError(f"--out {out} is a file, not a folder; choose a folder for the run")
    finished = (out / "results.json").exists()
    started = (out / "checkpoints" / "latest.json").exists()
    if resume:
        if not started:
            raise VifiError(f"--resume: {out} has no checkpoint to continue from; start the run without --resume")
        return
    if (finished or started) and not overwrite:
        what = "a finished run" if finished else "a run in progress (continue it with --resume)"
        raise VifiError(f"{out} already holds {what}; pass --overwrite to replace it or choose another --out")
    if overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if not out.is_dir():
        raise VifiError(f"--out {out} is not a folder")


def saved_config(out: Path) -> RunConfig:
    """The resolved config a run folder was started with: what --resume continues."""
    import yaml

    from vifi.config import validate_config

    path = Path(out) / "config.yaml"
    if not path.is_file():
        raise VifiError(f"--resume: {path} not found; start the run without --resume")
    return validate_config(yaml.safe_load(path.read_text()), where=str(path))


def resolve_data(cfg: RunConfig, out: Path) -> RunConfig:
    """Fill the demo dataset's paths (generating it on first use) when the config asks for the demo."""
    d = cfg.data
    if d.demo and not (d.train_list and d.val_list and d.labels and d.root):
        from vifi.data.demo import generate_demo

        files = generate_demo(out / "demo-data")
        update = {k: str(files[k]) for k in ("train_list", "val_list", "labels", "root")}
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
        print(f"skipping {len(entries) - len(kept)} quarantined training videos listed in {path}", flush=True)
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
    from vifi.engine.train import Trainer
    from vifi.model.facts import describe
    from vifi.model.factory import build_model, prompt_template

    out = Path(out)
    prepare_run_dir(out, overwrite, resume)
    runtime = setup_runtime(device, cfg.train.precision)
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
    model = build_model(cfg.model, cfg.data).to(runtime.device)
    if cfg.train.micro_batch == "auto":
        cfg = _auto_micro_batch(cfg, runtime, len(names))
    template = prompt_template(cfg.model)
    tokens = model.tokenize(model.class_texts(names, template))
    spec = ClipSpec(cfg.data.frames, cfg.data.input_size, cfg.data.backend)
    train_set = TrainClips(train_entries, cfg.data.root, spec, cfg.train.seed, cfg.train.color_jitter,
                           cfg.train.grayscale)
    e = cfg.eval
    val_set = EvalClips(val_entries, cfg.data.root, spec, e.clips, e.crops, e.reference_multiclip, cfg.train.seed)
    final_views = (e.final_clips or e.clips, e.final_crops or e.crops)
    final_set = val_set if final_views == (e.clips, e.crops) else EvalClips(
        val_entries, cfg.data.root, spec, *final_views, e.reference_multiclip, cfg.train.seed)
    if runtime.is_main and not resume:
        write_text_atomic(out / "config.yaml", dump_config(cfg))
    last: dict[str, EvalResult] = {}

    def evaluate_epoch(epoch: int) -> dict:
        dataset = final_set if epoch == cfg.train.epochs - 1 else val_set  # e.g. 4x3 views after the last epoch
        result = evaluate(model, dataset, names, runtime, batch=cfg.eval.batch, num_workers=cfg.data.num_workers,
                          template=template, show_progress=show_progress, skip_undecodable=e.skip_undecodable)
        model.train()
        last["result"] = result
        if runtime.is_main:
            print(f"epoch {epoch + 1}: top1 {result.top1:.2f}  top5 {result.top5:.2f}  ({result.n_videos} videos)",
                  flush=True)
        return result.summary()

    facts = describe(model, frames=cfg.data.frames, input_size=cfg.data.input_size, template=template,
                     class_names=names)
    trainer = Trainer(cfg, model, runtime, out, train_set, tokens, len(names), evaluate_fn=evaluate_epoch,
                      ckpt_meta=facts, show_progress=show_progress)
    if resume:
        trainer.resume()
    model.train()
    trainer.fit()
    if "result" not in last:  # resumed after the final evaluation had already been saved
        evaluate_epoch(cfg.train.epochs - 1)
    result = last["result"]
    if runtime.is_main:
        from vifi.model.checkpoint import save_weights

        save_weights(out / "checkpoints" / "final.safetensors", model, facts)
        summary = {**result.summary(), "n_classes": len(names), "views": "x".join(map(str, final_views)),
                   "reported": "last epoch",
                   "frames": cfg.data.frames, "epochs": cfg.train.epochs, "steps": trainer.progress["step"],
                   "checkpoint": str(out / "checkpoints" / "final.safetensors")}
        write_eval_outputs(out, result, summary, title=f"{cfg.name}: final evaluation")
    runtime.barrier()
    return result.summary()


def run_eval(checkpoint: str, data: str, labels: str, root: str, out: Path, *, frames: int | None = None,
             clips: int = 1, crops: int = 1, batch: int = 8, num_workers: int = 2, device: str | None = None,
             precision: str = "auto", vanilla: bool = False, reference_multiclip: bool = False,
             show_progress: bool = True, clip: str | None = None, skip_undecodable: bool = False,
             arch: str = "ViT-B-16", backend: str = "decord") -> dict[str, Any]:
    """`frames` None: the checkpoint's; `vanilla`: bare class names instead of the checkpoint's template."""
    from vifi.model.facts import inference_inputs
    from vifi.model.factory import load_for_inference

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VifiError(f"--out {out} is a file, not a folder; choose a folder for the results")
    if (out / "results.json").exists():
        raise VifiError(f"{out} already holds results.json; choose another --out")
    names = read_label_csv(labels)
    entries = read_annotation_list(data, num_classes=len(names))
    check_videos_exist(entries, root, data)
    runtime = setup_runtime(device, precision)
    model, facts = load_for_inference(checkpoint, clip, arch)  # plain CLIP when no checkpoint (vanilla zero-shot)
    model.to(runtime.device)
    inputs = inference_inputs(facts, frames=frames, vanilla=vanilla)
    template = inputs.template
    spec = ClipSpec(inputs.frames, inputs.input_size, backend)
    dataset = EvalClips(entries, root, spec, clips, crops, reference_multiclip)
    text = class_text_features(model, names, template, runtime)
    result = evaluate(model, dataset, names, runtime, batch=batch, num_workers=num_workers, template=template,
                      text_features=text, show_progress=show_progress, skip_undecodable=skip_undecodable)
    summary = {**result.summary(), "n_classes": len(names), "views": f"{clips}x{crops}", "frames": inputs.frames,
               "checkpoint": str(checkpoint or f"plain CLIP {arch} ({clip})"), "data": str(data),
               "text": "bare class names" if template is None else template}
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_eval_outputs(out, result, summary, title=f"evaluation of {checkpoint}")
    return summary


def write_eval_outputs(out: Path, result: EvalResult, summary: dict[str, Any], title: str) -> None:
    write_text_atomic(out / "predictions.csv", result.predictions.to_csv(index=False))
    if result.failed:
        write_text_atomic(out / "failed.txt", "".join(f"{path}\t{why}\n" for path, why in result.failed))
        print(f"warning: {len(result.failed)} undecodable videos left out of the scores (listed in {out / 'failed.txt'})")
    table = pd.DataFrame([{"videos": result.n_videos, "top1": round(result.top1, 2), "top5": round(result.top5, 2),
                           "views": summary.get("views", "1x1")}])
    write_table(out, table, summary, title)
    print_table(table, title)


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
        print(f"micro-batch auto: {micro} per process (accumulation {per_rank // micro})", flush=True)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"micro_batch": micro})})


def _need(value, what: str):
    if not value:
        raise VifiError(f"missing {what}")
    return value

