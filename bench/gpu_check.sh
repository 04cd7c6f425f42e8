#!/usr/bin/env bash
# The GPU checks and measurements of docs/history: "GPU", in one go, on a machine with a CUDA GPU
# and the engine's packages importable by python3:
#   1. the CUDA tests (tests/test_gpu.py) with the device, batch-picking and prediction tests;
#   2. training and picking the shared sets with --device cuda (bench/accuracy.py, seed 0);
#   3. picking throughput on 4k micrographs (bench/gpu.py) with the 10028 model of step 2.
# Each step has its own time limit, so a slow one does not starve the rest; every result lands
# in OUT_DIR (one file per step).
#
#     bash bench/gpu_check.sh DATA_DIR OUT_DIR [MICROGRAPHS]
set -u
data=$1
out=$2
count=${3:-100}
mkdir -p "$out"
work=$(mktemp -d /tmp/cryounet-gpu-XXXXXX)
export PYTHONUNBUFFERED=1
step() { echo "== $(date +%T) $*"; }

step environment
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'gpu', torch.cuda.get_device_name(0))"
  nproc
} 2>&1 | tee "$out/environment.txt"

step tests
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device.py \
  tests/test_inference_batch.py tests/test_inference_predict.py > "$out/tests.log" 2>&1
echo "tests rc=$?"; tail -3 "$out/tests.log"

step train and pick cryoppp-10028 on the GPU
timeout 170 python3 bench/accuracy.py --data "$data" --sets cryoppp-10028 --device cuda --label gpu-s0 \
  --output "$work/accuracy" 2>&1 | tee "$out/accuracy.txt"

model="$work/accuracy/gpu-s0/cryoppp-10028/model"
[ -f "$model/config.json" ] || model=cryounet/weights/general
step "picking throughput ($model)"
timeout 230 python3 bench/gpu.py --model "$model" --micrographs "$count" --json "$out/gpu.json" 2>&1 \
  | tee "$out/gpu.txt"

step train and pick cryoppp-10947 on the GPU
timeout 150 python3 bench/accuracy.py --data "$data" --sets cryoppp-10947 --device cuda --label gpu-s0 \
  --output "$work/accuracy" 2>&1 | tee -a "$out/accuracy.txt"
cat "$work"/accuracy/gpu-s0/*/log.txt > "$out/accuracy-log.txt" 2>/dev/null
cp "$work/accuracy/gpu-s0/results.json" "$out/accuracy.json" 2>/dev/null
step done
