"""Greedy completions of one model on the first N explicit validation queries, for experiments/check_analysis.py.

Usage: python experiments/check_completions.py --data DATA --graphs GRAPHS --reward REWARD --model DIR --out F.jsonl
[--n 50] [--split test --type misinformed] [--query-id ID ...]. By default the queries are the validation
split's explicit ones in query-id order, shrunk to 4 candidates (shrink_candidates, seed 0) and shown with
taste evidence (and decades when the model was trained with them), as SFT's own validation shows them;
generation is rerec.eval.choice.evaluate_choice (bf16 where the processor computes it, max_new_tokens 224).
``--split`` and ``--type`` pick another split and query type; ``--query-id`` (repeatable) keeps only the
named queries of them. Each output line: query id, hit, prompt, completion and the positives' titles.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--data", "--graphs", "--reward", "--model", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--type", default="explicit", choices=["explicit", "implicit", "interest", "misinformed"])
    parser.add_argument("--query-id", action="append", default=[], help="keep only these queries (repeatable)")
    args = parser.parse_args()

    from rerec.eval.choice import evaluate_choice
    from rerec.models.loading import load_model
    from rerec.prompt import shrink_candidates
    from rerec.serving.recommender import resolve_settings
    from rerec.taste import attach_taste, taste_source
    from rerec.train.inputs import load_view_and_queries, query_rows

    view, queries = load_view_and_queries(args.data, args.graphs)
    attach_taste(view, args.graphs, taste_source(True, args.reward))
    view.decades = resolve_settings(args.model)[0].decade_evidence  # as the model was trained
    rows = sorted((r for r in query_rows(queries, args.split, 0, 0) if r["type"] == args.type
                   and (not args.query_id or str(r["query_id"]) in args.query_id)),
                  key=lambda r: str(r["query_id"]))[:args.n]
    rows = [shrink_candidates(r, 4, view, seed=0) for r in rows]
    model, tokenizer = load_model(args.model)
    result = evaluate_choice(model, tokenizer, rows, view, max_new_tokens=224, batch_size=16,
                             desc=f"{args.type} completions")
    with open(args.out, "w") as f:
        for row, hit, prompt, completion in zip(rows, result["hits"], result["prompts"], result["completions"],
                                                strict=True):
            f.write(json.dumps({"qid": row["query_id"], "hit": hit, "prompt": prompt.split("<|im_start|>user", 1)[-1],
                                "completion": completion,
                                "pos": [view.title(p) for p in row["positives"]]}) + "\n")
    print(json.dumps({"n": result["n"], "acc_at_1": result["acc_at_1"], "out": args.out}))


if __name__ == "__main__":
    main()
