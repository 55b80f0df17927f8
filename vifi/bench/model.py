"""`vifi bench train|eval`: the engine's real step on synthetic uint8 frames of a real architecture (random
weights, no download), and the same measurement in a reference-equivalent mode in the same process, so speed-ups
are ratios measured side by side.

Ours, train: `vifi.engine.step.StepEngine`, exactly what `vifi finetune` runs per optimizer step: host→device copy
of uint8 frames (side stream), colour augmentation, grouped mixup, the class text once per step, forward/backward
per micro-batch, one host read, fused AdamW. `--data LIST --root DIR` feeds it real decoded clips through the
training loader instead of synthetic frames. Ours, eval: uint8 frames → normalisation → video head → per-view
softmax sum, the evaluation's own function.

Reference-equivalent mode (SPEC §1.6, §7.11 as summarised in docs/performance.md): fp16 autocast (+ GradScaler when
training) on CUDA, the 77-token text tower re-run for every micro-batch, no torch.compile, micro-batch 4 (training)
or batch 2 (evaluation, the reference's test batch), plain (unfused) AdamW, already-normalised float input (the
reference normalised in its CPU workers). On CPU both sides run at the runtime's precision.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
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
    checkpointing: bool | int = False  # True: every image block; N: the first N image blocks
    steps: int = 3
    warmup: int = 1
    data: str | None = None  # annotation list: real decoded clips instead of synthetic frames (train)
    root: str | None = None
    workers: int | str = "auto"
    attention: str = "auto"  # train.attention (vifi/model/attention.py)
    compile_mode: str = "default"  # train.compile_mode


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
    if hasattr(fn, "counter"):  # data wait is reported for the timed steps only (not worker start-up)
        fn.counter.update(step=0, data_wait_s=0.0)
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


def _reference_autocast(runtime: Runtime):
    """The reference's amp O1 is fp16 on CUDA; on CPU both sides use the runtime's precision (no fp16 on CPU)."""
    if runtime.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return runtime.autocast()


def synthetic_host_batch(micro: int, frames: int, size: int, classes: int, device: torch.device, seed: int = 0):
    """One loader micro-batch as the workers hand it over: uint8 frames, labels, per-video colour draws."""
    import numpy as np

    from vifi.data.augment import draw_colour_params
    from vifi.data.dataset import collate

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    items = [{"frames": torch.randint(0, 256, (frames, size, size, 3), dtype=torch.uint8, generator=gen),
              "label": i % classes, "index": i,
              "params": {k: torch.from_numpy(np.asarray(v)) for k, v in draw_colour_params(frames, rng, 0.8, 0.2).items()}}
             for i in range(micro)]
    batch = collate(items)
    if device.type == "cuda":  # what pin_memory=True gives the training loader
        batch = {k: (v.pin_memory() if isinstance(v, torch.Tensor) else
                     {kk: vv.pin_memory() for kk, vv in v.items()} if isinstance(v, dict) else v)
                 for k, v in batch.items()}
    return batch


def _real_host_batches(spec: BenchSpec, size: int, device: torch.device):
    from vifi.data.annotations import read_annotation_list
    from vifi.data.dataset import ClipSpec, StepBatches, TrainClips, collate
    from vifi.engine.loaders import RunBatches, make_loader, resolve_workers

    entries = read_annotation_list(spec.data)
    dataset = TrainClips(entries, spec.root, ClipSpec(spec.frames, size), seed=0)
    if len(entries) < spec.global_batch:
        from vifi.errors import VifiError

        raise VifiError(f"--data has {len(entries)} videos, fewer than one --global-batch ({spec.global_batch})")
    batches = RunBatches(lambda e, s: StepBatches(len(entries), spec.global_batch, spec.micro_batch, 0, e, s),
                         0, 0, 10_000)
    return iter(make_loader(dataset, batch_sampler=batches, workers=resolve_workers(spec.workers), device=device,
                            collate_fn=collate))


def train_step_fn(model, runtime: Runtime, spec: BenchSpec, reference: bool):
    """One optimizer step (accumulated micro-batches), in the engine's or the reference's way."""
    from vifi.config import RunConfig
    from vifi.data.mixup import soft_target_cross_entropy

    device = runtime.device
    micro = 4 if reference else spec.micro_batch
    accum = max(1, spec.global_batch // micro)
    size = model.arch["vision_cfg"]["image_size"]
    tokens = class_tokens(model, spec.classes)
    params = [p for p in model.parameters() if p.requires_grad]
    cfg = RunConfig()
    opt = torch.optim.AdamW(params, lr=1e-9, betas=tuple(cfg.train.betas), weight_decay=cfg.train.weight_decay,
                            fused=(device.type == "cuda" and not reference))
    if reference:
        videos = torch.randn(micro, spec.frames, 3, size, size, device=device)
        targets = torch.nn.functional.one_hot(torch.arange(micro, device=device) % spec.classes, spec.classes).float()
        tokens = tokens.to(device)
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")

        def step():
            for _ in range(accum):
                with _reference_autocast(runtime):
                    logits = model.head(videos, model.encode_text(tokens, truncate=False))
                    loss = soft_target_cross_entropy(logits.float(), targets) / accum
                scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        return step, accum * micro

    from vifi.data.mixup import MixSettings
    from vifi.engine.step import StepEngine

    mode = None if spec.compile_mode == "default" else spec.compile_mode
    head = torch.compile(model.head, mode=mode) if spec.compile else model.head
    t = cfg.train
    mix = MixSettings(t.mixup, t.cutmix, t.mix_switch_prob, t.label_smoothing, t.mix_group if micro % t.mix_group == 0 else 1)
    engine = StepEngine(model, head, opt, runtime, mix=mix, num_classes=spec.classes, seed=0,
                        local_batch=accum * micro, accum=accum, tokens=tokens, compile_augment=spec.compile,
                        attention=spec.attention)
    if spec.data:
        host = _real_host_batches(spec, size, device)
    else:
        batch = synthetic_host_batch(micro, spec.frames, size, spec.classes, device)
        host = iter(lambda: batch, None)  # the same pinned batch, forever
    counter = {"step": 0, "data_wait_s": 0.0}

    def step():
        result = engine.run(host, counter["step"])
        counter["step"] += 1
        counter["data_wait_s"] += result.data_wait_s
    step.counter = counter
    step.host = host
    return step, accum * micro


def eval_step_fn(model, runtime: Runtime, spec: BenchSpec, reference: bool):
    from vifi.engine.evaluate import view_scores_fn

    device = runtime.device
    size = model.arch["vision_cfg"]["image_size"]
    tokens = class_tokens(model, spec.classes).to(device)
    model.eval()
    if reference:
        batch = 2  # the reference's test batch per GPU
        videos = torch.randn(batch, spec.frames, 3, size, size, device=device)

        @torch.no_grad()
        def step():
            with _reference_autocast(runtime):
                return model.head(videos, model.encode_text(tokens, truncate=False))  # text every batch
        return step, batch

    with torch.inference_mode(), runtime.autocast():
        text = model.encode_text(tokens).float()  # once per evaluation run
    frames = torch.randint(0, 256, (spec.micro_batch, 1, spec.frames, size, size, 3), dtype=torch.uint8)
    frames = frames.pin_memory() if device.type == "cuda" else frames
    forward = view_scores_fn(model, runtime, compile=spec.compile)

    @torch.inference_mode()
    def step():
        return forward(frames.to(device, non_blocking=True), text)  # host→device copy included, as in eval
    return step, spec.micro_batch


def count_host_syncs(fn) -> tuple[int, list[str]] | None:
    """CUDA synchronisations during one call of fn, as torch's sync debug mode reports them, and the Python lines
    that caused them (None on CPU)."""
    if not torch.cuda.is_available():
        return None
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    return len(syncs), sorted({f"{Path(w.filename).name}:{w.lineno}" for w in syncs})


def measure(kind: str, spec: BenchSpec, runtime: Runtime, reference: bool, peak: float | None,
            count_flops: bool = True) -> dict:
    model = build_random_model(spec.arch, spec.train_mode if kind == "train" else "frozen", runtime.device)
    if reference or spec.attention == "mha":  # the reference runs open_clip's nn.MultiheadAttention path
        from vifi.model.attention import use_multihead_attention

        use_multihead_attention(model)
    if spec.checkpointing and not reference:
        from vifi.model.grad_checkpoint import checkpoint_image_blocks

        checkpoint_image_blocks(model, spec.checkpointing)
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    make = train_step_fn if kind == "train" else eval_step_fn
    step, clips = make(model, runtime, spec, reference)
    seconds = _timed(step, spec.steps, spec.warmup, runtime.device)
    peak_mem = _peak_mem_gib(runtime.device)  # of the timed steps, before the FLOP count runs one more
    syncs = count_host_syncs(step) if count_flops and kind == "train" else None
    # Model FLOPs, counted once on an eager step without activation checkpointing (its recomputation is not
    # useful work, and the counter cannot see inside compiled graphs; the maths is the same)
    flops = float("nan")
    if count_flops:
        if spec.checkpointing and not reference:
            from vifi.model.grad_checkpoint import checkpoint_image_blocks

            checkpoint_image_blocks(model, 0)
        plain = BenchSpec(**{**spec.__dict__, "compile": False, "checkpointing": False, "data": None})
        flops = _count_flops(step if (reference or not (spec.compile or spec.data)) else make(model, runtime, plain, False)[0])
    clips_per_s = clips / seconds
    achieved = flops / seconds / 1e12
    result = {"clips_per_s": clips_per_s, "frames_per_s": clips_per_s * spec.frames, "step_s": seconds,
              "tflops_per_step": flops / 1e12, "achieved_tflops": achieved,
              "mfu": achieved / peak if peak else None, "peak_mem_gib": peak_mem}
    # A loader never read to its end must be stopped here: its workers ignore SIGTERM (vifi/engine/workers.py),
    # so the interpreter's exit could not stop them.
    shutdown = getattr(getattr(step, "host", None), "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    counter = getattr(step, "counter", None)
    if counter is not None:
        result["data_wait_share"] = min(1.0, counter["data_wait_s"] / max(seconds * counter["step"], 1e-9))
    if syncs is not None:
        result["host_syncs_per_step"], result["host_sync_sites"] = syncs
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

        raise VifiError(f"not even a micro-batch of {multiple_of} fits in GPU memory; try --checkpointing or fewer "
                        "--frames")
    return best


def round_record(record: dict) -> dict:
    return {k: (float(f"{v:.5g}") if isinstance(v, float) and math.isfinite(v) else v) for k, v in record.items()}
