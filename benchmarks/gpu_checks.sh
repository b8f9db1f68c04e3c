#!/usr/bin/env bash
# The GPU checks of the adapter (issue 11, item 6) and INT4 run-path (issue 13) targets, as one prepared command
# for a lent H100/H200 (its image has torch, transformers and peft; nothing is installed). Under 8 minutes:
#
#   bash benchmarks/gpu_checks.sh        # writes $OUT/log, $OUT/adapt_step.json, $OUT/adapt_step_gc.json,
#                                        # $OUT/int4_layers.json ($OUT defaults to runs/gpu)
#
# 1. adapt_step_bench at Llama-3-8B layer shapes (4 layers, bf16, 4 × 1024 tokens), without and with gradient
#    checkpointing: every ratio of issue 11's item 6 from one run (floors, the authors' design, memory).
# 2. run_bench --part layers: the INT4 kernel vs bf16 at Llama-3-8B shapes, batch 1 and 16 (goal ≥ 1.9× at 1).
# SHAPES overrides the model shape arguments (a CPU smoke run: SHAPES="--hidden 256 --layers 1 --seq 64").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
SHAPES=${SHAPES:---hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 --layers 4 --batch 4 --seq 1024}
VARIANTS="floor-3 floor-5 floor-3-int4 authors-sparsepeft peft-lora sqft-lora sqft-nls sparsepeft sparsepeft-nodrop"
VARIANTS="$VARIANTS qa-sparsepeft qa-sparsepeft-nodrop qa-fp16-copy"
log() { tee -a "$OUT/log"; }

{ nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null; python3 -c "import torch; print(torch.__version__)"; } | log
# vocab 1024: the targets are per target layer; a 128K-vocab head would only add the same cost to every variant
for gc in "" "--gradient-checkpointing"; do
    name=adapt_step${gc:+_gc}
    # shellcheck disable=SC2086
    timeout 200 python3 benchmarks/adapt_step_bench.py $SHAPES --vocab 1024 --dtype bfloat16 --steps 5 --warmup 2 \
        --device "$DEVICE" --only $VARIANTS $gc --out "$OUT/$name.json" 2>&1 | log
done
timeout 60 python3 benchmarks/run_bench.py --part layers --device "$DEVICE" --json "$OUT/int4_layers.json" 2>&1 | log
