#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, as one script (the default parts took 297 s on an H200, 2026-11-30):
#   bash scripts/bench_gpu.sh OUT_DIR
# Each line of OUT_DIR/bench.jsonl is one command's JSON, appended as soon as that command ends (a later timeout
# keeps the earlier lines); OUT_DIR/log.txt has the whole output. On the project's device machine, run
# ../shared/device/fetch-wheels.sh here first and carry .whl: the script installs the wheels when open_clip is missing.
# ARCH, FRAMES, CLASSES, GLOBAL, MICRO, DEVICE override the workload (a CPU dry run: ARCH=tiny FRAMES=4 CLASSES=10
# GLOBAL=8 MICRO=4 DEVICE=cpu LARGE_ARCH=tiny bash scripts/bench_gpu.sh /tmp/dry). PARTS=large measures ViT-L/14.
set -uo pipefail
out=${1:-bench-out}
mkdir -p "$out"
if ! python3 -c "import open_clip, pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl \
    && export PYTHONPATH=$PWD/.site:$PWD || exit 1
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
ARCH=${ARCH:-ViT-B-16} FRAMES=${FRAMES:-32} CLASSES=${CLASSES:-400} GLOBAL=${GLOBAL:-256} MICRO=${MICRO:-16}
DEVICE=${DEVICE:-cuda} LARGE_ARCH=${LARGE_ARCH:-ViT-L-14}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__)"; date -u +%F; } | tee "$out/gpu.txt"
run() {  # run SECONDS ARGS...: one benchmark, its last line appended to bench.jsonl, the whole output kept
  local limit=$1; shift
  echo "== vifi bench $*" | tee -a "$out/log.txt"
  timeout "$limit" python3 -m vifi bench "$@" --device "$DEVICE" 2>&1 | tee -a "$out/log.txt" | tail -n 1 >> "$out/bench.jsonl"
}
W=(--arch "$ARCH" --frames "$FRAMES" --classes "$CLASSES")
T=("${W[@]}" --global-batch "$GLOBAL" --micro-batch "$MICRO")
PARTS=${PARTS:-compare compiled eval checkpointing}
for part in $PARTS; do
  case $part in
    compare)  # the real training step against the reference-equivalent mode (eager both sides)
      run 170 train "${T[@]}" --compare-reference --steps 2 --warmup 1 ;;
    compiled)  # the same step compiled (training's default on CUDA)
      run 200 train "${T[@]}" --compile --steps 2 --warmup 2 ;;
    compiled-compare)  # compiled, with the reference measured in the same process
      run 240 train "${T[@]}" --compile --compare-reference --steps 2 --warmup 2 ;;
    compiled-32)  # compiled at micro-batch 32
      run 200 train "${W[@]}" --global-batch "$GLOBAL" --micro-batch 32 --compile --steps 2 --warmup 2 ;;
    eval)  # evaluation, compiled, against the reference at its test batch of 2
      run 120 eval "${W[@]}" --batch "$MICRO" --compile --compare-reference --steps 6 --warmup 3 ;;
    checkpointing)  # activation checkpointing: a few image blocks, then all of them (eager, compare with compare)
      run 50 train "${T[@]}" --checkpoint-blocks 4 --steps 2 --warmup 1
      run 50 train "${T[@]}" --checkpointing --steps 2 --warmup 1 ;;
    checkpointing-8)  # 8 of 12 image blocks, compiled (compare with compiled)
      run 200 train "${T[@]}" --checkpoint-blocks 8 --compile --steps 2 --warmup 2 ;;
    large)  # a larger backbone (LARGE_ARCH, default ViT-L-14) at the memory plan for this GPU: its estimate as one
            # line, then the measured step at that micro-batch and number of checkpointed blocks (peak vs estimate)
      plan=$(python3 -m vifi bench memory --arch "$LARGE_ARCH" --frames "$FRAMES" --classes "$CLASSES" \
             --batch "$GLOBAL" --json 2>>"$out/log.txt" | tail -n 1)
      echo "$plan" | tee -a "$out/log.txt" >> "$out/bench.jsonl"
      read -r micro blocks < <(echo "$plan" | python3 -c \
        "import json,sys; p=json.load(sys.stdin); print(p['micro_batch'], p['checkpoint_blocks'])")
      run 300 train --arch "$LARGE_ARCH" --frames "$FRAMES" --classes "$CLASSES" --global-batch "$GLOBAL" \
        --micro-batch "$micro" --checkpoint-blocks "$blocks" --steps 2 --warmup 1 ;;
    eager)  # eager step alone (its host syncs)
      run 60 train "${T[@]}" --steps 1 --warmup 1 ;;
  esac
done
echo "done: $out/bench.jsonl"
