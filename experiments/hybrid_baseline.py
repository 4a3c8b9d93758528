"""The hybrid baseline (text match + LightGCN, rerec.eval.baselines.HybridRanker) on validation queries:
Acc@1 per query type for a grid of LightGCN weights, beside its two parts, on the queries shrunk to the
evaluation's candidates exactly as `rerec evaluate` shrinks them (rerec.prompt.shrink_candidates with the
profile's n_candidates and the eval seed). The weight the library ships (HYBRID_WEIGHT) is chosen here,
on validation only; the test split is never read.

Writes the figures, the paired difference of the chosen hybrid against LightGCN (the report's statistic,
rerec.eval.metrics.paired_by_type), per-query records (both raw scores of every candidate and each
ranker's first item) and the provenance.

    nice .venv/bin/python experiments/hybrid_baseline.py --data /tmp/w/data --graphs /tmp/w/graphs \\
        --reward /tmp/w/reward --out experiments/results/hybrid_baseline_val.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 1000.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--graphs", type=Path, required=True)
    parser.add_argument("--reward", type=Path, required=True)
    parser.add_argument("--profile", default="smollm2", help="The eval profile whose n_candidates is used.")
    parser.add_argument("--seed", type=int, default=0, help="The evaluation seed (shrinking, bootstrap).")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import pandas as pd

    from rerec.data.load import load_catalog
    from rerec.eval import baselines as B
    from rerec.eval.evaluate import EvalConfig, query_records
    from rerec.eval.metrics import aggregate, paired_by_type
    from rerec.experiments.provenance import provenance
    from rerec.graphs.interaction import InteractionGraph
    from rerec.prompt import CatalogView, shrink_candidates
    from rerec.reward.embedder import TextEmbedder

    config = EvalConfig(profile=args.profile, split="val", seed=args.seed).resolved()
    catalog = load_catalog(args.data)
    view = CatalogView.from_catalog(catalog)
    split = catalog.queries[catalog.queries["split"] == "val"].reset_index(drop=True)
    queries = [shrink_candidates(q, config.n_candidates, view, seed=config.seed) for q in query_records(split)]
    popularity = B.PopularityRanker.from_graph(InteractionGraph.load(args.graphs))
    lightgcn = B.LightGCNRanker.from_reward_dir(args.reward, popularity)
    text = B.TextMatchRanker(B.describe_items(catalog.items, catalog.item_attributes), TextEmbedder().encode)
    text.precompute(queries)
    # the same with descriptions that leave the title out: a request names films to say what it likes
    # (or, misinformed, a trap), and a title in the description matches those names, not the request
    untitled = B.TextMatchRanker(B.describe_items(catalog.items, catalog.item_attributes, with_title=False),
                                 TextEmbedder().encode)
    untitled.precompute(queries)

    records, rows = [], []
    for q in queries:
        candidates = [str(c) for c in q["candidates"]]
        positive = str(q["positives"][0])
        t, p = text.scores(q), lightgcn.scores(q)
        u = untitled.scores(q)
        firsts = {"text_match": text.rank(q)[0], "lightgcn": lightgcn.rank(q)[0],
                  "text_match_untitled": untitled.rank(q)[0]}
        for w in WEIGHTS:
            firsts[f"hybrid_w{w:g}"] = B.HybridRanker(text, lightgcn, weight=w).rank(q)[0]
            firsts[f"hybrid_untitled_w{w:g}"] = B.HybridRanker(untitled, lightgcn, weight=w).rank(q)[0]
        records.append({"query_id": str(q["query_id"]), "type": q["type"], "user_id": str(q["user_id"]),
                        "candidates": candidates, "positive": positive, "text_scores": [round(x, 6) for x in t],
                        "untitled_text_scores": [round(x, 6) for x in u],
                        "lightgcn_scores": [round(x, 6) for x in p], "first": firsts})
        rows += [{"model": name, "query_id": str(q["query_id"]), "type": q["type"],
                  "acc@1": float(first == positive)} for name, first in firsts.items()]
    per_query = pd.DataFrame(rows)
    table = aggregate(per_query, ["model", "type"], ["acc@1"], seed=config.seed)
    table += aggregate(per_query.assign(type="all"), ["model", "type"], ["acc@1"], seed=config.seed)
    overall = {r["model"]: r["acc@1"] for r in table if r["type"] == "all"}
    grid = {f"{w:g}": overall[f"hybrid_w{w:g}"] for w in WEIGHTS}
    grid_untitled = {f"{w:g}": overall[f"hybrid_untitled_w{w:g}"] for w in WEIGHTS}
    best = max(((f"hybrid{v}_w{w:g}", w) for v in ("", "_untitled") for w in WEIGHTS),
               key=lambda x: (round(overall[x[0]], 9), -abs(x[1] - 1.0)))[0]
    chosen = f"hybrid{'_untitled' if not B.HYBRID_TEXT_TITLES else ''}_w{B.HYBRID_WEIGHT:g}"
    paired = {ref: paired_by_type(per_query, chosen, ref, "acc@1", seed=config.seed)
              for ref in ("lightgcn", "text_match")}
    record = {**provenance(argv), "seed": config.seed, "split": "val", "n_queries": len(queries),
              "n_candidates": config.n_candidates, "profile": args.profile,
              "inputs": {"data": str(args.data), "graphs": str(args.graphs), "reward": str(args.reward)},
              "weights": list(WEIGHTS), "acc_at_1_by_weight": grid,
              "acc_at_1_by_weight_untitled": grid_untitled, "best": best, "shipped": chosen, "table": table, "paired_shipped_hybrid_minus": paired,
              "records": records}
    record["command"] = " ".join(["python", "experiments/hybrid_baseline.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    by_type = {r["model"]: {} for r in table}
    for r in table:
        by_type[r["model"]][r["type"]] = round(r["acc@1"], 3)
    print(json.dumps({"grid": {k: round(v, 3) for k, v in grid.items()},
                      "grid_untitled": {k: round(v, 3) for k, v in grid_untitled.items()}, "best": best,
                      "by_type": {m: by_type[m] for m in ("text_match", "text_match_untitled", "lightgcn", chosen)},
                      "hybrid_minus_lightgcn": paired["lightgcn"]["all"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
