# usage: evalunseen.sh SEED  (make run seed S's RFT model: 50 test queries a type, each also reworded in the held-out phrasing)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w3/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w3
R=$(ls -d /work/main/runs/mr_lk_s$1/kfp/rerec-train-*)
OMP_NUM_THREADS=2 rerec evaluate --data $R/prepare-data/data --graphs $R/build-graphs/graphs --reward $R/train-reward-gnn/reward --model rft=$R/rft/model --profile smollm2 --split test --max-queries-per-type 50 --retention false --unseen-phrasing-per-type 50 --unseen-time-budget-s 1200 --batch-size 64 --rec-time-budget-s 1800 --model-time-budget-s 2400 --base-time-budget-s 0 --decade-evidence false --out evalunseen_s$1 > evalunseen_s$1.log 2>&1
