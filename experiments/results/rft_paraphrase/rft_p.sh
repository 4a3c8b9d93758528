# usage: rft_p.sh NAME MODEL SEED STEPS DATA  (4 x 4, no screening, 4 candidates; training prompts from DATA: data_para holds the same queries with half of their texts in the second template family)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w2/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w2
OMP_NUM_THREADS=2 rerec rft --data $5 --graphs graphs --reward reward --model $2 --out $1 --profile smollm2 --seed $3 --steps $4 --taste-evidence true --threads 2 --use-lora false --batch-size 4 --num-generations 4 --lr 1e-5 --save-steps $4 --decade-evidence false > $1.log 2>&1
