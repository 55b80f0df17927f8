#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, as one script. On a CUDA machine with the package installed:
#   bash scripts/bench_gpu.sh OUT_DIR
# (On the project's device machine: run ../shared/device/fetch-wheels.sh here first, carry .whl, and the script
# installs the wheels itself when `import open_clip` fails.) Each line of OUT_DIR/bench.jsonl is one command's JSON.
set -uo pipefail
out=${1:-bench-out}
mkdir -p "$out"
if ! python3 -c "import open_clip, pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl \
    && export PYTHONPATH=$PWD/.site:$PWD || exit 1
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
run() {  # run ARGS...: one benchmark, its last line appended to bench.jsonl, the whole output kept
  echo "== vifi bench $*" | tee -a "$out/log.txt"
  timeout 240 python3 -m vifi bench "$@" 2>&1 | tee -a "$out/log.txt" | tail -n 1 >> "$out/bench.jsonl"
}
run train --arch ViT-B-16 --frames 32 --micro-batch 16 --classes 400 --global-batch 256 --compare-reference --steps 2
run train --arch ViT-B-16 --frames 32 --micro-batch 16 --classes 400 --global-batch 256 --compile --steps 2 --warmup 2
run train --arch ViT-B-16 --frames 32 --micro-batch 16 --classes 400 --global-batch 256 --checkpointing --steps 2
run eval --arch ViT-B-16 --frames 32 --batch 16 --classes 400 --compare-reference
run eval --arch ViT-B-16 --frames 32 --batch 16 --classes 400 --compile
echo "done: $out/bench.jsonl"
