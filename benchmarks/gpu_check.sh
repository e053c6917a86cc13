#!/usr/bin/env bash
# The GPU benchmarks in one go, in groups, most wanted first (each benchmark writes its JSON as it ends, so a
# run cut short keeps what finished):
#
#     OUT=bench_out/gpu bash benchmarks/gpu_check.sh [all|graphs|mfu|big|rest]      # default: all
#
#   graphs  CUDA graphs for the 0.6B step at 8 x 4, which is CPU-launch-bound (GPU busy 28% of the step on
#         2026-11-27): compiled layers replayed as CUDA graphs (--compile reduce-overhead) against the same step
#         with plain compiled layers, same data and seed, so their per-step losses and gradient norms must agree
#         (printed side by side at the end: cudagraph trees are known to corrupt accumulated gradients unless the
#         buffers are kept, which gpu_train does); then with new lengths every step padded to a grid of shapes
#         (a recording per shape), and at 32 x 1. Not yet run.
#   mfu   the 0.6B training step at the paper's 8 x 4 and the routes to the 35% MFU target: bf16 weights with
#         fp32 master copies, compiled layers, both, one 32-clip micro-batch (with and without bf16 weights); and
#         the step before model/efficiency.py and model/host_layout.py (A/B), then host_layout alone (A/B).
#         328 s on an H200 on 2026-11-27.
#   big   bf16 weights + compile with micro-batches bucketed from a pool of clips as the loop buckets them (new
#         lengths every step, as in training): 32 x 1 with --profile, 64 x 1, 8 x 4. 262 s on 2026-11-27 (with
#         the compile defect since fixed: recompiles and dynamo's variant limit; rerun it).
#   rest  activation checkpointing (0.6B, 1.7B), DeepSpeed ZeRO-2/3, inference, the 1.7B without checkpointing
#         (380 s on an H200 on 2026-11-26 together with the 0.6B baseline).
# Each benchmark is stopped after BENCH_TIMEOUT seconds (default 240) and counted as failed.
#
# Needs a CUDA torch, transformers >= 5.24 (native qwen3_asr) and, for gpu_deepspeed.py, DeepSpeed (no compiled
# ops needed: our torch AdamW is what DeepSpeed wraps). Where the GPU image lacks them or has older versions,
# carry wheels in .whl/ (git ignores it) and this script installs every .whl/*.whl into /tmp/site first (no
# index, no deps). What an image with torch but no transformers 5.24 / DeepSpeed needs, fetched beside the repo:
#   pip download --no-deps -d .whl transformers==5.24.0 hjson==3.1.0 pydantic==2.14.4 annotated-types==0.8.0 \
#       typing-inspection==0.4.5 typing-extensions==4.16.0
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl pydantic-core==2.50.5 regex==2026.11.19
#   DS_BUILD_OPS=0 pip wheel --no-deps --no-build-isolation -w .whl deepspeed==0.19.8   # no binary wheel on PyPI
# polyglot_lion is taken from platform/, no install needed. Each benchmark runs even if one before it failed;
# the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
GROUP=${1:-all}
case $GROUP in all|graphs|mfu|big|rest) ;; *) echo "gpu_check.sh: unknown group '$GROUP' (allowed: all, graphs, mfu, big, rest)" >&2; exit 2;; esac
OUT=${OUT:-bench_out/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="platform${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
failed=()
bench() {  # bench NAME CMD...: run one benchmark, time it, keep going if it fails
    local name=$1 t0=$SECONDS
    shift
    echo "=== $name: $*"
    timeout "${BENCH_TIMEOUT:-240}" "$@" || failed+=("$name")
    echo "=== $name: $((SECONDS - t0)) s"
}
{
    nvidia-smi
    "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, transformers.__file__)"
    "$PY" -c "import deepspeed, pydantic; print('deepspeed', deepspeed.__version__, 'pydantic', pydantic.__version__)"
    if [ "$GROUP" = graphs ] || [ "$GROUP" = all ]; then
        bench train_0.6b_bf16w_compile_ref "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 --compile \
            --out "$OUT/train_0.6b_bf16w_compile_ref.json"
        bench train_0.6b_bf16w_graphs "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 \
            --compile reduce-overhead --profile --out "$OUT/train_0.6b_bf16w_graphs.json"
        "$PY" benchmarks/compare_steps.py "$OUT/train_0.6b_bf16w_compile_ref.json" "$OUT/train_0.6b_bf16w_graphs.json" \
            || failed+=(graphs_numerics)
        # as training runs: new lengths every step, padded to a grid of shapes (data.token_multiple /
        # data.frame_multiple), so the warm-up records most shapes and the rest are recorded as they come
        bench train_0.6b_bf16w_graphs_pool_grid "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 \
            --compile reduce-overhead --pool-steps 16 --warmup-steps 8 --token-multiple 32 --frame-multiple 128 \
            --out "$OUT/train_0.6b_bf16w_graphs_pool_grid.json"
        bench train_0.6b_bf16w_graphs_b32 "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 \
            --compile reduce-overhead --batch-size 32 --grad-accum 1 --out "$OUT/train_0.6b_bf16w_graphs_b32.json"
    fi
    if [ "$GROUP" = mfu ] || [ "$GROUP" = all ]; then
        bench train_0.6b "$PY" benchmarks/gpu_train.py --size 0.6b --out "$OUT/train_0.6b.json"
        # routes to the 35% MFU target (BENCHMARKS.md, "Where the time goes"). bf16 weights with fp32 master copies:
        # no autocast cast of every weight in every micro-batch (18% of the kernel time of the 2026-11-26
        # profile); compiled layers: fused elementwise kernels; one 32-clip micro-batch: fewer, larger launches
        # with --profile (after its timed steps): the kernel mix and the host syncs per step of the likely best
        # variant (expected: ~4 syncs a step with the host-computed layout, against 345 on 2026-11-26)
        bench train_0.6b_bf16w_compile "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 --compile --profile \
            --out "$OUT/train_0.6b_bf16w_compile.json"
        bench train_0.6b_compile "$PY" benchmarks/gpu_train.py --size 0.6b --compile --out "$OUT/train_0.6b_compile.json"
        bench train_0.6b_bf16w "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 --out "$OUT/train_0.6b_bf16w.json"
        bench train_0.6b_compile_b32 "$PY" benchmarks/gpu_train.py --size 0.6b --compile --batch-size 32 --grad-accum 1 \
            --out "$OUT/train_0.6b_compile_b32.json"
        bench train_0.6b_bf16w_compile_b32 "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 --compile \
            --batch-size 32 --grad-accum 1 --out "$OUT/train_0.6b_bf16w_compile_b32.json"
        # the step before model/efficiency.py (the model's own loss over all positions, default conv layout): A/B
        bench train_0.6b_stock_step "$PY" benchmarks/gpu_train.py --size 0.6b --loss full --conv-layout default \
            --layout device --out "$OUT/train_0.6b_stock_step.json"
        # only the host-computed layout off (transformers' forward reads sizes back from the GPU): A/B of the syncs
        bench train_0.6b_device_layout "$PY" benchmarks/gpu_train.py --size 0.6b --layout device \
            --out "$OUT/train_0.6b_device_layout.json"
    fi
    if [ "$GROUP" = big ] || [ "$GROUP" = all ]; then
        # big micro-batches bucketed as the loop buckets (a 512-clip window: ~3% padding instead of ~30% when
        # 32 clips of 5-15 s share one batch); 32 x 1 has the paper's 32 clips per optimizer step
        bench train_0.6b_best_b32_pool "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 --compile \
            --batch-size 32 --grad-accum 1 --pool-steps 16 --warmup-steps 6 --profile \
            --out "$OUT/train_0.6b_best_b32_pool.json"
        bench train_0.6b_best_b64_pool "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 --compile \
            --batch-size 64 --grad-accum 1 --pool-steps 8 --warmup-steps 5 --out "$OUT/train_0.6b_best_b64_pool.json"
        bench train_0.6b_best_8x4_pool "$PY" benchmarks/gpu_train.py --size 0.6b --weights bf16 --compile \
            --pool-steps 16 --warmup-steps 5 --out "$OUT/train_0.6b_best_8x4_pool.json"
    fi
    if [ "$GROUP" = rest ] || [ "$GROUP" = all ]; then
        bench train_0.6b_ac "$PY" benchmarks/gpu_train.py --size 0.6b --activation-checkpointing \
            --out "$OUT/train_0.6b_ac.json"
        # the 1.7B job config (jobs/configs/qwen3_asr/1.7b_full_1gpu.yaml) uses activation checkpointing to fit 48 GB
        bench train_1.7b_ac "$PY" benchmarks/gpu_train.py --size 1.7b --activation-checkpointing \
            --out "$OUT/train_1.7b_ac.json"
        bench deepspeed "$PY" benchmarks/gpu_deepspeed.py --size 0.6b --stages 2,3 --stage-timeout 180 \
            --out "$OUT/deepspeed_0.6b.json"
        bench inference "$PY" benchmarks/gpu_inference.py --out "$OUT/inference_0.6b.json"  # the engine: batch 1-128
        bench train_1.7b "$PY" benchmarks/gpu_train.py --size 1.7b --out "$OUT/train_1.7b.json"
    fi
    echo "failed: ${failed[*]:-none}"
    [ ${#failed[@]} -eq 0 ]
} 2>&1 | tee "$OUT/gpu_check.log"
