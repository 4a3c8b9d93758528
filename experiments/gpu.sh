#!/usr/bin/env bash
# The GPU recipe, sized for a short accelerator lease: SmolLM2 SFT warm-up (scan traces, full
# fine-tuning), then experiments/ablation.py (plain GRPO against ReRec from that checkpoint, equal steps,
# the first arm bounded in time), then bench/rft_overhead.py with whatever time is left.
#
#   experiments/gpu.sh DATA GRAPHS REWARD OUT      # folders of prepare-data, build-graphs, train-reward-gnn
#
# Knobs (environment): SFT_STEPS SFT_BATCH SFT_BUDGET_S ARM_BUDGET_S RFT_BATCH N_EVAL MAX_TOKENS
# DEADLINE_S (the whole script's wall-clock bound; the overhead bench only runs inside it).
# Tracking is off (REREC_TRACKING=off): the figures are in OUT/*.json and OUT/*.log.
set -uo pipefail
DATA=$1 GRAPHS=$2 REWARD=$3 OUT=$4
PY=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$HERE/src${PYTHONPATH:+:$PYTHONPATH}" REREC_TRACKING=off PYTHONUNBUFFERED=1
mkdir -p "$OUT"
start=$SECONDS
deadline=${DEADLINE_S:-540}

echo "== sft $(date +%T)"
$PY -m rerec sft-warmup --data "$DATA" --graphs "$GRAPHS" --out "$OUT/sft" --profile smollm2 \
    --steps "${SFT_STEPS:-600}" --batch-size "${SFT_BATCH:-16}" --time-budget-s "${SFT_BUDGET_S:-90}" \
    --n-eval "${N_EVAL:-160}" --eval-before false --max-new-tokens "${MAX_TOKENS:-224}" --eval-batch-size 64 \
    2>&1 | tee "$OUT/sft.log" | grep -v "it/s\]$\|s/it\]$"
[ -f "$OUT/sft/metrics.json" ] && cp "$OUT/sft/metrics.json" "$OUT/sft_metrics.json"

echo "== ablation $(date +%T) (elapsed $((SECONDS - start)) s)"
$PY "$HERE/experiments/ablation.py" --data "$DATA" --graphs "$GRAPHS" --reward "$REWARD" --sft "$OUT/sft" \
    --out "$OUT/ablation" --steps 1000 --arm-budget-s "${ARM_BUDGET_S:-120}" --batch-size "${RFT_BATCH:-8}" \
    --max-new-tokens "${MAX_TOKENS:-224}" --n-eval "${N_EVAL:-160}" \
    2>&1 | tee "$OUT/ablation.log" | grep -v "it/s\]$\|s/it\]$"
[ -f "$OUT/ablation/ablation.json" ] && cp "$OUT/ablation/ablation.json" "$OUT/ablation.json"

left=$((deadline - (SECONDS - start)))
echo "== overhead $(date +%T) ($left s left)"
if [ "$left" -gt 60 ]; then
    timeout "$((left - 10))" $PY "$HERE/bench/rft_overhead.py" --model smollm2 --steps 3 --prompts 8 \
        --max-new-tokens "${MAX_TOKENS:-224}" 2>&1 | tee "$OUT/overhead.log" | grep -v "it/s\]$\|s/it\]$"
fi
echo "== done $(date +%T) (elapsed $((SECONDS - start)) s)"
