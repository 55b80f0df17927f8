"""`vifi bench data|train|eval`: throughput benchmarks. The last line printed is one JSON object."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Literal, Optional

import typer

from vifi.cli.options import Backend, Precision, TrainMode, backend_option

# `bench memory` also plans bridge-and-prompt runs (vifi/model/memory.py estimates them); `bench train` cannot run them
MemoryMode = Literal["both", "image", "text", "prompt"]
Attention = Literal["auto", "flash", "efficient", "cudnn", "math", "mha"]  # train.attention (vifi/config.py)
GpuDecode = Literal["nvjpeg", "nvdec"]  # data.backend values that decode on the GPU (vifi/data/device_decode.py)
CompileMode = Literal["default", "max-autotune-no-cudagraphs", "max-autotune"]

bench_app = typer.Typer(help="Benchmarks: data loading, train step, eval step. Last line of output is JSON.",
                        no_args_is_help=True)


def _emit(record: dict) -> None:
    from vifi import console

    console.result(json.dumps(record, sort_keys=True))


def _json_only(as_json: bool) -> None:
    """--json: stdout carries only the JSON line; the human table moves to stderr."""
    from vifi import console

    console.reserve_stdout(as_json)


JSON_HELP = "print only the JSON record on stdout (the table goes to stderr)"


def _at_least(minimum: int, **flags) -> None:
    """One error naming the first flag below its minimum (a zero frame count divided by zero mid-measurement)."""
    from vifi.errors import VifiError

    for name, value in flags.items():
        if value is not None and value < minimum:
            raise VifiError(f"--{name.replace('_', '-')} {value}: give a number ≥ {minimum}")


@bench_app.command("data", help="Clips per second of the data path (decode, sample, crop) with each backend."
                                  "\n\nExample: vifi bench data --backend torchcodec --workers 4 --json")
def data(
    data_list: Optional[str] = typer.Option(None, "--data", help="annotation list (default: synthetic 10 s clips)"),
    root: Optional[str] = typer.Option(None, "--root", help="video root of --data"),
    frames: int = typer.Option(32, "--frames", help="frames per clip"),
    size: int = typer.Option(224, "--size", help="crop size"),
    workers: int = typer.Option(2, "--workers", help="DataLoader processes"),
    clips: int = typer.Option(32, "--clips", help="clips to load (after warm-up)"),
    backend: Backend = backend_option(),
    model_clips_per_s: Optional[float] = typer.Option(None, "--model-clips-per-s",
                                                      help="measured train speed (vifi bench train) -> data-wait share"),
    compare_formats: Optional[Path] = typer.Option(None, "--compare-formats",
                                                   help="re-encode this video in each storage format and time each"),
    short_side: int = typer.Option(256, "--short-side", help="short side for --compare-formats"),
    gpu_decode: Optional[GpuDecode] = typer.Option(None, "--gpu-decode", help="decode on the GPU instead "
                                                   "(data.backend nvjpeg for MJPEG, nvdec for H.264/HEVC)"),
    prepared: bool = typer.Option(False, "--prepared", help="time the clips re-encoded as `vifi prepare --reencode` "
                                                           "writes them (intra-only MJPEG)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    _json_only(as_json)
    _at_least(1, frames=frames, size=size, clips=clips, short_side=short_side)
    _at_least(0, workers=workers)
    from vifi.bench.data import compare_formats as compare, data_wait_fraction, loader_throughput, synthetic_entries
    from vifi.bench.data import prepared_entries
    from vifi.data.annotations import read_annotation_list
    from vifi.errors import VifiError
    from vifi.results import print_table

    if compare_formats is not None:
        if not compare_formats.is_file():
            raise VifiError(f"--compare-formats {compare_formats}: file not found")
        import pandas as pd

        rows = compare(compare_formats, short_side=short_side, frames=frames, clips=clips,
                       formats=["h264", "h264-intra", "mjpeg"], backend=backend)
        print_table(pd.DataFrame(rows), f"training data path, 1 process, {frames} frames/clip: {compare_formats.name}")
        _emit({"compare_formats": rows, "frames": frames, "short_side": short_side})
        return
    if data_list:
        if not root:
            raise VifiError("--data needs --root")
        entries = read_annotation_list(data_list)
        source = data_list
    else:
        import tempfile

        folder = Path(tempfile.gettempdir()) / "vifi-bench-data"
        entries, root = synthetic_entries(folder), str(folder)
        source = "synthetic 10 s 340x256 30 fps H.264 clips"
    if prepared:
        entries, root = prepared_entries(entries, Path(root))
        source += ", re-encoded to MJPEG (vifi prepare --reencode)"
    result = loader_throughput(entries, root, frames=frames, size=size, workers=workers, clips=clips,
                               backend=gpu_decode or backend)
    result["data_wait_fraction"] = data_wait_fraction(result["clips_per_s"], model_clips_per_s)
    result["source"] = source
    import pandas as pd

    print_table(pd.DataFrame([{k: (round(v, 1) if isinstance(v, float) else v) for k, v in result.items()
                               if k != "source"}]), f"data loading: {source}")
    _emit(result)


@bench_app.command("memory", help="Estimated peak memory of a training step, and the micro-batch and activation "
                                    "checkpointing that `train.checkpointing: auto` picks for a device size (no GPU "
                                    "needed).\n\nExample: vifi bench memory --arch ViT-L-14 --device-gib 40")
def memory(
    arch: str = typer.Option("ViT-B-16", "--arch", help="open_clip architecture or tiny"),
    frames: int = typer.Option(32, "--frames"),
    classes: int = typer.Option(400, "--classes"),
    batch: int = typer.Option(256, "--batch", help="clips per device and optimizer step (global batch / GPUs)"),
    device_gib: Optional[float] = typer.Option(None, "--device-gib", help="device memory (default: this GPU's, "
                                                                         "else 80)"),
    train_mode: MemoryMode = typer.Option("both", "--mode", help="which towers train (or prompt)"),
    compile_: bool = typer.Option(False, "--compile", help="estimate for the compiled step (less memory)"),
    mix_group: int = typer.Option(4, "--mix-group", help="micro-batches are whole mix groups (1: no mixing)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    _json_only(as_json)
    import pandas as pd

    from vifi.errors import VifiError
    from vifi.model.backbone import arch_config
    from vifi.model.memory import GIB, Shape, plan_memory, train_step_bytes
    from vifi.results import print_table

    # `not 0 < x < inf` also refuses nan and inf, which float options accept and the plan cannot use
    if min(frames, classes, batch, mix_group) < 1 or (device_gib is not None and not 0 < device_gib < math.inf):
        raise VifiError("--frames, --classes, --batch, --mix-group and --device-gib must be positive (finite)")
    if device_gib is None:
        import torch

        device_gib = torch.cuda.get_device_properties(0).total_memory / GIB if torch.cuda.is_available() else 80.0
    shape = Shape.of(arch_config(arch))
    plan = plan_memory(shape, device_gib=device_gib, frames=frames, classes=classes, batch=batch, mode=train_mode,
                       compiled=compile_, mix_group=mix_group)
    rows = []
    for blocks in sorted({0, plan.checkpoint_blocks, shape.image_blocks}):
        need = train_step_bytes(shape, frames=frames, micro_batch=plan.micro_batch, classes=classes,
                                checkpoint_blocks=blocks, mode=train_mode, compiled=compile_) / GIB
        rows.append({"micro_batch": plan.micro_batch, "checkpointed_blocks": blocks, "estimate_gib": round(need, 1),
                     "fits": need <= plan.budget_gib, "chosen": blocks == plan.checkpoint_blocks})
    print_table(pd.DataFrame(rows), f"memory estimate: {arch}, {frames} frames, {classes} classes, "
                                    f"{device_gib:g} GiB device (budget {plan.budget_gib:.1f} GiB)")
    _emit({"arch": arch, "frames": frames, "classes": classes, "batch": batch, "mode": train_mode,
           "compile": compile_, "device_gib": round(device_gib, 1), "budget_gib": round(plan.budget_gib, 1),
           "micro_batch": plan.micro_batch, "checkpoint_blocks": plan.checkpoint_blocks,
           "image_blocks": shape.image_blocks, "estimate_gib": round(plan.estimate_gib, 2)})


@bench_app.command("e2e", help="A recipe's own training loop on your videos for a few steps, plus a short "
                                 "evaluation; prints the rates and the projected hours of the whole run."
                                 "\n\nExample: vifi bench e2e k400-supervised --data train.txt --root videos/ "
                                 "--videos 240000 --val-videos 19877 --json")
def e2e(
    recipe: str = typer.Argument(..., help="recipe name (e.g. k400-supervised) or a YAML config path"),
    data_list: str = typer.Option(..., "--data", help="annotation list whose videos are timed"),
    root: str = typer.Option(..., "--root", help="video root of --data"),
    labels: Optional[str] = typer.Option(None, "--labels", help="label CSV (default: as many classes as --data uses)"),
    val: Optional[str] = typer.Option(None, "--val", help="evaluation list (default: --data)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="config override, e.g. --set model.arch=tiny"),
    steps: int = typer.Option(3, "--steps", help="timed optimizer steps"),
    warmup: int = typer.Option(1, "--warmup", help="untimed steps first (worker start-up, compilation)"),
    videos: Optional[int] = typer.Option(None, "--videos", help="training videos of the projected run "
                                                                "(default: the size of --data)"),
    val_videos: Optional[int] = typer.Option(None, "--val-videos", help="evaluation videos of the projected run "
                                                                        "(default: the size of --val)"),
    eval_videos: int = typer.Option(16, "--eval-videos", help="videos of the timed evaluation pass"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when present)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    _json_only(as_json)
    from vifi.bench.e2e import run_e2e
    from vifi.config import check_cli_values, load_config
    from vifi.engine.runtime import setup_runtime
    from vifi.results import print_table

    check_cli_values(device=device)
    cfg = load_config(recipe, list(set_ or []))
    runtime = setup_runtime(device, cfg.train.precision)
    record = run_e2e(cfg, runtime, data=data_list, root=root, labels=labels, val=val, steps=steps, warmup=warmup,
                     videos=videos, val_videos=val_videos, eval_videos=eval_videos)
    import pandas as pd

    shown = {k: record[k] for k in ("frames_per_s", "model_frames_per_s", "data_frames_per_s", "data_wait_share",
                                    "eval_videos_per_s", "final_eval_videos_per_s", "startup_s", "projected_hours")}
    shown.update(record["projection"])
    print_table(pd.DataFrame({"measure": list(shown), "value": [f"{v:.4g}" for v in shown.values()]}),
                f"bench e2e: {record['recipe']}, {record['frames']} frames, {record['workers']} workers, "
                f"{record['backend']} on {record['device']}")
    _emit(_rounded(record))


def _rounded(record: dict) -> dict:
    def r(v):
        if isinstance(v, float):
            return float(f"{v:.4g}")
        return {k: r(x) for k, x in v.items()} if isinstance(v, dict) else v
    return {k: r(v) for k, v in record.items()}


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


def _run_model_bench(kind: str, arch: str, frames: int, micro_batch: str, classes: int, global_batch: int,
                     train_mode: str, compile_: bool, checkpointing: bool, compare_reference: bool, device: Optional[str],
                     precision: str, steps: int, warmup: int, peak: Optional[float], checkpoint_blocks: Optional[int] = None,
                     data: Optional[str] = None, root: Optional[str] = None, workers: str = "auto",
                     attention: str = "auto", compile_mode: str = "default") -> None:
    import torch

    from vifi.bench.model import BenchSpec, auto_micro_batch, measure, peak_tflops, round_record
    from vifi.config import check_cli_values
    from vifi.engine.runtime import setup_runtime
    from vifi.errors import VifiError
    from vifi.results import device_description

    check_cli_values(frames=frames, device=device)
    _at_least(1, classes=classes, steps=steps, **({"global_batch": global_batch} if kind == "train" else {}))
    _at_least(0, warmup=warmup)

    if data and not root:
        raise VifiError("--data needs --root")
    if checkpoint_blocks is not None:
        checkpointing = checkpoint_blocks if checkpoint_blocks > 0 else False
    if workers != "auto":
        try:
            workers = int(workers)
        except ValueError:
            raise VifiError(f"--workers {workers!r}: give a number or auto") from None
        _at_least(0, workers=workers)
    runtime = setup_runtime(device, precision)
    spec = BenchSpec(arch=arch, frames=frames, micro_batch=1, classes=classes, global_batch=global_batch,
                     train_mode=train_mode, compile=compile_, checkpointing=checkpointing, steps=steps, warmup=warmup,
                     data=data, root=root, workers=workers,
                     attention=attention, compile_mode=compile_mode)
    if micro_batch == "auto":
        spec.micro_batch = auto_micro_batch(spec, runtime, kind, multiple_of=4 if kind == "train" else 1)
    else:
        flag = "micro_batch" if kind == "train" else "batch"  # `bench eval` calls it --batch
        try:
            spec.micro_batch = int(micro_batch)
        except ValueError:
            raise VifiError(f"--{flag.replace('_', '-')} {micro_batch!r}: give a number or auto") from None
        _at_least(1, **{flag: spec.micro_batch})
    if kind == "train" and global_batch % spec.micro_batch:
        raise VifiError(f"--global-batch {global_batch} is not a multiple of --micro-batch {spec.micro_batch}")
    peak = peak_tflops(runtime.device, peak)
    ours = measure(kind, spec, runtime, reference=False, peak=peak)
    record = {"kind": kind, "arch": arch, "frames": frames, "micro_batch": spec.micro_batch, "classes": classes,
              "global_batch": global_batch if kind == "train" else None, "compile": compile_,
              "checkpointing": checkpointing, "data": data or "synthetic uint8", "precision": runtime.precision,
              "attention": attention, "compile_mode": compile_mode,
              "device": device_description(runtime.device),
              "torch": torch.__version__, "peak_tflops": peak, **ours}
    if compare_reference:
        ref = measure(kind, spec, runtime, reference=True, peak=peak)
        record.update({"reference_clips_per_s": ref["clips_per_s"], "reference_mfu": ref["mfu"],
                       "reference_peak_mem_gib": ref["peak_mem_gib"], "speedup": ours["clips_per_s"] / ref["clips_per_s"]})
    import pandas as pd

    from vifi.results import print_table

    shown = {k: v for k, v in round_record(record).items() if k in (
        "clips_per_s", "frames_per_s", "mfu", "peak_mem_gib", "reference_clips_per_s", "speedup", "host_syncs_per_step",
        "data_wait_share")}
    print_table(pd.DataFrame([shown]), f"bench {kind}: {arch}, {frames} frames, micro-batch {spec.micro_batch}, "
                                      f"{classes} classes on {record['device']}")
    _emit(round_record(record))



@bench_app.command("train", help="Train-step throughput, MFU and memory on synthetic tensors."
                                   "\n\nExample: vifi bench train --arch ViT-B-16 --micro-batch auto --compile")
def train(
    arch: str = typer.Option("ViT-B-16", "--arch", help="open_clip architecture (random weights) or tiny"),
    frames: int = typer.Option(32, "--frames"),
    micro_batch: str = typer.Option("16", "--micro-batch", help="clips per micro-batch, or auto"),
    classes: int = typer.Option(400, "--classes"),
    global_batch: int = typer.Option(256, "--global-batch", help="clips per optimizer step"),
    train_mode: TrainMode = typer.Option("both", "--mode", help="which towers train"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the video head"),
    checkpointing: bool = typer.Option(False, "--grad-checkpointing", "--checkpointing",
                                       help="activation checkpointing of every image block (--checkpointing: old "
                                            "spelling)"),
    checkpoint_blocks: Optional[int] = typer.Option(None, "--checkpoint-blocks",
                                                    help="activation checkpointing of the first N image blocks"),
    data_list: Optional[str] = typer.Option(None, "--data", help="annotation list: time real decoded clips"),
    root: Optional[str] = typer.Option(None, "--root", help="video root of --data"),
    workers: str = typer.Option("auto", "--workers", help="loader processes with --data (auto: cores available)"),
    compare_reference: bool = typer.Option(False, "--compare-reference", help="also measure the reference mode"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu"),
    precision: Precision = typer.Option("auto", "--precision", help="auto: bf16 on CUDA, fp32 on CPU"),
    steps: int = typer.Option(3, "--steps", help="timed optimizer steps"),
    warmup: int = typer.Option(1, "--warmup", help="untimed steps first (compilation, allocator)"),
    peak: Optional[float] = typer.Option(None, "--peak-tflops", help="device peak for MFU (default: known GPUs)"),
    attention: Attention = typer.Option("auto", "--attention", help="SDPA kernel family, or mha: open_clip's "
                                                                   "nn.MultiheadAttention path (train.attention)"),
    compile_mode: CompileMode = typer.Option("default", "--compile-mode", help="torch.compile mode with --compile "
                                                                              "(train.compile_mode)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    _json_only(as_json)
    _run_model_bench("train", arch, frames, micro_batch, classes, global_batch, train_mode, compile_, checkpointing,
                     compare_reference, device, precision, steps, warmup, peak, checkpoint_blocks, data_list, root, workers,
                     attention, compile_mode)


@bench_app.command("eval", help="Evaluation throughput on synthetic tensors."
                                  "\n\nExample: vifi bench eval --arch ViT-B-16 --batch 32 --json")
def eval_(
    arch: str = typer.Option("ViT-B-16", "--arch"),
    frames: int = typer.Option(32, "--frames"),
    batch: str = typer.Option("16", "--batch", help="clips per batch"),
    classes: int = typer.Option(400, "--classes"),
    compile_: bool = typer.Option(False, "--compile"),
    compare_reference: bool = typer.Option(False, "--compare-reference"),
    device: Optional[str] = typer.Option(None, "--device"),
    precision: Precision = typer.Option("auto", "--precision", help="auto: bf16 on CUDA, fp32 on CPU"),
    steps: int = typer.Option(5, "--steps"),
    warmup: int = typer.Option(2, "--warmup"),
    peak: Optional[float] = typer.Option(None, "--peak-tflops"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    _json_only(as_json)
    _run_model_bench("eval", arch, frames, batch, classes, 0, "frozen", compile_, False, compare_reference, device,
                     precision, steps, warmup, peak)


@bench_app.command("search", help="The search store at scale: append cost at the start and end of a build, query "
                                  "latency, recall@10 against exact search, peak RSS of searching, disk."
                                  "\n\nExample: vifi bench search --rows 100000 --dim 512 --json")
def search(
    rows: int = typer.Option(100_000, "--rows", help="synthetic rows (videos or windows) to build"),
    dim: int = typer.Option(512, "--dim", help="embedding dimension"),
    queries: int = typer.Option(100, "--queries", help="timed queries (after one warm-up)"),
    folder: Optional[Path] = typer.Option(None, "--folder", help="where to build the store (default: a temporary "
                                                                 "folder, removed after)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    _json_only(as_json)
    import tempfile

    from vifi.errors import VifiError
    from vifi.search.bench import run

    for flag, value, least in (("--rows", rows, 10), ("--dim", dim, 2), ("--queries", queries, 1)):
        if value < least:
            raise VifiError(f"{flag} {value}: must be at least {least}")
    if folder is not None and folder.exists():
        raise VifiError(f"--folder {folder} exists; give a new folder (the bench builds its store there)")
    keep = folder is not None
    target = folder if keep else Path(tempfile.mkdtemp(prefix="vifi-bench-search-")) / "store"
    try:
        record = run(target, rows, dim, queries, keep=keep)
    finally:
        if not keep:
            import shutil

            shutil.rmtree(target.parent, ignore_errors=True)
    _emit(record)
