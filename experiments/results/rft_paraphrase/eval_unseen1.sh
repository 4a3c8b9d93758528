# usage: eval_unseen1.sh OUTNAME MODEL  (one model: all 531 validation queries as generated, and 50 a type again in the held-out phrasing; the settings of eval_unseen_val.sh)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w2/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w2
OMP_NUM_THREADS=2 rerec evaluate --data data --graphs graphs --reward reward --model $2=$2 --profile smollm2 --split val --max-queries-per-type 200 --retention false --unseen-phrasing-per-type 50 --unseen-time-budget-s 1200 --batch-size 64 --rec-time-budget-s 1800 --model-time-budget-s 2400 --base-time-budget-s 0 --decade-evidence false --out evalu_$1 > evalu_$1.log 2>&1
