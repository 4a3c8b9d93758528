"""Paired differences between rows of several ``rerec evaluate`` reports on the same queries.

Each report folder holds ``per_query.parquet`` (one row per model and query; a ``.parquet`` file can be
named instead, its ``report.json`` beside it: :func:`report_files`). Rows of different reports
are paired by query id, so models evaluated in separate runs (an arm trained without taste evidence is
evaluated without it) are compared on the queries both answered, with the statistic the report and the
promotion gate use (:func:`rerec.eval.metrics.paired_by_type`). Writes Acc@1 per type of every row,
each requested difference, the per-query hits and the provenance of this command; prints one JSON line.

    .venv/bin/python experiments/pair_reports.py --report A=eval_a --report B=eval_b \\
        --pair B/sft-A/sft --out experiments/results/taste_ablation_val.json

``--checks NAME=FILE.jsonl`` adds a row ``NAME/checks`` from experiments/check_completions.py's output (one
explicit query a line, its ``hit`` as Acc@1), so that models' greedy choices on all explicit validation queries
pair like report rows.

``--mean NAME=R/MODEL,R/MODEL,...`` adds a row whose per-query score is the mean of the listed rows (on the
queries every one of them answered): several seeds of one arm pooled per query, so that ``--pair NAME-A/sft``
compares the arm's seed average with a reference, with the same paired, type-stratified interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def mean_row(per_query, spec: str, metric: str):
    """The rows of ``NAME=R/MODEL,R/MODEL,...``: per query, the mean ``metric`` of the listed rows, on the
    queries all of them answered (a missing score leaves the query out)."""
    name, _, listed = spec.partition("=")
    models = [m for m in listed.split(",") if m]
    if not name or len(models) < 2:
        raise SystemExit(f"--mean {spec!r}: write NAME=R/MODEL,R/MODEL with at least two rows")
    missing = sorted(set(models) - set(per_query["model"]))
    if missing:
        raise SystemExit(f"--mean {name}: no rows named {', '.join(missing)}; "
                         f"the rows are {', '.join(sorted(set(per_query['model'])))}")
    rows = per_query[per_query["model"].isin(models)].dropna(subset=[metric])
    counted = rows.groupby(["query_id", "type"])[metric].agg(["mean", "count"]).reset_index()
    counted = counted[counted["count"] == len(models)]
    return counted.rename(columns={"mean": metric}).drop(columns="count").assign(model=name)


def report_files(source: str) -> tuple[Path, Path]:
    """(per-query records, report.json) of ``--report``'s source: an evaluate folder, or a per-query parquet
    file with a ``report.json`` beside it (a results folder that keeps a run's test and gate records as
    ``per_query_test.parquet`` and ``per_query_val_gate.parquet``; the gate's report is
    ``report_val_gate.json``)."""
    path = Path(source)
    if path.suffix == ".parquet":
        gate = path.stem.endswith("_val_gate")
        return path, path.with_name("report_val_gate.json" if gate else "report.json")
    return path / "per_query.parquet", path / "report.json"


def split_pair(spec: str, rows: set[str]) -> tuple[str, str]:
    """``R/MODEL-R/MODEL`` as (model, reference): split at the "-" whose both sides are rows, so a row name
    holding "-" ("r/lr1e-4") still pairs. An ambiguous or unknown pair is an error naming the rows."""
    splits = [(spec[:i], spec[i + 1:]) for i, ch in enumerate(spec) if ch == "-"]
    known = [s for s in splits if s[0] in rows and s[1] in rows]
    if len(known) != 1:
        why = "more than one way to split it into two rows" if known else "no split into two known rows"
        raise SystemExit(f"--pair {spec!r}: {why}; the rows are {', '.join(sorted(rows))}")
    return known[0]


def same_first_item(per_query, model: str, reference: str) -> dict[str, int] | None:
    """``{"n", "same"}``: of the queries both rows answered, how many have the same first item (both none
    counts as the same); None when the records carry no ``top1``. Equal Acc@1 per query says the two hit
    and miss together; this says they also named the same items."""
    if "top1" not in per_query:
        return None
    a = per_query[per_query["model"] == model].set_index("query_id")["top1"]
    b = per_query[per_query["model"] == reference].set_index("query_id")["top1"]
    both = a.index.intersection(b.index)
    a, b = a.loc[both], b.loc[both]
    same = (a == b) | (a.isna() & b.isna())
    return {"n": int(len(both)), "same": int(same.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="append", default=[], metavar="NAME=DIR",
                        help="an evaluate output folder, named (repeatable)")
    parser.add_argument("--checks", action="append", default=[], metavar="NAME=FILE.jsonl",
                        help="experiments/check_completions.py output, a row NAME/checks (repeatable)")
    parser.add_argument("--pair", action="append", default=[], metavar="R/MODEL-R/MODEL",
                        help="a difference to compute: report/model minus report/model (repeatable)")
    parser.add_argument("--mean", action="append", default=[], metavar="NAME=R/MODEL,R/MODEL",
                        help="a row averaging other rows per query (several seeds of one arm; repeatable)")
    parser.add_argument("--metric", default="acc@1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import pandas as pd

    from rerec.eval.metrics import paired_by_type
    from rerec.experiments.provenance import provenance

    frames, sources = [], {}
    for spec in args.report:
        name, _, folder = spec.partition("=")
        records, report_file = report_files(folder)
        frame = pd.read_parquet(records)
        frame["model"] = name + "/" + frame["model"].astype(str)
        frames.append(frame)
        report = json.loads(report_file.read_text(encoding="utf-8"))
        sources[name] = {"folder": folder, "split": report.get("split"), "config": report.get("config")}
    for spec in args.checks:
        name, _, path = spec.partition("=")
        lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        frames.append(pd.DataFrame({"model": name + "/checks", "query_id": [x["qid"] for x in lines],
                                    "type": "explicit", args.metric: [float(x["hit"]) for x in lines]}))
        sources[name] = {"file": path, "split": "val", "what": "check_completions.py, explicit queries"}
    if not frames:
        raise SystemExit("name at least one --report or --checks")
    per_query = pd.concat(frames, ignore_index=True)
    for spec in args.mean:
        per_query = pd.concat([per_query, mean_row(per_query, spec, args.metric)], ignore_index=True)
    scores = (per_query.groupby(["model", "type"])[args.metric].mean().unstack().round(4)
              .assign(all=per_query.groupby("model")[args.metric].mean().round(4)))
    pairs, same_items = {}, {}
    for spec in args.pair:
        model, reference = split_pair(spec, set(per_query["model"]))
        pairs[spec] = paired_by_type(per_query, model, reference, args.metric, seed=args.seed)
        same = same_first_item(per_query, model, reference)
        if same is not None:
            same_items[spec] = same
    keep = ["model", "query_id", "type", args.metric]
    record = {**provenance(argv), "seed": args.seed, "metric": args.metric, "reports": sources,
              "scores": scores.to_dict(orient="index"), "pairs": pairs, "same_first_item": same_items,
              "records": per_query[[c for c in keep if c in per_query]].to_dict(orient="records")}
    record["command"] = " ".join(["python", "experiments/pair_reports.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    print(json.dumps({"scores": record["scores"],
                      "pairs": {k: v.get("all") for k, v in pairs.items()}}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
