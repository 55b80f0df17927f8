"""`vifi bench` smoke tests on CPU with the tiny architecture: the last line is JSON with the promised fields."""

import json

import pytest

from tests.conftest import vifi_in_process


def _last_json(*args):
    proc = vifi_in_process("bench", *args)  # not a new process: that costs seconds of imports per call
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind,extra", [("train", ["--micro-batch", "2", "--global-batch", "4"]),
                                        ("eval", ["--batch", "2"])])
def test_bench_model_smoke_on_cpu(kind, extra):
    rec = _last_json(kind, "--device", "cpu", "--arch", "tiny", "--frames", "4", "--classes", "10",
                     "--compare-reference", "--steps", "2", *extra)
    for key in ("clips_per_s", "frames_per_s", "mfu", "peak_mem_gib", "reference_clips_per_s", "speedup"):
        assert key in rec
    assert rec["frames_per_s"] == pytest.approx(rec["clips_per_s"] * 4, rel=1e-3)
    assert rec["speedup"] == pytest.approx(rec["clips_per_s"] / rec["reference_clips_per_s"], rel=1e-2)
    assert rec["tflops_per_step"] > 0 and rec["mfu"] is None  # no known peak for a CPU
    with_peak = _last_json(kind, "--device", "cpu", "--arch", "tiny", "--frames", "4", "--classes", "10",
                           "--steps", "1", "--peak-tflops", "1", *extra)
    assert with_peak["mfu"] == pytest.approx(with_peak["achieved_tflops"], rel=1e-2)


def test_bench_data_on_generated_clips(tmp_path, demo_data):
    rec = _last_json("data", "--data", demo_data["train_list"], "--root", demo_data["root"], "--frames", "8",
                     "--size", "64", "--workers", "0", "--clips", "6", "--model-clips-per-s", "1000")
    assert rec["frames_per_s"] == pytest.approx(rec["clips_per_s"] * 8, rel=1e-3)
    assert rec["data_wait_fraction"] == pytest.approx(max(0.0, 1 - rec["clips_per_s"] / 1000), rel=1e-3)


def test_flop_count_of_a_train_step_is_three_forward_passes():
    """Sanity of the MFU numerator: a linear layer's forward + backward is three forwards; conv1 needs no input
    gradient (two); on CPU torch's counter counts no attention kernel (SDPA's CPU op) in either pass. The frozen text
    is computed once per run, outside the step. So the step is exactly 3 x linear + 2 x conv1 of the forward's FLOPs.
    (Before the packed attention path the forward went through nn.MultiheadAttention's fused eval op, whose
    projections the counter did not see.)"""
    import torch

    from vifi.bench.model import BenchSpec, _count_flops, build_random_model, eval_step_fn, train_step_fn
    from vifi.engine.runtime import setup_runtime
    from torch.utils.flop_counter import FlopCounterMode

    rt = setup_runtime("cpu", "fp32")
    spec = BenchSpec(arch="tiny", frames=2, micro_batch=2, classes=4, global_batch=2)
    torch.manual_seed(0)
    model = build_random_model("tiny", "image", rt.device)  # text frozen: its forward is not in the train step
    train, _ = train_step_fn(model, rt, spec, reference=False)
    fwd, _ = eval_step_fn(model, rt, spec, reference=False)
    counter = FlopCounterMode(display=False)
    with counter:
        fwd()
    by_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    conv = by_op["aten.convolution"]
    dense = _count_flops(fwd) - conv
    assert _count_flops(train) == pytest.approx(3 * dense + 2 * conv, rel=0.01)
    assert 2.5 < _count_flops(train) / _count_flops(fwd) < 3.0


