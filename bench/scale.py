"""Benchmark: the data stages on synthetic catalogs of real size (issue 28).

Writes a synthetic catalog with MovieLens-like skew (parquet tables: items with title, year and genres;
interactions with ratings and timestamps; item_attributes with directors, actors and writers) of each
size in --interactions, then runs ``rerec prepare-data``, ``rerec build-graphs`` and ``rerec
train-reward-gnn`` on it, each in its own process, and records per stage the wall seconds and the peak
resident memory (the process's ru_maxrss). The growth exponent of each stage is the slope of
log(seconds) (and log(peak memory)) against log(interactions) over the sizes run. Ends by printing one
JSON line; --out also writes the full record with its provenance (command, commit, machine, seed).

The shape follows MovieLens-25M (25,000,095 ratings, 162,541 users, 62,423 items): about 154
interactions per user, at least 20 each, a long tail of heavy users (one with 5,000, as in the issue),
items drawn with a Zipf-like popularity, half the ratings 4 or more. Items grow as interactions^0.6 so
that 25M interactions have 62,000 items.

    .venv/bin/python bench/scale.py --interactions 1000000 5000000 25000000 \\
        --out bench/results/scale/scale_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
GENRES = ["Drama", "Comedy", "Thriller", "Action", "Romance", "Adventure", "Crime", "Sci-Fi", "Horror", "Fantasy",
          "Children", "Animation", "Mystery", "Documentary", "War", "Musical", "Western", "Film-Noir", "IMAX"]
RATING_P = [0.05, 0.10, 0.30, 0.35, 0.20]  # 1..5 stars; 55% are 4 or more, as in MovieLens


def shape(n_interactions: int) -> tuple[int, int]:
    """(users, items) for a catalog of ``n_interactions``, after MovieLens-25M."""
    n_users = max(100, round(n_interactions / 154))
    n_items = max(200, round(62_000 * (n_interactions / 25_000_000) ** 0.6))
    return n_users, n_items


def synthetic_catalog(folder: Path, n_interactions: int, seed: int = 0) -> dict:
    """Write items.parquet, interactions.parquet and item_attributes.parquet into ``folder``."""
    rng = np.random.default_rng(seed)
    n_users, n_items = shape(n_interactions)
    # user activity: 20 + a Pareto tail, scaled to the total; one heavy user of 5,000 (or half the items)
    activity = 20 + rng.pareto(1.3, n_users) * 40
    activity = np.minimum(activity, n_items // 2)
    activity[0] = min(5_000, n_items // 2)
    scale = (n_interactions - activity[0]) / activity[1:].sum()
    counts = np.maximum(20, np.round(activity * np.r_[1.0, np.full(n_users - 1, scale)])).astype(np.int64)
    counts = np.minimum(counts, n_items // 2)
    # items by a Zipf-like popularity: draw with replacement, drop repeats, top up the users left short
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    cdf = np.cumsum(popularity / popularity.sum())
    draw_users = np.repeat(np.arange(n_users), np.ceil(counts * 1.2).astype(np.int64))
    draw_items = np.minimum(np.searchsorted(cdf, rng.random(len(draw_users))), n_items - 1)
    keys = np.unique(draw_users * n_items + draw_items)
    short = np.maximum(counts - np.bincount(keys // n_items, minlength=n_users), 0)
    if short.any():  # heavy users run out of popular items: top up uniformly over the catalog
        draw_users = np.repeat(np.arange(n_users), np.ceil(short * 1.5).astype(np.int64))
        keys = np.unique(np.concatenate([keys, draw_users * n_items + rng.integers(0, n_items, len(draw_users))]))
    # keep at most counts[u] per user, chosen at random
    keys = keys[rng.permutation(len(keys))]
    keys = keys[np.argsort(keys // n_items, kind="stable")]
    users = keys // n_items
    first = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    rank = np.arange(len(keys)) - np.repeat(first, np.diff(np.r_[first, len(keys)]))
    keys = np.sort(keys[rank < counts[users]])
    users, items = keys // n_items, keys % n_items
    order = rng.permutation(n_items)  # popularity rank -> item id, so ids say nothing
    items = order[items]
    n = len(users)
    interactions = pd.DataFrame({
        "user_id": users + 1, "item_id": items + 1,
        "rating": (rng.choice(5, n, p=RATING_P) + 1).astype(np.float64),
        "timestamp": 946_684_800 + rng.integers(0, 20 * 365 * 86_400, n),
    })
    years = rng.integers(1920, 2021, n_items)
    n_genres = rng.integers(1, 4, n_items)
    genre_p = 1.0 / np.arange(1, len(GENRES) + 1)
    genre_p /= genre_p.sum()
    genres = [sorted(set(rng.choice(GENRES, k, p=genre_p).tolist())) for k in n_genres]
    items_table = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "title": [f"Film {i}" for i in range(1, n_items + 1)],
                                "year": years, "genres": genres})
    people = []
    for relation, per_item, pool in (("director", 1, n_items // 3), ("actor", 3, n_items), ("writer", 1, n_items // 2)):
        item = np.repeat(np.arange(1, n_items + 1), per_item)
        person = rng.integers(0, max(pool, 1), len(item))  # a few films per person, as in a film catalog
        people.append(pd.DataFrame({"item_id": item, "relation": relation,
                                    "entity": np.char.add(f"{relation[0]}.", person.astype(str))}))
    attributes = pd.concat(people, ignore_index=True).drop_duplicates(ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    items_table.to_parquet(folder / "items.parquet")
    interactions.to_parquet(folder / "interactions.parquet")
    attributes.to_parquet(folder / "item_attributes.parquet")
    return {"interactions": n, "users": n_users, "items": n_items, "item_attributes": len(attributes),
            "max_user_interactions": int(np.bincount(users).max())}


_STAGE = """
import json, resource, sys, time
sys.argv = ["rerec", *{args!r}]
from rerec.cli import main
start = time.perf_counter()
code = main({args!r})
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
print("STAGE " + json.dumps({{"code": code, "seconds": round(seconds, 1), "peak_gib": round(peak, 2)}}))
"""


def run_stage(args: list[str], timeout: float) -> dict:
    """One CLI stage in its own process (tracking off): exit code, wall seconds and peak memory (GiB)."""
    env = {**os.environ, "REREC_TRACKING": "off", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", _STAGE.format(args=args)], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"code": "timeout", "seconds": round(time.perf_counter() - started, 1)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("STAGE ")]
    if not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"code": done.returncode, "seconds": round(time.perf_counter() - started, 1), "error": tail}
    return json.loads(lines[-1][6:])


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x); None with fewer than two points."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(points) < 2:
        return None
    lx, ly = np.array(points).T
    return round(float(np.polyfit(lx, ly, 1)[0]), 2)


def gnn_figures(saved: dict) -> dict:
    """What train-reward-gnn's metrics.json says of the run: how far training got within the budget and its
    held-out Recall/NDCG beside popularity's (a synthetic catalog has no taste beyond popularity, so LightGCN
    can only match it there: the figures show the stage reports them, not what it learns)."""
    k = saved.get("k", 20)
    last = (saved.get("history") or [{}])[-1]
    return {"stopped": saved.get("stopped"), "epochs_run": saved.get("epochs_run"),
            "fraction_of_last_epoch": last.get("fraction_of_epoch", 1.0), "train_seconds": saved.get("train_seconds"),
            "eval_users": saved.get("eval_users"),
            f"lightgcn_recall_at_{k}": saved.get("lightgcn", {}).get(f"recall_at_{k}"),
            f"popularity_recall_at_{k}": saved.get("popularity", {}).get(f"recall_at_{k}")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, nargs="+", default=[1_000_000, 5_000_000, 25_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gnn-seconds", type=float, default=120.0,
                        help="train-reward-gnn --max-seconds (its time budget)")
    parser.add_argument("--stage-timeout", type=float, default=3600.0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the catalogs here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="also write the full record here")
    args = parser.parse_args()
    from rerec.experiments.provenance import provenance

    run = provenance()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rerec-scale-"))
    sizes = []
    for n in args.interactions:
        folder = root / f"catalog-{n}"
        started = time.perf_counter()
        catalog = synthetic_catalog(folder / "input", n, args.seed)
        catalog["write_seconds"] = round(time.perf_counter() - started, 1)
        stages = {}
        stages["prepare-data"] = run_stage(["prepare-data", "--input", str(folder / "input"), "--out",
                                            str(folder / "prepared"), "--seed", str(args.seed),
                                            "--kg-check", "warn"], args.stage_timeout)
        if stages["prepare-data"].get("code") == 0:
            stages["build-graphs"] = run_stage(["build-graphs", "--data", str(folder / "prepared"), "--out",
                                                str(folder / "graphs")], args.stage_timeout)
        if stages.get("build-graphs", {}).get("code") == 0:
            stages["train-reward-gnn"] = run_stage(
                ["train-reward-gnn", "--graphs", str(folder / "graphs"), "--out", str(folder / "reward"),
                 "--max-seconds", str(args.gnn_seconds), "--seed", str(args.seed)], args.stage_timeout)
            metrics = folder / "reward" / "metrics.json"
            if metrics.exists():
                saved = json.loads(metrics.read_text())
                stages["train-reward-gnn"].update(gnn_figures(saved))
        sizes.append({"catalog": catalog, "stages": stages})
        print(json.dumps({"size": n, **{k: v for k, v in stages.items()}}), file=sys.stderr, flush=True)
    ns = [s["catalog"]["interactions"] for s in sizes]
    exponents = {}
    for stage in ("prepare-data", "build-graphs", "train-reward-gnn"):
        secs = [s["stages"].get(stage, {}).get("seconds") if s["stages"].get(stage, {}).get("code") == 0 else None
                for s in sizes]
        mems = [s["stages"].get(stage, {}).get("peak_gib") for s in sizes]
        exponents[stage] = {"seconds": slope(ns, secs), "peak_memory": slope(ns, mems)}
    summary = {"bench": "scale", "seed": args.seed, "sizes": [
        {"interactions": s["catalog"]["interactions"], "items": s["catalog"]["items"], "users": s["catalog"]["users"],
         **{f"{k}_s": v.get("seconds") for k, v in s["stages"].items()},
         **{f"{k}_gib": v.get("peak_gib") for k, v in s["stages"].items()},
         **{f"{k}_code": v.get("code") for k, v in s["stages"].items() if v.get("code") != 0}}
        for s in sizes], "growth_exponent": exponents}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {**run, "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]), "seed": args.seed,
                  "summary": summary, "sizes": sizes}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
