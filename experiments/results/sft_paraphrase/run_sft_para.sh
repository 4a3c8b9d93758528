# usage: run_sft_para.sh NAME SEED DATA  (make run's SFT: 200 steps of 2, lr 2e-4, balanced rejections, decision weight 5; no time budget)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w2/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w2
OMP_NUM_THREADS=2 rerec sft-warmup --data $3 --graphs graphs --reward reward --out $1 --profile smollm2 --seed $2 --steps 200 --time-budget-s 0 --n-eval 8 --eval-before false --threads 2 --lr 2e-4 --batch-size 2 --evaluations 1 --balance-rejections true --decade-evidence false --decision-weight 5 > $1.log 2>&1
