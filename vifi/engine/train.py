"""The training loop shared by every subcommand that trains (finetune, prompt).

The loop owns epochs, evaluation, checkpoints, signals and the log files; one optimizer step is
`vifi.engine.step.StepEngine` (the same code `vifi bench train` times). The LR of each step comes from the
reference's schedule on the paper's iteration clock (`vifi.engine.schedule`).
"""

from __future__ import annotations

import csv
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from vifi import console
from vifi.config import RunConfig
from vifi.data.dataset import StepBatches, TrainClips, collate
from vifi.data.mixup import MixSettings
from vifi.engine.checkpointing import CheckpointWriter, load_training_state
from vifi.engine.loaders import RunBatches, make_loader, resolve_workers
from vifi.engine.runtime import Runtime
from vifi.engine.schedule import LRClock, ReferenceSchedule
from vifi.engine.step import StepEngine, accumulate_step_gradients  # noqa: F401  (re-exported for callers)
from vifi.engine.workers import STOP_SIGNALS
from vifi.errors import VifiError
from vifi.progress import progress_bar

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again", what requeue scripts look for
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for Ctrl-C


class Preempted(Exception):
    """Raised after a signal-triggered checkpoint; the CLI exits with `exit_code(signum)`."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def exit_code(signum: int) -> int:
    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_PREEMPTED


def build_optimizer(params, cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    # One group, decay on every trainable tensor: the reference's (SPEC §3.2) setting.
    t = cfg.train
    return torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay,
                             fused=device.type == "cuda")


def lr_clock(cfg: RunConfig, num_videos: int) -> LRClock:
    t = cfg.train
    return LRClock(num_videos, t.global_batch, t.lr_clock_gpus or 1, t.lr_clock_gpu_batch)


def mix_settings(cfg: RunConfig) -> MixSettings:
    t = cfg.train
    return MixSettings(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, switch_prob=t.mix_switch_prob,
                       smoothing=t.label_smoothing, group=t.mix_group)


def compile_enabled(cfg: RunConfig, device: torch.device) -> bool:
    """`train.compile`: auto = on CUDA. A graph that fails to compile runs eagerly instead (dynamo's
    suppress_errors, which logs one warning): compilation is a speed-up, never a reason for a run to fail."""
    enabled = cfg.train.compile is True or (cfg.train.compile == "auto" and device.type == "cuda")
    if enabled:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
    return enabled


def clip_decoder(cfg: RunConfig, device: torch.device):
    """The device-side half of a GPU decode backend (data.backend nvjpeg / nvdec), else None."""
    from vifi.data.device_decode import GPU_BACKENDS, ClipDecoder

    if cfg.data.backend not in GPU_BACKENDS:
        return None
    return ClipDecoder(cfg.data.backend, device, cfg.data.input_size)


def convert_to_float8(model) -> int:
    """train.precision fp8: torchao's float8 training for the image tower's linear layers (dynamic scaling, bf16
    everywhere else). Opt-in only: its effect on accuracy at Kinetics scale is not measured (docs/performance.md).
    Layers whose sizes are not multiples of 16 (float8 matmul tiles) stay bf16. Returns how many were converted."""
    from torchao.float8 import convert_to_float8_training

    before = sum(isinstance(m, torch.nn.Linear) for m in model.head.visual.modules())

    def eligible(module, _fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0
    convert_to_float8_training(model.head.visual, module_filter_fn=eligible)
    return before - sum(type(m) is torch.nn.Linear for m in model.head.visual.modules())


def check_batch_split(t, world: int) -> None:
    """The global batch splits into micro-batches on `world` processes (checked again before any work: runs.py)."""
    if t.global_batch % (t.micro_batch * world):
        raise VifiError(f"train.global_batch {t.global_batch} is not a multiple of micro_batch {t.micro_batch} × "
                        f"{world} process(es); choose a micro-batch that divides it")


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
        check_batch_split(t, rt.world)
        self.accum = t.global_batch // (t.micro_batch * rt.world)
        self.clock = lr_clock(self.cfg, len(self.dataset))
        self.steps_per_epoch = self.clock.steps_per_epoch
        if self.steps_per_epoch == 0:
            raise VifiError(f"the training list has {len(self.dataset)} videos, fewer than one global batch "
                            f"({t.global_batch}); lower train.global_batch")
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise VifiError("model.train=frozen leaves nothing to train; use `vifi eval` for a frozen model")
        self.optimizer = build_optimizer(params, self.cfg, rt.device)
        self.schedule = ReferenceSchedule(self.optimizer, self.clock, base_lr=t.lr, epochs=t.epochs,
                                          warmup_epochs=t.warmup_epochs, min_lr_ratio=t.min_lr_ratio)
        self.scaler = torch.amp.GradScaler("cuda") if rt.precision == "fp16" else None
        if t.checkpointing:
            from vifi.model.grad_checkpoint import checkpoint_image_blocks

            checkpoint_image_blocks(self.model, t.checkpointing)
        if t.attention == "mha":
            from vifi.model.attention import use_multihead_attention

            use_multihead_attention(self.model)
        if rt.precision == "fp8":
            convert_to_float8(self.model)
        self.head = self.model.head  # (fp8 modules swapped in before DDP wraps them; same parameters)
        if rt.distributed and self.model.image_trainable:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.head = DDP(self.model.head, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
                            gradient_as_bucket_view=True, **_no_forward_buffer_sync(DDP))
        compiled = compile_enabled(self.cfg, rt.device)
        if compiled:
            self.head = torch.compile(self.head, mode=None if t.compile_mode == "default" else t.compile_mode)
        self.engine = StepEngine(self.model, self.head, self.optimizer, rt, mix=mix_settings(self.cfg),
                                 num_classes=self.num_classes, seed=t.seed, local_batch=t.global_batch // rt.world,
                                 accum=self.accum, tokens=self.tokens, scaler=self.scaler, compile_augment=compiled,
                                 attention=t.attention, decode=clip_decoder(self.cfg, rt.device))
        self.workers = resolve_workers(self.cfg.data.num_workers)
        self.progress = {"epoch": 0, "step_in_epoch": 0, "step": 0, "nonfinite": 0}
        self.checkpoints = CheckpointWriter() if rt.is_main else None
        self.stop_signal: int | None = None
        from vifi.engine.tracking import RunTracker  # TensorBoard / W&B / plain lines: rank 0 reports

        self.tracker = RunTracker(self.cfg, self.run_dir, t.epochs * self.steps_per_epoch, self.steps_per_epoch,
                                  plain_lines=self.show_progress and not console.stderr_is_terminal()
                                  ) if rt.is_main else None

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
        self.drop_rows_past_progress()

    def drop_rows_past_progress(self) -> None:
        """Rows logged after the step this run continues from (its checkpoint's; 0 for a start) are redone by it:
        drop them so each step appears once. A requeued attempt killed before its first checkpoint leaves such
        rows in a folder that then starts afresh (docs/reliability.md, "Run folder")."""
        _truncate_csv(self.run_dir / "log.csv", "step", lambda v: int(v) <= self.progress["step"])
        _truncate_csv(self.run_dir / "summary.csv", "epoch", lambda v: int(v) < self.progress["epoch"])

    # ---- signals --------------------------------------------------------------------------------------------
    def _install_signals(self):
        def handler(signum, _frame):
            if self.stop_signal is not None:
                raise SystemExit(128 + signum)  # second signal: leave now; checkpoints are atomic
            self.stop_signal = signum

        previous = {}
        for sig in STOP_SIGNALS:  # Ctrl-C too: save, then exit 130
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
        except BaseException:
            if self.checkpoints is not None:  # the write in flight still finishes; the run's own error is raised
                try:
                    self.checkpoints.wait()
                except Exception as exc:  # noqa: BLE001 - second to the error that stopped the run
                    console.warn(str(exc))
            raise
        else:
            self.close()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            if self.tracker is not None:
                self.tracker.close()

    def _fit(self) -> None:
        t, rt = self.cfg.train, self.runtime
        host = self.open_loader()  # one loader for the rest of the run: workers start once
        try:
            while self.progress["epoch"] < t.epochs:
                epoch = self.progress["epoch"]
                self._train_epoch(epoch, host)
                metrics = {}
                if self.evaluate_fn is not None and (epoch % t.eval_every == 0 or epoch == t.epochs - 1):
                    metrics = self.evaluate_fn(epoch)
                self.progress.update(epoch=epoch + 1, step_in_epoch=0)
                if rt.is_main:
                    self._append_summary(epoch, metrics)
                self._save()
                self._check_signal()
        finally:
            # The run never reads the loader to its end, so its workers are stopped here, through the loader's own
            # orderly shutdown, on every way out (preemption included). Left to interpreter exit, multiprocessing
            # would SIGTERM them — which they ignore (vifi/engine/workers.py) — and then wait for them forever.
            shutdown = getattr(host, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def open_loader(self):
        """The host micro-batches of the rest of the run, from the training loader (workers start here)."""
        loader = make_loader(self.dataset, batch_sampler=self._batches(), workers=self.workers,
                             device=self.runtime.device, collate_fn=collate)
        return iter(loader)

    def run_step(self, host):
        """One optimizer step of the run at its current position: the LR of this step, then the step itself.
        Returns (lr, StepResult, seconds). The loop below and `vifi bench e2e` call exactly this."""
        tic = time.perf_counter()
        step = self.progress["step"]
        lr = self.schedule.set_for_step(step)
        result = self.engine.run(host, step, on_nonfinite=self._skip_nonfinite)
        self.progress["step"] += 1
        self.progress["step_in_epoch"] += 1
        return lr, result, time.perf_counter() - tic

    def _batches(self) -> RunBatches:
        t, rt = self.cfg.train, self.runtime

        def epoch_batches(epoch: int, start_step: int) -> StepBatches:
            return StepBatches(len(self.dataset), t.global_batch, t.micro_batch, t.seed, epoch, start_step=start_step,
                               rank=rt.rank, world=rt.world, steps_per_epoch=self.steps_per_epoch)
        return RunBatches(epoch_batches, self.progress["epoch"], self.progress["step_in_epoch"], t.epochs)

    def _train_epoch(self, epoch: int, host) -> None:
        t, rt = self.cfg.train, self.runtime
        remaining = self.steps_per_epoch - self.progress["step_in_epoch"]
        bar_shown = self.show_progress and rt.is_main and console.stderr_is_terminal()  # else: the tracker's lines
        with progress_bar(f"epoch {epoch + 1}/{t.epochs}", remaining, enabled=bar_shown) as bar:
            for _ in range(remaining):
                lr, result, step_time = self.run_step(host)
                if rt.is_main:
                    self._log_step(epoch, lr, result.loss, step_time, result.data_wait_s)
                bar.advance(1, f"loss {result.loss:.4f}")
                if t.save_every and self.progress["step"] % t.save_every == 0:
                    self._save()
                self._check_signal()

    def _skip_nonfinite(self, step: int) -> None:
        self.progress["nonfinite"] += 1
        limit = 5
        if self.runtime.is_main:
            console.warn(f"non-finite loss or gradient at step {step}; step skipped ({self.progress['nonfinite']}/{limit})")
        if self.progress["nonfinite"] >= limit:
            from vifi.engine.checkpointing import read_latest

            self.close()  # the checkpoint being written is the last good one
            latest = read_latest(self.run_dir)
            where = f"last good checkpoint: {self.run_dir}/checkpoints/{latest['weights']}" if latest else "no checkpoint yet"
            raise VifiError(f"training diverged: {limit} steps with a non-finite loss or gradient; lower train.lr "
                            f"and continue from the {where}")

    # ---- files ----------------------------------------------------------------------------------------------
    def _save(self) -> None:
        """Rank 0 takes a host copy and writes it in the background (vifi/engine/checkpointing.py)."""
        if self.checkpoints is not None:
            self.checkpoints.save(self.run_dir, self.model, self.optimizer, self.scaler, dict(self.progress),
                                  self.cfg.train.keep_last, self.ckpt_meta)
        self.runtime.barrier()

    def close(self) -> None:
        """Until the last checkpoint is on disk (raises what its write raised)."""
        if self.checkpoints is not None:
            self.checkpoints.wait()

    def _check_signal(self) -> None:
        if self.stop_signal is not None:
            self._save()
            self.close()  # "checkpoint saved" only once it is
            raise Preempted(f"stopped by signal {self.stop_signal} at step {self.progress['step']}; "
                            f"checkpoint saved, continue with --resume", self.stop_signal)

    def _log_step(self, epoch: int, lr: float, loss: float, step_time: float, data_wait: float) -> None:
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["step", "epoch", "lr", "loss", "clips_per_s", "data_wait_s"])
            clips = self.cfg.train.global_batch / max(step_time, 1e-9)
            writer.writerow([self.progress["step"], epoch, f"{lr:.6g}",
                             f"{loss:.6f}", f"{clips:.2f}", f"{data_wait:.4f}"])
        if self.tracker is not None:
            self.tracker.log_step(step=self.progress["step"], epoch=epoch, lr=lr, loss=loss, clips_per_s=clips,
                                  data_wait_s=data_wait)

    def _append_summary(self, epoch: int, metrics: dict) -> None:
        path = self.run_dir / "summary.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["epoch", "step", "top1", "top5"])
            writer.writerow([epoch, self.progress["step"], metrics.get("top1", ""), metrics.get("top5", "")])
        if self.tracker is not None:
            self.tracker.log_eval(epoch=epoch, step=self.progress["step"], metrics=metrics)


def _no_forward_buffer_sync(ddp_class) -> dict:
    """No buffer broadcast before each forward (every rank holds the same buffers). torch ≥ 2.13 renamed the
    argument and warns once per rank on the old name; buffers are still synced once at start, which is harmless."""
    import inspect

    if "forward_sync_buffers" in inspect.signature(ddp_class.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def _truncate_csv(path: Path, column: str, keep) -> None:
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    if column not in rows[0]:
        raise VifiError(f"{path} has no {column!r} column, so a vifi run did not write it; move it away or pass "
                        "--overwrite")
    col = rows[0].index(column)
    kept = [rows[0]] + [r for r in rows[1:] if r and keep(r[col])]
    from vifi.fileio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows(kept)
