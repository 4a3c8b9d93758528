"""Where the positive sits among the candidates as prompts list them (taste order), for the training prompts
a screening found answered and missed.

    python first_row_share.py DATA GRAPHS REWARD SCREEN.json [SCREEN.json ...]

The rows are RFT's (rerec.train.rft.training_rows: the seeded, type-stratified sample of the train split,
shrunk to 4 candidates at seed 0 and listed in taste order). Prints one JSON line per screening: for the
missed and the answered prompts, how many have their first positive in row 1, 2, 3 and 4.
"""

import json
import sys
from collections import Counter


def main(data: str, graphs: str, reward: str, screens: list[str]) -> None:
    from rerec.taste import attach_taste, taste_source
    from rerec.train.inputs import load_view_and_queries
    from rerec.train.rft import RFTConfig, training_rows

    view, queries = load_view_and_queries(data, graphs)
    attach_taste(view, graphs, taste_source(True, reward))
    for path in screens:
        with open(path, encoding="utf-8") as f:
            screen = json.load(f)
        cfg = RFTConfig(profile="smollm2", n_candidates=4, seed=0)
        cfg.curriculum.screen = len(screen["prompt_ids"])
        rows = {str(r["query_id"]): r for r in training_rows(view, queries, cfg.resolved())}
        out = {}
        for label, wanted in (("missed", False), ("answered", True)):
            rows_of_positive: Counter = Counter()
            for qid, hit in zip(screen["prompt_ids"], screen["hits"], strict=True):
                if hit != wanted:
                    continue
                row = rows[qid]
                positives = {str(p) for p in row["positives"]}
                rows_of_positive[min(i + 1 for i, c in enumerate(row["candidates"]) if str(c) in positives)] += 1
            n = sum(rows_of_positive.values())
            out[label] = {"n": n, "positive_in_row": dict(sorted(rows_of_positive.items())),
                          "row_1_share": round(rows_of_positive[1] / n, 3) if n else None}
        print(json.dumps({"screen": path, **out}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
