"""How far the evidence a prompt shows can take a recommender: rules that read it, per query type.

On the queries an evaluation sees (a split, its stratified subset, shrunk to the shown candidates exactly
as ``rerec evaluate`` shrinks them), ranks the candidates by:

- ``lightgcn``: the LightGCN baseline of the report (``e_u · e_i``);
- ``taste``: the taste rank a prompt shows (:class:`rerec.taste.TasteIndex`; co-likes with the items the
  request names as liked, then LightGCN);
- ``conditions_then_lightgcn``: the most *stored* conditions met, ties by LightGCN (the ceiling the issue
  names: it reads what no baseline may read, the query's stored conditions);
- ``conditions_then_taste``: the most stored conditions met, ties by the taste rank;
- ``taste_zsum``: the two taste signals added instead of ranked one after the other: the z-score (among the
  shown candidates) of the co-likes with the named items plus half the z-score of LightGCN's score;
- ``itemcf_history``: item-based collaborative filtering over the user's whole training history (the sum
  of Jaccard similarities of each candidate with the items the user liked);
- ``taste_every_rating``: the taste rank as it was before co-likes counted only likes (every rating, a 1
  included, counted as a like: ``TasteIndex.build(..., min_rating=None)``).

The last two ask whether a different taste signal would rank interest queries better than the prompt's.

Writes per-query records and Acc@1 per type with the command, commit, machine and seed.

    .venv/bin/python experiments/taste_rules.py --data DATA --graphs GRAPHS --reward REWARD \\
        --split test --per-type 50 --out experiments/results/taste_rules/test.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--graphs", type=Path, required=True)
    parser.add_argument("--reward", type=Path, required=True)
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--per-type", type=int, default=0, help="stratified subset per type (0 = all)")
    parser.add_argument("--n-candidates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    from rerec.data.load import load_catalog
    from rerec.data.schema import CO_INTERACTION, decode_conditions
    from rerec.eval.baselines import LightGCNRanker, PopularityRanker
    from rerec.eval.evaluate import query_records, stratified_subset
    from rerec.experiments.provenance import provenance
    from rerec.graphs.interaction import InteractionGraph
    from rerec.prompt import CatalogView, shrink_candidates
    from rerec.taste import TasteIndex, attach_taste, liked_references

    catalog = load_catalog(args.data)
    view = attach_taste(CatalogView.from_catalog(catalog), args.graphs, args.reward)
    graph = InteractionGraph.load(args.graphs)
    every_rating = TasteIndex.build(graph, args.reward, min_rating=None)
    lightgcn = LightGCNRanker.from_reward_dir(args.reward, PopularityRanker.from_graph(graph))
    split = catalog.queries[catalog.queries["split"] == args.split].reset_index(drop=True)
    queries = query_records(stratified_subset(split, args.per_type, args.seed))
    queries = [shrink_candidates(q, args.n_candidates, view, seed=args.seed) for q in queries]
    user_rows = graph.user_index()

    def history(user: str) -> list[str]:
        row = user_rows.get(str(user))
        return [] if row is None else [graph.item_ids[j] for j in graph.items_of_user(row).tolist()]

    records = []
    for q in queries:
        candidates = [str(c) for c in q["candidates"]]
        positive = str(q["positives"][0])
        stored = [c for c in decode_conditions(q["conditions"]) if c["relation"] != CO_INTERACTION]
        met = {c: sum(view.satisfies(c, k["relation"], str(k["entity"])) for k in stored) for c in candidates}
        lg = {c: n for n, c in enumerate(lightgcn.rank(q))}
        taste = view.taste.query_ranks(q)
        taste_all = every_rating.query_ranks(q)
        named = liked_references(q)
        co = np.array([view.taste.jaccard(c, named) for c in candidates])
        pref = view.taste.preference(candidates, q.get("user_id"))
        pref = np.zeros(len(candidates)) if pref is None else pref
        cf = np.array([view.taste.jaccard(c, history(q.get("user_id"))) for c in candidates])
        picks = {"lightgcn": min(candidates, key=lambda c: lg[c]),
                 "taste": min(candidates, key=lambda c: taste[c]),
                 "conditions_then_lightgcn": min(candidates, key=lambda c: (-met[c], lg[c])),
                 "conditions_then_taste": min(candidates, key=lambda c: (-met[c], taste[c])),
                 "taste_zsum": candidates[int(np.argmax(zscore(co) + 0.5 * zscore(pref)))],
                 "itemcf_history": candidates[int(np.argmax(cf))],
                 "taste_every_rating": min(candidates, key=lambda c: taste_all[c])}
        records.append({"query_id": q["query_id"], "type": q["type"], "positive": positive,
                        "positive_taste_rank": taste[positive],
                        **{f"hit_{name}": int(pick == positive) for name, pick in picks.items()}})
    frame = pd.DataFrame(records)
    hits = [c for c in frame.columns if c.startswith("hit_")]
    by_type = frame.groupby("type")[hits].mean().round(4)
    summary = {name[4:]: {**{t: float(by_type.at[t, name]) for t in by_type.index},
                          "all": round(float(frame[name].mean()), 4)} for name in hits}
    record = {**provenance(argv), "seed": args.seed, "split": args.split, "per_type": args.per_type,
              "n_candidates": args.n_candidates, "n_queries": len(frame), "acc_at_1": summary, "records": records}
    record["command"] = " ".join(["python", "experiments/taste_rules.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"split": args.split, "n": len(frame), "acc_at_1": summary}))
    return 0


def zscore(values):
    """``values`` standardised among the shown candidates (0 when they are all equal; a candidate without a
    score, -inf, counts as 3 deviations below)."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros_like(x)
    mean, std = x[finite].mean(), x[finite].std()
    out = (x - mean) / std if std > 0 else np.zeros_like(x)
    return np.where(finite, out, -3.0)


if __name__ == "__main__":
    raise SystemExit(main())
