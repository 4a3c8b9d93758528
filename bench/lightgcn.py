"""Benchmark: the reward GNN on MovieLens-100k, LightGCN against popularity, side by side in one run.

Loads the embedded ML-100k (or --data, a prepared data folder whose val/test query positives are then
left out), builds the graphs, trains LightGCN with the stage's defaults (or --epochs) and ends by
printing one JSON line: held-out test Recall@20 / NDCG@20 of LightGCN and of popularity, their ratio,
training seconds, seconds per epoch, peak RSS.

    .venv/bin/python bench/lightgcn.py [--data DIR] [--epochs 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from rerec.graphs.build import build_graphs
from rerec.reward.lightgcn import LightGCNConfig, train_reward_gnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="prepared data folder (default: embedded ML-100k)")
    parser.add_argument("--epochs", type=int, default=LightGCNConfig.epochs)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("REREC_TRACKING", "off")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            from rerec.data.load import load_catalog, save_catalog

            data = tmp / "data"
            save_catalog(load_catalog(None), data)
        build_graphs(data, tmp / "graphs")
        started = time.perf_counter()
        metrics = train_reward_gnn(tmp / "graphs", tmp / "reward", LightGCNConfig(epochs=args.epochs))
        wall = time.perf_counter() - started
    k = metrics["k"]
    light, pop = metrics["lightgcn"], metrics["popularity"]
    figures = {
        "dataset": "ml-100k" if args.data is None else str(args.data),
        f"lightgcn_recall_at_{k}": round(light[f"recall_at_{k}"], 4),
        f"lightgcn_ndcg_at_{k}": round(light[f"ndcg_at_{k}"], 4),
        f"popularity_recall_at_{k}": round(pop[f"recall_at_{k}"], 4),
        f"popularity_ndcg_at_{k}": round(pop[f"ndcg_at_{k}"], 4),
        "recall_ratio_lightgcn_over_popularity": round(light[f"recall_at_{k}"] / pop[f"recall_at_{k}"], 3),
        "eval_users": metrics["eval_users"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "train_s": metrics["train_seconds"],
        "s_per_epoch": round(metrics["train_seconds"] / max(metrics["epochs_run"], 1), 3),
        "stage_wall_s": round(wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
