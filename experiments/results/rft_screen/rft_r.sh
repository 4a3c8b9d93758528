# usage: rft_r.sh NAME MODEL SEED STEPS SCREEN_FROM  (4 x 4, screen 800 + answered 1.0 reused from SCREEN_FROM/screen.json; reward = hit + format only: QAS and PAS weigh 0)
set -e
export MLFLOW_TRACKING_URI=sqlite:////tmp/w2/mlflow.db
source /work/main/.venv/bin/activate
cd /tmp/w2
mkdir -p $1.rft-work && cp $5/screen.json $1.rft-work/screen.json
OMP_NUM_THREADS=2 rerec rft --data data --graphs graphs --reward reward --model $2 --out $1 --profile smollm2 --seed $3 --steps $4 --taste-evidence true --threads 2 --use-lora false --batch-size 4 --num-generations 4 --lr 1e-5 --save-steps $4 --decade-evidence false --curriculum-screen 800 --curriculum-screen-answered 1.0 --reward-w-query 0 --reward-w-pref 0 --resume > $1.log 2>&1
