"""Benchmark: three properties of the generated queries that make or break the evaluation.

Runs prepare-data (the real stage, every default) on a dataset (default: the embedded MovieLens-100k)
and measures, from its written tables only:

1. ``negatives_in_user_items``: the share of negatives (candidates that are not a positive) that the
   query's user interacted with. Such a "negative" may be something the user liked, and it rewards a
   ranker that avoids known items (it makes LightGCN look worse than it is). Target: 0.
2. ``heldout_in_train_history``: val and test queries whose positive appears in the history of a
   train query of the same user (shown in the prompt as soon as ``max_history > 0``); also
   ``heldout_in_any_history`` (any other query of that user, val/test included) and
   ``heldout_named_by_train`` (named as a ``via`` item in a train query's request). Target: 0.
3. ``trap_kept``: the share of misinformed queries whose trap item (the ``false_premise`` item) is
   still a candidate after ``rerec.prompt.shrink_candidates`` to n candidates (n = 2, 3, 4, 8), as
   the CPU profiles show them. Target: 1.0.

The measurement reads only the prepared parquet files and calls only ``prepare_data`` and
``shrink_candidates``, so the same script measures any commit. Ends by printing one JSON line;
``--out FILE`` also writes the summary with per-query records, the command, commit, machine and seed.

    .venv/bin/python bench/query_quality.py [--input DIR] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

SHRINK_TO = (2, 3, 4, 8)


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def measure(prepared: Path, seed: int) -> tuple[dict, list[dict]]:
    from rerec.prompt import CatalogView, shrink_candidates

    queries = pd.read_parquet(prepared / "queries.parquet")
    interactions = pd.read_parquet(prepared / "interactions.parquet")
    items = pd.read_parquet(prepared / "items.parquet")
    attributes = pd.read_parquet(prepared / "item_attributes.parquet")
    view = CatalogView.from_tables(items, attributes, interactions)
    user_items: dict[str, set[str]] = defaultdict(set)
    for user, item in zip(interactions["user_id"].astype(str), interactions["item_id"].astype(str), strict=True):
        user_items[user].add(item)

    shown_by_user: dict[str, list[tuple[str, str, set[str], set[str]]]] = defaultdict(list)
    for row in queries.itertuples(index=False):
        conditions = json.loads(row.conditions) if row.conditions else []
        vias = {str(c["via"]) for c in conditions if c.get("via") is not None}
        shown_by_user[str(row.user_id)].append((str(row.query_id), row.split, set(map(str, row.history)), vias))

    records = []
    for row in queries.itertuples(index=False):
        user, positives = str(row.user_id), [str(p) for p in row.positives]
        negatives = [str(c) for c in row.candidates if str(c) not in positives]
        record = {"query_id": row.query_id, "type": row.type, "split": row.split,
                  "n_negatives": len(negatives),
                  "n_negatives_in_user_items": sum(c in user_items[user] for c in negatives)}
        if row.split in ("val", "test"):
            others = [s for s in shown_by_user[user] if s[0] != row.query_id]
            record["positive_in_train_history"] = any(p in h for _, sp, h, _ in others if sp == "train"
                                                      for p in positives)
            record["positive_in_any_history"] = any(p in h for _, _, h, _ in others for p in positives)
            record["positive_named_by_train"] = any(p in v for _, sp, _, v in others if sp == "train"
                                                    for p in positives)
        conditions = json.loads(row.conditions) if row.conditions else []
        traps = [str(c["false_premise"]["item_id"]) for c in conditions if c.get("false_premise")]
        if row.type == "misinformed" and traps:
            query = {"query_id": row.query_id, "conditions": row.conditions, "positives": positives,
                     "candidates": [str(c) for c in row.candidates]}
            record["trap_in_candidates"] = traps[0] in query["candidates"]
            for n in SHRINK_TO:
                shown = shrink_candidates(query, n, view, seed=seed)["candidates"]
                record[f"trap_kept_at_{n}"] = traps[0] in shown
        records.append(record)

    frame = pd.DataFrame(records)
    heldout = frame[frame["split"].isin(["val", "test"])]
    misinformed = frame[frame["type"] == "misinformed"]
    summary = {
        "n_queries": len(frame),
        "n_by_split": {s: int((frame["split"] == s).sum()) for s in ("train", "val", "test")},
        "negatives": int(frame["n_negatives"].sum()),
        "negatives_in_user_items": int(frame["n_negatives_in_user_items"].sum()),
        "negatives_in_user_items_share": round(float(frame["n_negatives_in_user_items"].sum()
                                                     / max(frame["n_negatives"].sum(), 1)), 4),
        "heldout_queries": len(heldout),
        "val_in_train_history": int(heldout.loc[heldout["split"] == "val", "positive_in_train_history"].sum()),
        "n_val": int((heldout["split"] == "val").sum()),
        "heldout_in_train_history": int(heldout["positive_in_train_history"].sum()),
        "heldout_in_any_history": int(heldout["positive_in_any_history"].sum()),
        "heldout_named_by_train": int(heldout["positive_named_by_train"].sum()),
        "misinformed": len(misinformed),
        "trap_in_candidates": round(float(misinformed["trap_in_candidates"].mean()), 4),
        **{f"trap_kept_at_{n}": round(float(misinformed[f"trap_kept_at_{n}"].mean()), 4) for n in SHRINK_TO},
    }
    return summary, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=None, help="dataset folder (default: embedded MovieLens-100k)")
    parser.add_argument("--seed", type=int, default=0, help="prepare-data seed and shrink_candidates seed")
    parser.add_argument("--out", type=Path, default=None, help="write summary and per-query records here")
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. before/after)")
    args = parser.parse_args()
    os.environ.setdefault("REREC_TRACKING", "off")
    from rerec.data.prepare import PrepareConfig, prepare_data

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared"
        prepare_data(args.input, prepared, PrepareConfig(seed=args.seed), progress=False)
        summary, records = measure(prepared, args.seed)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, sort_keys=True))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "what": "bench/query_quality.py: negatives among the user's items, held-out positives shown in "
                    "other prompts' histories, misinformed traps kept by shrink_candidates",
            "label": args.label,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "commit": _commit(),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}",
            "seed": args.seed,
            "input": str(args.input or "embedded MovieLens-100k"),
            "summary": summary,
            # per-query records, column-wise (one list per field, in query order) to keep the file small
            "records": {key: [r.get(key) for r in records] for key in sorted({k for r in records for k in r})},
        }
        args.out.write_text(json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
