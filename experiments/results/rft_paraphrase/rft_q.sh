# usage: rft_q.sh NAME MODEL SEED STEPS  (4 x 4, no screening, 4 candidates; rerec rft --paraphrase 0.5 on the data as prepared: the same training prompts as rft_p.sh on data_para)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w2/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w2
OMP_NUM_THREADS=2 rerec rft --data data --graphs graphs --reward reward --model $2 --out $1 --profile smollm2 --seed $3 --steps $4 --taste-evidence true --threads 2 --use-lora false --batch-size 4 --num-generations 4 --lr 1e-5 --save-steps $4 --decade-evidence false --paraphrase 0.5 > $1.log 2>&1