def test_bench_train_on_real_clips_counts_model_flops_once_with_checkpointing(demo_data):
    # The real training step on decoded demo clips; FLOPs (MFU's numerator) exclude checkpointing's recomputation.
    common = ["train", "--device", "cpu", "--arch", "tiny", "--frames", "4", "--classes", "6", "--micro-batch", "4",
              "--global-batch", "8", "--steps", "1", "--warmup", "1", "--data", demo_data["train_list"],
              "--root", demo_data["root"], "--workers", "0"]
    plain = _last_json(*common)
    checked = _last_json(*common, "--checkpoint-blocks", "1")
    assert plain["data"] == str(demo_data["train_list"]) and checked["checkpointing"] == 1
    assert 0 <= plain["data_wait_share"] <= 1
    assert checked["tflops_per_step"] == pytest.approx(plain["tflops_per_step"], rel=1e-9)


def test_bench_memory_prints_the_plan_of_the_estimate():
    from vifi.model.backbone import arch_config
    from vifi.model.memory import Shape, plan_memory

    record = _last_json("memory", "--arch", "ViT-L-14", "--device-gib", "40", "--json")
    plan = plan_memory(Shape.of(arch_config("ViT-L-14")), device_gib=40, frames=32, classes=400, batch=256)
    assert (record["micro_batch"], record["checkpoint_blocks"]) == (plan.micro_batch, plan.checkpoint_blocks)
    assert record["estimate_gib"] == round(plan.estimate_gib, 2) and record["image_blocks"] == 24


@pytest.mark.parametrize("args,message", [(["--device-gib", "8", "--arch", "ViT-L-14"], "not even a micro-batch"),
                                          (["--device-gib", "0"], "must be positive"),
                                          (["--device-gib", "nan"], "must be positive"),
                                          (["--device-gib", "inf"], "must be positive"),
                                          (["--arch", "ViT-X-99"], "unknown architecture"),
                                          # no network here: the Hub's config cannot be read (was a traceback)
                                          (["--arch", "hf-hub:nobody-vifi-test/none"], "hf-hub:nobody-vifi-test/none")])
def test_bench_memory_bad_input_is_one_line(args, message):
    proc = vifi_in_process("bench", "memory", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and message in proc.stderr


def test_bench_memory_plans_a_prompt_run_as_its_help_says():
    from vifi.model.backbone import arch_config
    from vifi.model.memory import Shape, plan_memory

    record = _last_json("memory", "--arch", "ViT-B-16", "--device-gib", "24", "--mode", "prompt", "--json")
    plan = plan_memory(Shape.of(arch_config("ViT-B-16")), device_gib=24, frames=32, classes=400, batch=256,
                       mode="prompt")
    assert record["mode"] == "prompt"
    assert (record["micro_batch"], record["checkpoint_blocks"]) == (plan.micro_batch, plan.checkpoint_blocks)
    assert record["estimate_gib"] == round(plan.estimate_gib, 2)


def test_bench_data_prepared_times_the_mjpeg_reencode_and_reports_cpu_rate(tmp_path):
    """--prepared re-encodes the listed clips as `vifi prepare --reencode` does (intra-only MJPEG) and times those;
    in-process (--workers 0) the record has frames per CPU-second."""
    import av
    import numpy as np

    from tests.conftest import ramp_frames, write_video

    for i in range(2):
        write_video(tmp_path / "v" / f"c{i}.mp4", ramp_frames(24, 48, 64))
    (tmp_path / "list.txt").write_text("c0.mp4 0\nc1.mp4 0\n")
    rec = _last_json("data", "--data", tmp_path / "list.txt", "--root", tmp_path / "v", "--frames", "4", "--size",
                     "32", "--workers", "0", "--clips", "3", "--prepared", "--json")
    assert rec["source"].endswith("re-encoded to MJPEG (vifi prepare --reencode)")
    made = sorted((tmp_path / "v" / "prepared-mjpeg-256").glob("*.avi"))
    assert [p.name for p in made] == ["c0.mp4.avi", "c1.mp4.avi"]
    with av.open(str(made[0])) as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"
    assert rec["frames_per_cpu_s"] > 0 and np.isfinite(rec["frames_per_cpu_s"])
