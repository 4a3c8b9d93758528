"""Where the positive sits among the candidates as RFT's prompts list them (taste order), for the whole train
split shown with 4 and with 6 candidates (rerec.train.rft.training_rows at seed 0, no screening: the prompts
the rc6s0 arm drew from). Prints one JSON line per candidate count, by query type.

    python row_share_by_n.py DATA GRAPHS REWARD
"""

import json
import sys
from collections import Counter, defaultdict


def main(data: str, graphs: str, reward: str) -> None:
    from rerec.taste import attach_taste, taste_source
    from rerec.train.inputs import load_view_and_queries
    from rerec.train.rft import RFTConfig, training_rows

    view, queries = load_view_and_queries(data, graphs)
    attach_taste(view, graphs, taste_source(True, reward))
    for n in (4, 6):
        rows = training_rows(view, queries, RFTConfig(profile="smollm2", n_candidates=n, seed=0).resolved())
        by_type: dict[str, Counter] = defaultdict(Counter)
        for row in rows:
            positives = {str(p) for p in row["positives"]}
            first = min(i + 1 for i, c in enumerate(row["candidates"]) if str(c) in positives)
            by_type[row["type"]][first] += 1
            by_type["all"][first] += 1
        print(json.dumps({"n_candidates": n, "prompts": len(rows),
                          "row_1_share": {t: round(c[1] / sum(c.values()), 3) for t, c in sorted(by_type.items())},
                          "positive_in_row": {t: dict(sorted(c.items())) for t, c in sorted(by_type.items())}}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
