#!/usr/bin/env bash
# Both GPU benchmarks in one go, about 3-5 minutes on one H100; JSON results and a log land in $OUT.
#
#     OUT=bench_out/gpu bash benchmarks/gpu_check.sh
#
# Needs a CUDA torch and transformers >= 5.24 (native qwen3_asr). Where the GPU image has an older transformers,
# carry the wheel in .whl/ (fetched beside the repo with
#   pip download --no-deps --only-binary=:all: -d .whl transformers==5.24.0
# ) and this script installs it into /tmp/site first. polyglot_lion is taken from platform/, no install needed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="platform${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import transformers.models.qwen3_asr" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/transformers-*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    "$PY" benchmarks/gpu_train.py --size 0.6b --out "$OUT/train_0.6b.json"
    "$PY" benchmarks/gpu_train.py --size 0.6b --activation-checkpointing --out "$OUT/train_0.6b_ac.json"
    "$PY" benchmarks/gpu_train.py --size 1.7b --out "$OUT/train_1.7b.json"
    "$PY" benchmarks/gpu_inference.py --batch-sizes 1,8,16,32,64 --out "$OUT/inference_0.6b.json"
} 2>&1 | tee "$OUT/gpu_check.log"
