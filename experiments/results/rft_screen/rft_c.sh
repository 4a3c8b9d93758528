# usage: rft_c.sh NAME MODEL SEED STEPS NCAND  (4 x 4, no screening: a seeded sample of the train split shown with NCAND candidates)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w2/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w2
OMP_NUM_THREADS=2 rerec rft --data data --graphs graphs --reward reward --model $2 --out $1 --profile smollm2 --seed $3 --steps $4 --taste-evidence true --threads 2 --use-lora false --batch-size 4 --num-generations 4 --lr 1e-5 --save-steps $4 --decade-evidence false --n-candidates $5 > $1.log 2>&1
