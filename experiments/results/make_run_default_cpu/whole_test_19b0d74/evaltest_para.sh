# usage: evaltest_para.sh SEED  (make run seed S's SFT and RFT models at 19b0d74, the preset with reworded RFT prompts, on the whole test split, 526 queries)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w3/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w3
R=$(ls -d /work/main/runs/mr_para_s$1/kfp/rerec-train-*)
OMP_NUM_THREADS=2 rerec evaluate --data $R/prepare-data/data --graphs $R/build-graphs/graphs --reward $R/train-reward-gnn/reward --model sft=$R/sft-warmup/model --model rft=$R/rft/model --profile smollm2 --split test --max-queries-per-type 200 --retention false --unseen-phrasing-per-type 0 --batch-size 64 --rec-time-budget-s 1800 --model-time-budget-s 2400 --base-time-budget-s 0 --decade-evidence false --out evaltest526p_s$1 > evaltest526p_s$1.log 2>&1
