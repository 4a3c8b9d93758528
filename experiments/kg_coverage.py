"""The embedded knowledge graph before and after its alignment: coverage and agreement.

Loads the embedded MovieLens-100k twice: as it was read before the alignment (RecBole's link ids taken as
ML-100k item ids) and as it is read now (moved through src/rerec/data/embedded/ml100k_link_ids.tsv).
For each reading: the items with at least one row of each graph relation, the items with any graph row,
and the graph's agreement with the item table (rerec.data.kg_check). Writes the figures with their
provenance and prints one JSON line.

    .venv/bin/python experiments/kg_coverage.py --out experiments/results/kg_coverage.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from unittest import mock


def coverage(catalog) -> dict:
    from rerec.data.schema import NAMED_RELATIONS

    attrs = catalog.item_attributes
    graph = attrs[~attrs["relation"].isin(NAMED_RELATIONS)]
    per_relation = graph.groupby("relation")["item_id"].nunique().sort_index()
    return {"items": len(catalog.items), "items_with_any_graph_relation": int(graph["item_id"].nunique()),
            "items_per_relation": {str(k): int(v) for k, v in per_relation.items()}}


def measure(catalog) -> dict:
    from rerec.data.kg_check import graph_agreement

    agreement = graph_agreement(catalog.items, catalog.item_attributes, catalog.meta.get("kg_item_pairs"))
    return {**coverage(catalog), "agreement": agreement.as_dict(), "summary": agreement.summary()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from rerec.data import load
    from rerec.experiments.provenance import provenance

    after = measure(load.load_catalog(None))
    with mock.patch.object(load, "_realign_embedded_links", lambda link, table, meta: link):
        before = measure(load.load_catalog(None))
    record = {**provenance(argv), "seed": 0, "before_ml100k_ids": before, "after_aligned": after}
    record["command"] = " ".join(["python", "experiments/kg_coverage.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"before": before["summary"], "after": after["summary"],
                      "items_with_any_graph_relation": [before["items_with_any_graph_relation"],
                                                        after["items_with_any_graph_relation"]]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
