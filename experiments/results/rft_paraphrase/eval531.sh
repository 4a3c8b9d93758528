# usage: eval531.sh NAME SRC   (whole validation split, 531 queries)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w2/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w2
export PYTHONPATH=$2
OMP_NUM_THREADS=2 rerec evaluate --data data --graphs graphs --reward reward --model $1=$1 --profile smollm2 --split val --max-queries-per-type 200 --retention false --unseen-phrasing-per-type 0 --batch-size 64 --rec-time-budget-s 1800 --model-time-budget-s 2400 --base-time-budget-s 0 --decade-evidence false --out eval531_$1 > eval531_$1.log 2>&1
