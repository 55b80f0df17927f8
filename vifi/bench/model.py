"""`vifi bench train|eval`: the engine's step on synthetic tensors of a real architecture (random weights, no
download), and the same measurement in a reference-equivalent mode in the same process, so speed-ups are ratios
measured side by side.

Reference-equivalent mode (SPEC §1.6, §7.11): fp16 autocast (+ GradScaler when training), the 77-token text tower
re-run for every micro-batch, no torch.compile, micro-batch 4, plain (unfused) AdamW.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from vifi.engine.runtime import Runtime

# Dense bf16/fp16 tensor-core peaks (TFLOP/s), from the vendors' data sheets; matched on the device name.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0,
               "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0, "RTX 4090": 165.0,
               "V100": 125.0}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return value
    return None


@dataclass
class BenchSpec:
    arch: str = "ViT-B-16"
    frames: int = 32
    micro_batch: int = 16
    classes: int = 400
    global_batch: int = 256
    train_mode: str = "both"
    compile: bool = False
    checkpointing: bool = False
    steps: int = 3
    warmup: int = 1


def build_random_model(arch: str, train_mode: str, device: torch.device):
    from vifi.model.backbone import load_clip
    from vifi.model.vifi_clip import ViFiCLIP

    clip, cfg = load_clip(arch, None, allow_random=True)
    return ViFiCLIP(clip, cfg, train_mode).to(device)


def class_tokens(model, classes: int) -> torch.Tensor:
    # Kinetics-like names: two to four words (the longest real prompts are ~15-25 tokens, SPEC §1.2)
    words = ["playing", "riding", "throwing", "a", "ball", "guitar", "mechanical", "bull", "snow", "board"]
    names = [" ".join(words[(i * 7 + j) % len(words)] for j in range(2 + i % 3)) + f" {i}" for i in range(classes)]
    return model.tokenize([f"a photo of a {n}." for n in names])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mem_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def train_step_fn(model, runtime: Runtime, spec: BenchSpec, reference: bool):
    """One optimizer step (accumulated micro-batches) on synthetic data, in the engine's or the reference's way."""
    from vifi.config import RunConfig
    from vifi.data.mixup import soft_target_cross_entropy
    from vifi.engine.train import accumulate_step_gradients

    device = runtime.device
    micro = 4 if reference else spec.micro_batch
    accum = max(1, spec.global_batch // micro)
    size = model.arch["vision_cfg"]["image_size"]
    videos = torch.randn(micro, spec.frames, 3, size, size, device=device)
    targets = torch.nn.functional.one_hot(torch.arange(micro, device=device) % spec.classes, spec.classes).float()
    tokens = class_tokens(model, spec.classes).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    cfg = RunConfig()
    opt = torch.optim.AdamW(params, lr=1e-9, betas=tuple(cfg.train.betas), weight_decay=cfg.train.weight_decay,
                            fused=(device.type == "cuda" and not reference))
    if reference:
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
        autocast = torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)

        def step():
            for _ in range(accum):
                with autocast:
                    logits = model.head(videos, model.encode_text(tokens, truncate=False))
                    loss = soft_target_cross_entropy(logits.float(), targets) / accum
                scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        return step, accum * micro

    head = torch.compile(model.head) if spec.compile else model.head
    batches = [(videos, targets)] * accum

    def step():
        accumulate_step_gradients(model, head, batches, tokens, None, runtime, local_batch=accum * micro)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, accum * micro


def eval_step_fn(model, runtime: Runtime, spec: BenchSpec, reference: bool):
    device = runtime.device
    size = model.arch["vision_cfg"]["image_size"]
    videos = torch.randn(spec.micro_batch, spec.frames, 3, size, size, device=device)
    tokens = class_tokens(model, spec.classes).to(device)
    model.eval()
    if reference:
        autocast = torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)

        @torch.no_grad()
        def step():
            with autocast:
                return model.head(videos, model.encode_text(tokens, truncate=False))  # text every batch
        return step, spec.micro_batch

    with torch.no_grad(), runtime.autocast():
        text = model.encode_text(tokens).float()  # once per evaluation run
    head = torch.compile(model.head) if spec.compile else model.head

    @torch.no_grad()
    def step():
        with runtime.autocast():
            return head(videos, text)
    return step, spec.micro_batch


def measure(kind: str, spec: BenchSpec, runtime: Runtime, reference: bool, peak: float | None,
            count_flops: bool = True) -> dict:
    model = build_random_model(spec.arch, spec.train_mode if kind == "train" else "frozen", runtime.device)
    if spec.checkpointing and not reference:
        model.clip.set_grad_checkpointing(True)
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    make = train_step_fn if kind == "train" else eval_step_fn
    step, clips = make(model, runtime, spec, reference)
    seconds = _timed(step, spec.steps, spec.warmup, runtime.device)
    peak_mem = _peak_mem_gib(runtime.device)  # of the timed steps, before the FLOP count runs one more
    # FLOPs are counted on an eager step (the counter cannot see inside compiled graphs; the maths is the same)
    flops = float("nan")
    if count_flops:
        flops = _count_flops(step if not spec.compile or reference else make(
            model, runtime, BenchSpec(**{**spec.__dict__, "compile": False}), False)[0])
    clips_per_s = clips / seconds
    achieved = flops / seconds / 1e12
    result = {"clips_per_s": clips_per_s, "frames_per_s": clips_per_s * spec.frames, "step_s": seconds,
              "tflops_per_step": flops / 1e12, "achieved_tflops": achieved,
              "mfu": achieved / peak if peak else None, "peak_mem_gib": peak_mem}
    del model, step
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def auto_micro_batch(spec: BenchSpec, runtime: Runtime, kind: str = "train", multiple_of: int = 1) -> int:
    """Largest micro-batch `multiple_of`·2^k (dividing the global batch) whose step runs without running out of
    memory."""
    if runtime.device.type != "cuda":
        return spec.micro_batch
    best = None
    m = multiple_of
    while m <= spec.global_batch:
        if spec.global_batch % m == 0:
            probe = BenchSpec(**{**spec.__dict__, "micro_batch": m, "global_batch": m, "steps": 1, "warmup": 1})
            try:
                measure(kind, probe, runtime, reference=False, peak=None, count_flops=False)  # fit is all we ask
                best = m
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                break
        m *= 2
    if best is None:
        from vifi.errors import VifiError

        raise VifiError("not even a micro-batch of 1 fits in GPU memory; try --checkpointing or fewer --frames")
    return best


def round_record(record: dict) -> dict:
    return {k: (float(f"{v:.5g}") if isinstance(v, float) and math.isfinite(v) else v) for k, v in record.items()}
