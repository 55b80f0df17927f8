#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, as one script (the default parts took 297 s on an H200, 2026-11-30):
#   bash scripts/bench_gpu.sh OUT_DIR
# Each line of OUT_DIR/bench.jsonl is one command's JSON, appended as soon as that command ends (a later timeout
# keeps the earlier lines); OUT_DIR/log.txt has the whole output. On the project's device machine, run
# ../shared/device/fetch-wheels.sh here first and carry .whl: the script installs the wheels when open_clip is missing.
# ARCH, FRAMES, CLASSES, GLOBAL, MICRO, DEVICE override the workload (a CPU dry run: ARCH=tiny FRAMES=4 CLASSES=10
# GLOBAL=8 MICRO=4 DEVICE=cpu LARGE_ARCH=tiny bash scripts/bench_gpu.sh /tmp/dry). PARTS=large measures ViT-L/14.
# PARTS=headline: Kinetics-400 from video files on one GPU (docs/performance.md "Kinetics-400 on one GPU"): makes its
# own Kinetics-like clips, times the data paths at WORKERS (15) workers, the model at T=16 / global 512, and
# `vifi bench e2e k400-supervised` on each data path; every command is capped so that the whole part ends within
# BUDGET (540) seconds. Its CPU dry run (tiny model, a few clips):
#   ARCH=tiny DEVICE=cpu WORKERS=1 HFRAMES=4 HGLOBAL=8 HMICRO=4 CLIPS=4 EVAL_VIDEOS=4 COMPILE= SCALE=4 BUDGET=3000 \
#     SETS="data.input_size=64 train.lr_clock_gpus=2 eval.batch=4" PARTS=headline bash scripts/bench_gpu.sh /tmp/dry
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
# seconds for the whole script (SECONDS counts from its start, wheel install included): 540 when PARTS has headline
if [[ " ${PARTS:-} " == *" headline "* ]]; then BUDGET=${BUDGET:-540}; else BUDGET=${BUDGET:-100000}; fi
run() {  # run SECONDS ARGS...: one benchmark, its last line appended to bench.jsonl, the whole output kept
  local limit=$(($1 * ${SCALE:-1})); shift  # SCALE: longer limits for a CPU dry run
  local left=$((BUDGET - SECONDS - 5))
  if (( left < 15 )); then echo "== skipped (budget): vifi bench $*" | tee -a "$out/log.txt"; return; fi
  (( limit > left )) && limit=$left
  echo "== vifi bench $* (limit ${limit}s, at ${SECONDS}s)" | tee -a "$out/log.txt"
  timeout "$limit" python3 -m vifi bench "$@" 2>&1 | tee -a "$out/log.txt" | tail -n 1 >> "$out/bench.jsonl"
}
rund() { local limit=$1; shift; run "$limit" "$@" --device "$DEVICE"; }  # the model benchmarks take --device
W=(--arch "$ARCH" --frames "$FRAMES" --classes "$CLASSES")
T=("${W[@]}" --global-batch "$GLOBAL" --micro-batch "$MICRO")
PARTS=${PARTS:-compare compiled eval checkpointing}
for part in $PARTS; do
  case $part in
    compare)  # the real training step against the reference-equivalent mode (eager both sides)
      rund 170 train "${T[@]}" --compare-reference --steps 2 --warmup 1 ;;
    compiled)  # the same step compiled (training's default on CUDA)
      rund 200 train "${T[@]}" --compile --steps 2 --warmup 2 ;;
    compiled-compare)  # compiled, with the reference measured in the same process
      rund 240 train "${T[@]}" --compile --compare-reference --steps 2 --warmup 2 ;;
    compiled-32)  # compiled at micro-batch 32
      rund 200 train "${W[@]}" --global-batch "$GLOBAL" --micro-batch 32 --compile --steps 2 --warmup 2 ;;
    eval)  # evaluation, compiled, against the reference at its test batch of 2
      rund 120 eval "${W[@]}" --batch "$MICRO" --compile --compare-reference --steps 6 --warmup 3 ;;
    checkpointing)  # activation checkpointing: a few image blocks, then all of them (eager, compare with compare)
      rund 50 train "${T[@]}" --checkpoint-blocks 4 --steps 2 --warmup 1
      rund 50 train "${T[@]}" --checkpointing --steps 2 --warmup 1 ;;
    checkpointing-8)  # 8 of 12 image blocks, compiled (compare with compiled)
      rund 200 train "${T[@]}" --checkpoint-blocks 8 --compile --steps 2 --warmup 2 ;;
    large)  # a larger backbone (LARGE_ARCH, default ViT-L-14) at the memory plan for this GPU: its estimate as one
            # line, then the measured step at that micro-batch and number of checkpointed blocks (peak vs estimate)
      plan=$(python3 -m vifi bench memory --arch "$LARGE_ARCH" --frames "$FRAMES" --classes "$CLASSES" \
             --batch "$GLOBAL" --json 2>>"$out/log.txt" | tail -n 1)
      echo "$plan" | tee -a "$out/log.txt" >> "$out/bench.jsonl"
      read -r micro blocks < <(echo "$plan" | python3 -c \
        "import json,sys; p=json.load(sys.stdin); print(p['micro_batch'], p['checkpoint_blocks'])")
      rund 300 train --arch "$LARGE_ARCH" --frames "$FRAMES" --classes "$CLASSES" --global-batch "$GLOBAL" \
        --micro-batch "$micro" --checkpoint-blocks "$blocks" --steps 2 --warmup 1 ;;
    headline)  # issue 20: k400-supervised's shape, T=HFRAMES (16), global HGLOBAL (512), from video files
      HFRAMES=${HFRAMES:-16} HGLOBAL=${HGLOBAL:-512} HMICRO=${HMICRO:-16} WORKERS=${WORKERS:-15} CLIPS=${CLIPS:-64}
      COMPILE=${COMPILE---compile}
      clips=${TMPDIR:-/tmp}/vifi-bench-data  # `vifi bench data` makes 10 s 340x256 30 fps H.264 clips here
      D=(--frames "$HFRAMES" --workers "$WORKERS" --clips "$CLIPS")
      run 60 data "${D[@]}"                          # CPU, raw long-GOP H.264 (makes the clips on first use)
      run 45 data "${D[@]}" --prepared               # CPU, intra-only MJPEG (vifi prepare --reencode; made here)
      if [[ $DEVICE == cuda* ]]; then
        run 40 data "${D[@]}" --prepared --gpu-decode nvjpeg
        python3 -c "import PyNvVideoCodec" 2>/dev/null && run 40 data "${D[@]}" --gpu-decode nvdec
      fi
      rund 120 train --arch "$ARCH" --frames "$HFRAMES" --classes 400 --global-batch "$HGLOBAL" --micro-batch "$HMICRO" \
        $COMPILE --steps 2 --warmup 1
      python3 -c "print('id,name'); [print(f'{i},kinetics class {i}') for i in range(400)]" > "$out/labels.csv"
      ls "$clips"/*.mp4 | xargs -n1 basename | sed 's/$/ 0/' > "$out/raw.txt"
      ls "$clips"/prepared-mjpeg-256/*.avi | xargs -n1 basename | sed 's/$/ 0/' > "$out/mjpeg.txt"
      E=(--labels "$out/labels.csv" --videos 240000 --val-videos 19877 --steps 2 --warmup 1 --eval-videos "${EVAL_VIDEOS:-32}"
         --set model.arch="$ARCH" --set data.frames="$HFRAMES" --set train.global_batch="$HGLOBAL"
         --set train.micro_batch="$HMICRO" --set data.num_workers="$WORKERS")
      for kv in ${SETS:-}; do E+=(--set "$kv"); done
      rund 100 e2e k400-supervised --data "$out/raw.txt" --root "$clips" "${E[@]}"
      rund 90 e2e k400-supervised --data "$out/mjpeg.txt" --root "$clips/prepared-mjpeg-256" "${E[@]}"
      if [[ $DEVICE == cuda* ]]; then
        rund 90 e2e k400-supervised --data "$out/mjpeg.txt" --root "$clips/prepared-mjpeg-256" "${E[@]}" \
          --set data.backend=nvjpeg
        python3 -c "import PyNvVideoCodec" 2>/dev/null && rund 90 e2e k400-supervised --data "$out/raw.txt" \
          --root "$clips" "${E[@]}" --set data.backend=nvdec
      fi ;;
    eager)  # eager step alone (its host syncs)
      rund 60 train "${T[@]}" --steps 1 --warmup 1 ;;
  esac
done
echo "done: $out/bench.jsonl"
