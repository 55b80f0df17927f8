"""`vifi bench e2e RECIPE`: a recipe's own training loop, timed on real videos, and the whole run projected from it.

What is timed is what `vifi finetune` runs: the run's parts come from `vifi.runs.build_training` (model, micro-batch
and memory plan, datasets), the loop is `Trainer.open_loader` + `Trainer.run_step` (the training loader with the
recipe's workers, the StepEngine, the compile setting), and evaluation is `vifi.engine.evaluate.evaluate` with the
recipe's views. Beside it, the same step on micro-batches already in memory (model alone) and the same loader
without the model (data alone) say which of the two bounds the run. docs/performance.md explains the projection.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vifi.errors import VifiError


def between_epoch_evaluations(epochs: int, eval_every: int) -> int:
    """Evaluations the loop runs after epochs other than the last (vifi/engine/train.py: after epoch e when
    e % eval_every == 0); the last epoch's evaluation is the final one, with the final views."""
    return sum(1 for e in range(epochs - 1) if e % eval_every == 0)


def checkpoints_written(epochs: int, steps_per_epoch: int, save_every: int) -> int:
    """One checkpoint at each epoch end, plus one every `save_every` steps (train.save_every)."""
    return epochs + (epochs * steps_per_epoch // save_every if save_every else 0)


@dataclass
class MeasuredRates:
    step_s: float  # seconds per optimizer step, end to end (data wait included), steady state
    eval_videos_per_s: float  # between-epoch evaluation (eval.clips x eval.crops views)
    final_eval_videos_per_s: float  # final evaluation (eval.final_clips x eval.final_crops views)
    startup_s: float  # model build, data lists, worker start-up, compilation (training and evaluation graphs)
    checkpoint_s: float  # seconds one checkpoint holds the training loop up (the rest is written in the background)


def project(rates: MeasuredRates, *, epochs: int, steps_per_epoch: int, eval_every: int, val_videos: int,
            save_every: int = 0) -> dict:
    """Hours of the whole schedule at the measured rates: {train_h, eval_h, final_eval_h, startup_h, checkpoint_h}
    and their sum, projected_hours."""
    parts = {
        "train_h": epochs * steps_per_epoch * rates.step_s / 3600,
        "eval_h": between_epoch_evaluations(epochs, eval_every) * val_videos / rates.eval_videos_per_s / 3600,
        "final_eval_h": val_videos / rates.final_eval_videos_per_s / 3600,
        "startup_h": rates.startup_s / 3600,
        "checkpoint_h": checkpoints_written(epochs, steps_per_epoch, save_every) * rates.checkpoint_s / 3600,
    }
    return {"projected_hours": sum(parts.values()), "projection": parts}


def _class_names(labels: str | None, entries) -> list[str]:
    from vifi.data.annotations import read_label_csv

    if labels:
        return read_label_csv(labels)
    return [f"class {i}" for i in range(max(e.label for e in entries) + 1)]  # the count is what costs, not the names


def _tiled(entries: list, at_least: int) -> list:
    """The list repeated until it holds one global batch: a short list still times whole optimizer steps."""
    return entries * max(1, math.ceil(at_least / len(entries)))


def _bench_model(cfg, runtime):
    """Random weights of the recipe's architecture (speed does not depend on the values; nothing to download).
    A bridge or init_from checkpoint is loaded as the run would, since prompting needs its structure."""
    if cfg.model.train == "prompt" or cfg.model.init_from:
        return None
    from vifi.model.backbone import load_clip
    from vifi.model.vifi_clip import ViFiCLIP

    clip, arch = load_clip(cfg.model.arch, None, allow_random=True)
    return ViFiCLIP(clip, arch, cfg.model.train)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_eval(model, dataset, names, runtime, cfg, template) -> tuple[float, float]:
    """(first call's seconds, second call's seconds): the first starts workers and compiles, the second is what
    every later evaluation of the run costs (each evaluation starts its own loader, included)."""
    from vifi.engine.evaluate import evaluate

    times = []
    for _ in range(2):
        tic = time.perf_counter()
        evaluate(model, dataset, names, runtime, batch=cfg.eval.batch, num_workers=cfg.data.num_workers,
                 template=template, show_progress=False, skip_undecodable=True)
        _sync(runtime.device)
        times.append(time.perf_counter() - tic)
    model.train()
    return times[0], times[1]


def run_e2e(cfg, runtime, *, data: str, root: str, labels: str | None = None, val: str | None = None,
            steps: int = 3, warmup: int = 1, videos: int | None = None, val_videos: int | None = None,
            eval_videos: int = 16) -> dict:
    from vifi.data.annotations import check_videos_exist, read_annotation_list
    from vifi.engine.train import Trainer, compile_enabled
    from vifi.runs import build_training, evenly_spaced

    if steps < 1 or warmup < 0 or eval_videos < 1 or (videos is not None and videos < 1) or (
            val_videos is not None and val_videos < 1):
        raise VifiError("--steps, --eval-videos, --videos and --val-videos must be ≥ 1 and --warmup ≥ 0")
    from vifi.data.device_decode import check_device_backend

    check_device_backend(cfg.data.backend, runtime.device)
    started = time.perf_counter()
    entries = read_annotation_list(data)
    check_videos_exist(entries, root, data)
    names = _class_names(labels, entries)
    val_entries = entries
    if val:
        val_entries = read_annotation_list(val, num_classes=len(names))
        check_videos_exist(val_entries, root, val)
    train_videos = videos or len(entries)
    n_val = val_videos or len(val_entries)
    t = cfg.train
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(root), "train_list": data,
                                                                      "val_list": val or data, "demo": False}),
                                 "train": t.model_copy(update={"report_to": []})})  # no tracker runs for a bench
    from vifi.engine.loaders import resolve_workers

    # enough for one epoch of everything read below, whatever the recipe's epochs: warm-up and timed steps, the data
    # alone, the held step and the micro-batches the workers buffer (4 each, at most a global batch each)
    needed = warmup + 2 * steps + 2 + 4 * resolve_workers(cfg.data.num_workers)
    timed_entries = _tiled(entries, t.global_batch * needed)
    eval_entries = evenly_spaced(_tiled(val_entries, eval_videos), eval_videos)  # a short list is repeated
    parts = build_training(cfg, runtime, names, timed_entries, eval_entries,
                           model=_bench_model(cfg, runtime))
    cfg, model = parts.cfg, parts.model
    with tempfile.TemporaryDirectory(prefix="vifi-bench-e2e-") as tmp:
        trainer = Trainer(cfg, model, runtime, Path(tmp), parts.train_set, parts.tokens, len(names),
                          ckpt_meta=parts.facts, show_progress=False)
        setup_s = time.perf_counter() - started
        model.train()
        host = trainer.open_loader()
        try:
            tic = time.perf_counter()
            for _ in range(warmup):
                trainer.run_step(host)
            warmup_s = time.perf_counter() - tic
            step_times, waits = [], []
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            for _ in range(steps):
                tic = time.perf_counter()  # around the call: everything the loop pays for a step is in it
                _, result, _ = trainer.run_step(host)
                step_times.append(time.perf_counter() - tic)
                waits.append(result.data_wait_s)
            # the main process's own CPU use while training (all its threads): near 1 means it needs a whole core
            main_cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
            step_s = sum(step_times) / steps
            # Data alone: first the micro-batches the workers already hold (read untimed), then the same count of
            # micro-batches as the timed steps, read as fast as the workers make them.
            buffered = trainer.workers * (getattr(host, "_prefetch_factor", 0) or 0)
            for _ in range(buffered):
                next(host)
            micro_batches = steps * trainer.accum
            tic = time.perf_counter()
            for _ in range(micro_batches):
                next(host)
            data_s = time.perf_counter() - tic
            # Model alone: the same StepEngine step on one step's micro-batches already in (pinned) host memory.
            held = [next(host) for _ in range(trainer.accum)]
            tic = time.perf_counter()
            for _ in range(steps):
                trainer.engine.run(iter(held), trainer.progress["step"])
            _sync(runtime.device)
            model_s = (time.perf_counter() - tic) / steps
        finally:
            shutdown = getattr(host, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        tic = time.perf_counter()
        trainer._save()  # what one checkpoint holds the loop up (the write itself goes on in the background)
        checkpoint_s = time.perf_counter() - tic
        trainer.close()  # waits for the background write before the folder goes
    eval_first, eval_s = _timed_eval(model, parts.val_set, names, runtime, cfg, parts.template)
    final_first, final_s = (eval_first, eval_s) if parts.final_set is parts.val_set else _timed_eval(
        model, parts.final_set, names, runtime, cfg, parts.template)
    n_eval = len(parts.val_set)
    compile_extra = max(0.0, warmup_s - warmup * step_s)  # worker start-up and compilation of the first steps
    startup_s = setup_s + compile_extra + max(0.0, eval_first - eval_s) + (
        0.0 if parts.final_set is parts.val_set else max(0.0, final_first - final_s))
    rates = MeasuredRates(step_s=step_s, eval_videos_per_s=n_eval / eval_s, final_eval_videos_per_s=n_eval / final_s,
                          startup_s=startup_s, checkpoint_s=checkpoint_s)
    steps_per_epoch = _steps_per_epoch(cfg, train_videos)
    frames = cfg.data.frames
    micro = cfg.train.micro_batch
    from vifi.results import device_description

    record = {
        "recipe": cfg.name, "arch": cfg.model.arch, "frames": frames, "global_batch": cfg.train.global_batch,
        "micro_batch": micro, "accumulation": trainer.accum, "workers": trainer.workers, "backend": cfg.data.backend,
        "device": device_description(runtime.device), "precision": runtime.precision,
        "compile": compile_enabled(cfg, runtime.device), "torch": torch.__version__,
        "steps": steps, "warmup": warmup,
        "step_s": step_s, "clips_per_s": cfg.train.global_batch / step_s,
        "frames_per_s": cfg.train.global_batch * frames / step_s,
        "model_frames_per_s": cfg.train.global_batch * frames / model_s,
        "data_frames_per_s": micro_batches * micro * frames / data_s,
        "data_wait_share": sum(waits) / sum(step_times), "main_process_cpu_share": main_cpu_share,
        "eval_videos_per_s": rates.eval_videos_per_s, "final_eval_videos_per_s": rates.final_eval_videos_per_s,
        "eval_views": f"{cfg.eval.clips}x{cfg.eval.crops}", "final_views": "x".join(map(str, parts.final_views)),
        "eval_videos_timed": n_eval, "startup_s": startup_s, "checkpoint_s": checkpoint_s,
        "train_videos": train_videos, "videos_in_list": len(entries), "val_videos": n_val,
        "epochs": cfg.train.epochs, "steps_per_epoch": steps_per_epoch, "eval_every": cfg.train.eval_every,
        "evaluations": between_epoch_evaluations(cfg.train.epochs, cfg.train.eval_every) + 1,
    }
    record.update(project(rates, epochs=cfg.train.epochs, steps_per_epoch=steps_per_epoch,
                          eval_every=cfg.train.eval_every, val_videos=n_val, save_every=cfg.train.save_every))
    return record


def _steps_per_epoch(cfg, videos: int) -> int:
    from vifi.engine.train import lr_clock

    return lr_clock(cfg, videos).steps_per_epoch
