"""The training loop shared by every subcommand that trains (finetune, prompt).

One optimizer step = `accum` micro-batches per rank. The class text features are computed once per step and fed
to every micro-batch as a detached leaf; its accumulated gradient is back-propagated through the text tower once
at the end of the step. The text weights do not change inside a step, so the gradients equal the naive ones.
"""

from __future__ import annotations

import contextlib
import csv
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from vifi.config import RunConfig
from vifi.data.augment import augment_batch
from vifi.data.dataset import StepBatches, TrainClips, collate
from vifi.data.mixup import mix_batch, soft_target_cross_entropy
from vifi.engine.checkpointing import load_training_state, save_training_checkpoint
from vifi.engine.runtime import Runtime
from vifi.engine.schedule import StepLR
from vifi.errors import VifiError
from vifi.progress import progress_bar

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again", what requeue scripts look for


class Preempted(Exception):
    """Raised after a signal-triggered checkpoint; the CLI exits with EXIT_PREEMPTED."""


def build_optimizer(params, cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    # One group, decay on every trainable tensor: the reference's (SPEC §3.2) setting.
    t = cfg.train
    return torch.optim.AdamW(params, lr=0.0, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay,
                             fused=device.type == "cuda")


def text_step_gradient(model, tokens: torch.Tensor, runtime: Runtime):
    """(text features with graph, detached leaf that micro-batches use)."""
    with runtime.autocast():
        feats = model.encode_text(tokens)
    leaf = feats.detach().float().requires_grad_(model.text_trainable)
    return feats, leaf


def finish_text_backward(feats: torch.Tensor, leaf: torch.Tensor, runtime: Runtime) -> None:
    if leaf.grad is None:
        return
    grad = leaf.grad
    if runtime.distributed:
        torch.distributed.all_reduce(grad)
        grad = grad / runtime.world
    feats.backward(grad.to(feats.dtype))


def accumulate_step_gradients(model, head, batches: list[tuple[torch.Tensor, torch.Tensor]], tokens: torch.Tensor,
                              cached_text: torch.Tensor | None, runtime: Runtime, *, local_batch: int,
                              scaler=None) -> torch.Tensor:
    """Gradients of one optimizer step over micro-batches [(videos, soft targets)]; returns the summed loss.

    Loss per micro-batch is its mean × (its size / local batch), so the sum is the mean over the local batch;
    DDP averages over ranks, which makes it the mean over the global batch.
    """
    if cached_text is None:
        feats, leaf = text_step_gradient(model, tokens, runtime)
    else:
        feats, leaf = None, cached_text
    total = torch.zeros((), device=runtime.device)
    for j, (videos, targets) in enumerate(batches):
        last = j == len(batches) - 1
        ctx = head.no_sync() if (not last and hasattr(head, "no_sync")) else contextlib.nullcontext()
        with ctx:
            with runtime.autocast():
                logits = head(videos, leaf)
            loss = soft_target_cross_entropy(logits, targets) * (videos.shape[0] / local_batch)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach()
    if feats is not None:
        finish_text_backward(feats, leaf, runtime)
    return total


@dataclass
class Trainer:
    cfg: RunConfig
    model: torch.nn.Module
    runtime: Runtime
    run_dir: Path
    dataset: TrainClips
    tokens: torch.Tensor  # class prompt token ids [C, ctx]
    num_classes: int
    evaluate_fn: Callable[[int], dict] | None = None  # epoch -> metrics (called on every rank)
    ckpt_meta: dict = field(default_factory=dict)
    show_progress: bool = True

    def __post_init__(self):
        t, rt = self.cfg.train, self.runtime
        if t.global_batch % (t.micro_batch * rt.world):
            raise VifiError(f"train.global_batch {t.global_batch} is not a multiple of micro_batch {t.micro_batch} × "
                            f"{rt.world} process(es); choose a micro-batch that divides it")
        self.accum = t.global_batch // (t.micro_batch * rt.world)
        self.steps_per_epoch = len(self.dataset) // t.global_batch
        if self.steps_per_epoch == 0:
            raise VifiError(f"the training list has {len(self.dataset)} videos, fewer than one global batch "
                            f"({t.global_batch}); lower train.global_batch")
        self.schedule = StepLR(t.lr, t.epochs, t.warmup_epochs, self.steps_per_epoch, self.accum, t.min_lr_ratio)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise VifiError("model.train=frozen leaves nothing to train; use `vifi eval` for a frozen model")
        self.optimizer = build_optimizer(params, self.cfg, rt.device)
        self.scaler = torch.amp.GradScaler("cuda") if rt.precision == "fp16" else None
        if t.checkpointing:
            self.model.clip.set_grad_checkpointing(True)
        self.head = self.model.head
        if rt.distributed and self.model.image_trainable:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.head = DDP(self.model.head, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
                            broadcast_buffers=False)
        if t.compile:
            self.head = torch.compile(self.head)
        self.progress = {"epoch": 0, "step_in_epoch": 0, "step": 0, "nonfinite": 0}
        self.stop_signal: int | None = None

    # ---- resume ---------------------------------------------------------------------------------------------
    def resume(self) -> None:
        from vifi.model.checkpoint import load_weights_into
        from vifi.engine.checkpointing import checkpoint_dir

        latest, state = load_training_state(self.run_dir)
        load_weights_into(self.model, checkpoint_dir(self.run_dir) / latest["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.progress = dict(state["progress"])
        # Rows logged after that checkpoint are redone by the resumed run: drop them so each step appears once.
        _truncate_csv(self.run_dir / "log.csv", "step", lambda v: int(v) <= self.progress["step"])
        _truncate_csv(self.run_dir / "summary.csv", "epoch", lambda v: int(v) < self.progress["epoch"])

    # ---- signals --------------------------------------------------------------------------------------------
    def _install_signals(self):
        def handler(signum, _frame):
            if self.stop_signal is not None:
                raise SystemExit(128 + signum)  # second signal: leave now; checkpoints are atomic
            self.stop_signal = signum

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        return previous

    # ---- the loop -------------------------------------------------------------------------------------------
    def fit(self) -> None:
        previous = self._install_signals()
        try:
            self._fit()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _fit(self) -> None:
        t, rt = self.cfg.train, self.runtime
        tokens = self.tokens.to(rt.device)
        cached_text = None
        if not self.model.text_trainable:
            with torch.no_grad(), rt.autocast():
                cached_text = self.model.encode_text(tokens).float()  # frozen text: once for the whole run
        while self.progress["epoch"] < t.epochs:
            epoch = self.progress["epoch"]
            self._train_epoch(epoch, tokens, cached_text)
            metrics = {}
            if self.evaluate_fn is not None and (epoch % t.eval_every == 0 or epoch == t.epochs - 1):
                metrics = self.evaluate_fn(epoch)
            self.progress.update(epoch=epoch + 1, step_in_epoch=0)
            if rt.is_main:
                self._append_summary(epoch, metrics)
            self._save()
            self._check_signal()

    def _train_epoch(self, epoch: int, tokens: torch.Tensor, cached_text) -> None:
        t, rt = self.cfg.train, self.runtime
        sampler = StepBatches(len(self.dataset), t.global_batch, t.micro_batch, t.seed, epoch,
                              start_step=self.progress["step_in_epoch"], rank=rt.rank, world=rt.world)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.cfg.data.num_workers,
                            collate_fn=collate, pin_memory=rt.device.type == "cuda",
                            prefetch_factor=4 if self.cfg.data.num_workers > 0 else None)
        it = iter(loader)
        remaining = self.steps_per_epoch - self.progress["step_in_epoch"]
        with progress_bar(f"epoch {epoch + 1}/{t.epochs}", remaining, enabled=self.show_progress and rt.is_main) as bar:
            for _ in range(remaining):
                tic = time.perf_counter()
                micro = [next(it) for _ in range(self.accum)]
                data_wait = time.perf_counter() - tic
                loss = self._step(micro, tokens, cached_text)
                step_time = time.perf_counter() - tic
                self.progress["step"] += 1
                self.progress["step_in_epoch"] += 1
                if rt.is_main:
                    self._log_step(epoch, loss, step_time, data_wait)
                bar.advance(1, f"loss {loss:.4f}")
                if t.save_every and self.progress["step"] % t.save_every == 0:
                    self._save()
                self._check_signal()

    def _step(self, micro: list[dict], tokens: torch.Tensor, cached_text) -> float:
        t, rt, model = self.cfg.train, self.runtime, self.model
        step = self.progress["step"]
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = []
        for j, item in enumerate(micro):
            videos = augment_batch(item["frames"].to(rt.device, non_blocking=True),
                                   {k: v.to(rt.device, non_blocking=True) for k, v in item["params"].items()})
            labels = item["label"].to(rt.device, non_blocking=True)
            gen = torch.Generator().manual_seed(t.seed * 1_000_003 + step * 1009 + rt.rank * self.accum + j)
            batches.append(mix_batch(videos, labels, self.num_classes, mixup_alpha=t.mixup, cutmix_alpha=t.cutmix,
                                     switch_prob=t.mix_switch_prob, smoothing=t.label_smoothing, generator=gen))
        total = accumulate_step_gradients(model, self.head, batches, tokens, cached_text, rt,
                                          local_batch=t.global_batch // rt.world, scaler=self.scaler)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            # One host read per step: a non-finite loss or gradient must not reach the weights.
            if not self._all_finite(total):
                self._skip_nonfinite(step)
            else:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(total)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms = torch._foreach_norm(grads) if grads else []
        return bool(torch.isfinite(torch.stack([loss.float(), *[n.float() for n in norms]])).all())

    def _skip_nonfinite(self, step: int) -> None:
        self.progress["nonfinite"] += 1
        limit = 5
        if self.runtime.is_main:
            print(f"warning: non-finite loss or gradient at step {step}; step skipped ({self.progress['nonfinite']}/{limit})")
        if self.progress["nonfinite"] >= limit:
            from vifi.engine.checkpointing import read_latest

            latest = read_latest(self.run_dir)
            where = f"last good checkpoint: {self.run_dir}/checkpoints/{latest['weights']}" if latest else "no checkpoint yet"
            raise VifiError(f"training diverged: {limit} steps with a non-finite loss or gradient; lower train.lr "
                            f"and continue from the {where}")

    # ---- files ----------------------------------------------------------------------------------------------
    def _save(self) -> None:
        if self.runtime.is_main:
            save_training_checkpoint(self.run_dir, self.model, self.optimizer, self.scaler, dict(self.progress),
                                     self.cfg.train.keep_last, self.ckpt_meta)
        self.runtime.barrier()

    def _check_signal(self) -> None:
        if self.stop_signal is not None:
            self._save()
            raise Preempted(f"stopped by signal {self.stop_signal} at step {self.progress['step']}; "
                            f"checkpoint saved, continue with --resume")

    def _log_step(self, epoch: int, loss: float, step_time: float, data_wait: float) -> None:
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["step", "epoch", "lr", "loss", "clips_per_s", "data_wait_s"])
            clips = self.cfg.train.global_batch / max(step_time, 1e-9)
            writer.writerow([self.progress["step"], epoch, f"{self.schedule(self.progress['step'] - 1):.6g}",
                             f"{loss:.6f}", f"{clips:.2f}", f"{data_wait:.4f}"])

    def _append_summary(self, epoch: int, metrics: dict) -> None:
        path = self.run_dir / "summary.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["epoch", "step", "top1", "top5"])
            writer.writerow([epoch, self.progress["step"], metrics.get("top1", ""), metrics.get("top5", "")])


def _truncate_csv(path: Path, column: str, keep) -> None:
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    col = rows[0].index(column)
    kept = [rows[0]] + [r for r in rows[1:] if r and keep(r[col])]
    from vifi.fileio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows(kept)
