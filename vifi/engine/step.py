"""One optimizer step, as every training subcommand and `vifi bench train` run it (docs/performance.md).

Per step and rank: the class text once (a detached leaf whose gradient goes back through the text tower once at
the end), then for each micro-batch in turn: host→device copy on a side stream (it overlaps the previous
micro-batch's compute), colour augmentation, grouped mixup (host-drawn plan, docs/design.md "Mixup"), forward and
backward. Only one micro-batch of video is on the device at a time. The step ends with one host read: the summed
loss and whether the loss and every gradient are finite (a non-finite step is skipped, never applied).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from vifi.data.augment import augment_batch
from vifi.data.mixup import MixSettings, apply_mix, mix_plan, soft_target_cross_entropy
from vifi.engine.runtime import Runtime


@dataclass
class StepResult:
    loss: float
    finite: bool
    data_wait_s: float  # host time spent waiting for the loader's micro-batches


def text_step_gradient(model, tokens: torch.Tensor, runtime: Runtime, length: int | None = None):
    """(text features with graph, detached leaf that micro-batches use)."""
    with runtime.autocast():
        feats = model.encode_text(tokens, length=length)
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


def accumulate_step_gradients(model, head, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                              tokens: torch.Tensor, cached_text: torch.Tensor | None, runtime: Runtime, *,
                              local_batch: int, scaler=None, text_length: int | None = None,
                              count: int | None = None) -> torch.Tensor:
    """Gradients of one optimizer step over `count` (default: len(batches)) micro-batches [(videos, soft
    targets)], consumed one at a time; returns the summed loss (a device tensor).

    Loss per micro-batch is its mean × (its size / local batch), so the sum is the mean over the local batch;
    DDP averages over ranks, which makes it the mean over the global batch.
    """
    if cached_text is None:
        feats, leaf = text_step_gradient(model, tokens, runtime, text_length)
    else:
        feats, leaf = None, cached_text
    count = len(batches) if count is None else count
    total = torch.zeros((), device=runtime.device)
    for j, (videos, targets) in enumerate(batches):
        last = j == count - 1
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


class DeviceFeed:
    """Host micro-batches → device tensors; on CUDA the copy runs on a side stream so that it overlaps compute."""

    def __init__(self, device: torch.device, decode: Callable | None = None):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.decode = decode  # GPU decode backends: plans -> uint8 clips on the device (vifi/data/device_decode.py)

    def __call__(self, item: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
            frames = self.decode(item["plans"]) if "plans" in item else item["frames"].to(self.device,
                                                                                         non_blocking=True)
            labels = item["label"].to(self.device, non_blocking=True)
            params = {k: v.to(self.device, non_blocking=True) for k, v in item["params"].items()}
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for t in (frames, labels, *params.values()):
                t.record_stream(current)  # the caching allocator must not reuse them while compute reads them
        return frames, labels, params


class StepEngine:
    """Runs optimizer steps of `model` on host micro-batches (uint8 frames + colour params + labels)."""

    def __init__(self, model, head, optimizer, runtime: Runtime, *, mix: MixSettings, num_classes: int, seed: int,
                 local_batch: int, accum: int, tokens: torch.Tensor, scaler=None, compile_augment: bool = False,
                 attention: str = "auto", decode: Callable | None = None):
        self.model, self.head, self.optimizer, self.runtime = model, head, optimizer, runtime
        self.mix, self.num_classes, self.seed = mix, num_classes, seed
        self.local_batch, self.accum, self.scaler = local_batch, accum, scaler
        cpu_tokens = tokens.cpu()
        # The prompts' longest EOT, read once from host tokens: no device read inside a step.
        self.text_length = int(cpu_tokens.argmax(dim=-1).max()) + 1
        self.tokens = tokens.to(runtime.device)
        self.feed = DeviceFeed(runtime.device, decode)
        self.attention = attention  # train.attention: SDPA kernel family (vifi/model/attention.py)
        self.augment: Callable = torch.compile(augment_batch, dynamic=False) if compile_augment else augment_batch
        self.cached_text = None
        if not model.text_trainable:
            with torch.no_grad(), runtime.autocast():
                self.cached_text = model.encode_text(self.tokens).float()  # frozen text: once for the whole run

    def _device_batches(self, host: Iterator[dict], step: int, waits: list[float]):
        first_clip = self.runtime.rank * self.local_batch  # this rank's share starts here in the global batch
        for _ in range(self.accum):
            tic = time.perf_counter()
            item = next(host)
            waits.append(time.perf_counter() - tic)
            frames, labels, params = self.feed(item)
            videos = self.augment(frames, params)
            plan = None
            if self.mix.active:
                b, h, w = videos.shape[0], videos.shape[-2], videos.shape[-1]
                plan = mix_plan(self.mix, seed=self.seed, step=step, first_clip=first_clip, size=b, height=h,
                                width=w)
                pin = self.runtime.device.type == "cuda"
                plan = (plan.pin_memory() if pin else plan).to(self.runtime.device, non_blocking=True)
            first_clip += frames.shape[0]
            yield apply_mix(videos, labels, self.num_classes, self.mix.smoothing, plan)

    def run(self, host: Iterator[dict], step: int, on_nonfinite: Callable[[int], None] | None = None) -> StepResult:
        """One optimizer step over the next `accum` host micro-batches of `host` (the LR is already set)."""
        from vifi.model.attention import sdpa_backend

        waits: list[float] = []
        with sdpa_backend(self.attention):
            total = accumulate_step_gradients(self.model, self.head, self._device_batches(host, step, waits),
                                              self.tokens, self.cached_text, self.runtime,
                                              local_batch=self.local_batch, scaler=self.scaler,
                                              text_length=self.text_length, count=self.accum)
        if self.scaler is not None:  # fp16: GradScaler checks the gradients itself (and reads them to the host)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss, finite = float(total), True
        else:
            loss, finite = self._read_loss_and_finite(total)  # the step's one host read
            if finite:
                self.optimizer.step()
            elif on_nonfinite is not None:
                on_nonfinite(step)
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss=loss, finite=finite, data_wait_s=sum(waits))

    def _read_loss_and_finite(self, loss: torch.Tensor) -> tuple[float, bool]:
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms = torch._foreach_norm(grads) if grads else []
        finite = torch.isfinite(torch.stack([loss.float(), *[n.float() for n in norms]])).all()
        value, ok = torch.stack([loss.float(), finite.float()]).tolist()
        return value, ok == 1.0
