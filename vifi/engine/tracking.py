"""What a training run reports besides log.csv / summary.csv: TensorBoard, Weights & Biases, and a timm-style
text line every `train.log_every` steps when stderr is not a terminal (logs, CI, Slurm).

Every backend gets the numbers the trainer writes to log.csv (lr, loss, clips/s, data wait) and summary.csv
(top-1, top-5), passed as the same floats: a curve in TensorBoard is the CSV column, not a recomputation.
Only rank 0 builds a tracker. The packages are optional (`pip install 'vifi[track]'`) and imported lazily.
"""

from __future__ import annotations

import importlib.util
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from vifi import console
from vifi.errors import VifiError
from vifi.run_folder import RunFolder

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}  # --report-to name -> package it needs


def parse_report_to(value: Any) -> list[str]:
    """`"tensorboard,wandb"` or a list -> checked names; a tracker whose package is missing is one error line."""
    if value is None or value == "":
        return []
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    names = [n for n in names if n and n != "none"]
    for name in names:
        if name not in TRACKERS:
            raise VifiError(f"--report-to {name!r}: choose from {', '.join(TRACKERS)} (comma-separated)")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise VifiError(f"--report-to {name} needs the {TRACKERS[name]} package, which is not installed; "
                            f"pip install 'vifi[track]' (or pip install {TRACKERS[name]})")
    return list(dict.fromkeys(names))


class _TensorBoard:
    def __init__(self, run_dir: Path, first_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: after --resume, events a previous process logged past its checkpoint are dropped, as in log.csv
        self.writer = SummaryWriter(log_dir=str(RunFolder(run_dir).tensorboard), purge_step=first_step)

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _new_run_id() -> str:
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class _WandB:
    def __init__(self, run_dir: Path, config: dict, name: str):
        import wandb

        # One W&B run per run folder: its id is kept beside the checkpoints so --resume continues the same run.
        id_file = RunFolder(run_dir).wandb_id
        # Our own id (8 lowercase letters and digits, W&B's form): wandb.util.generate_id is gone in wandb 0.31.
        run_id = id_file.read_text().strip() if id_file.is_file() else _new_run_id()
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project="vifi", name=name, id=run_id, resume="allow", dir=str(run_dir), config=config)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class RunTracker:
    """Rank 0's reporter: trackers named in train.report_to, plus the plain periodic line off a terminal."""

    def __init__(self, cfg, run_dir: Path, total_steps: int, steps_per_epoch: int, plain_lines: bool):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.every = max(1, int(cfg.train.log_every))
        self.plain_lines = plain_lines
        self.backends: list | None = None  # opened at the first step: its number is TensorBoard's purge step
        self.loss_sum, self.loss_count = 0.0, 0  # average over this process's steps (timm's AverageMeter)
        self.first_step: int | None = None
        self.started = time.monotonic()

    def _open(self, first_step: int) -> None:
        self.backends = []
        for name in self.cfg.train.report_to:
            if name == "tensorboard":
                self.backends.append(_TensorBoard(self.run_dir, first_step))
            elif name == "wandb":
                self.backends.append(_WandB(self.run_dir, self.cfg.model_dump(mode="json"), self.cfg.name))

    def log_step(self, *, step: int, epoch: int, lr: float, loss: float, clips_per_s: float,
                 data_wait_s: float) -> None:
        """One optimizer step, numbered as in log.csv (1 = after the first step)."""
        if self.backends is None:
            self._open(step)
        if self.first_step is None:  # the ETA and the average count this process's steps (after --resume too)
            self.first_step, self.started = step, time.monotonic()
        values = {"train/lr": lr, "train/loss": loss, "train/clips_per_s": clips_per_s,
                  "train/data_wait_s": data_wait_s}
        for backend in self.backends:
            backend.log(values, step)
        self.loss_sum += loss
        self.loss_count += 1
        if self.plain_lines and (step % self.every == 0 or step == self.total_steps):
            console.note(self.plain_line(step, epoch, lr, loss, clips_per_s, data_wait_s))

    def plain_line(self, step: int, epoch: int, lr: float, loss: float, clips_per_s: float,
                   data_wait_s: float) -> str:
        done_here = step - self.first_step + 1
        per_step = (time.monotonic() - self.started) / done_here
        eta = timedelta(seconds=round(per_step * (self.total_steps - step)))
        in_epoch = step - epoch * self.steps_per_epoch
        return (f"train: epoch {epoch + 1}/{self.cfg.train.epochs} [{in_epoch}/{self.steps_per_epoch}] "
                f"step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%)  "
                f"loss {loss:.4f} ({self.loss_sum / self.loss_count:.4f})  lr {lr:.3e}  "
                f"{clips_per_s:.1f} clips/s  data {data_wait_s:.3f}s  eta {eta}")

    def log_eval(self, *, epoch: int, step: int, metrics: dict) -> None:
        """An evaluation, as in summary.csv: top-1 / top-5 (%) after `epoch` (0-based), at optimizer step `step`."""
        values = {f"eval/{k}": float(metrics[k]) for k in ("top1", "top5") if metrics.get(k) not in (None, "")}
        if not values:
            return
        if self.backends is None:
            self._open(step)
        for backend in self.backends:
            backend.log(values, step)

    def close(self) -> None:
        for backend in self.backends or []:
            backend.close()
        self.backends = None
