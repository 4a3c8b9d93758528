"""The final figure of an ablation: score its trained arms on the **test** split.

Arms are chosen on validation queries (``experiments/ablation.py``); once the comparison is settled, this
scores the arms' saved models on the test queries, with candidates shrunk by the run's own seed, and writes
a folder ``experiments/pool_ablation.py`` reads (``ablation.json`` with the seed and ``records.json`` with
the per-query hits), so the seeds pool exactly as the validation runs do.

    .venv/bin/python experiments/test_arms.py --data D --graphs G --run RUN_DIR --arms plain_grpo,rerec --out OUT
    .venv/bin/python experiments/pool_ablation.py OUT_SEED_A OUT_SEED_B ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rerec.errors import InputError, RerecError  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--graphs", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True, help="An experiments/ablation.py --out folder (its models).")
    ap.add_argument("--arms", default="plain_grpo,rerec", help="Arms of the run to score (comma-separated).")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from rerec.experiments.pooling import write_run
    from rerec.experiments.provenance import provenance

    record = provenance(argv)
    summary_path = args.run / "ablation.json"
    if not summary_path.is_file():
        raise InputError("not an ablation run folder", file=str(summary_path),
                         fix="pass the --out folder of experiments/ablation.py")
    run = json.loads(summary_path.read_text())
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    missing = [a for a in arms if not (args.run / a / "config.json").is_file()]
    if missing:
        raise InputError(f"arm(s) {', '.join(missing)} have no model folder", file=str(args.run),
                         fix=f"choose among {', '.join(sorted(run['arms']))}")

    from rerec.prompt import shrink_candidates
    from rerec.train.inputs import load_view_and_queries, query_rows
    from rerec.train.rft import RFTConfig

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ablation import evaluate_arm

    seed = int(run["seed"])
    cfg = RFTConfig(profile=run["model_profile"]).resolved()
    view, queries = load_view_and_queries(args.data, args.graphs)
    view.decades = bool(cfg.decade_evidence)
    rows = [shrink_candidates(r, cfg.n_candidates, view, seed=seed) for r in query_rows(queries, "test", 0, seed)]
    records, seconds = {}, {}
    for arm in arms:
        start = time.perf_counter()
        records[arm] = evaluate_arm(args.run / arm, rows, view, cfg)
        seconds[arm] = round(time.perf_counter() - start, 1)
        hits = [r["hit"] for r in records[arm]]
        print(f"[test] seed {seed} {arm}: Acc@1 {sum(hits) / len(hits):.3f} on {len(hits)} test queries", flush=True)
    summary = {"experiment": "ablation_test", **record, "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "split": "test", "seed": seed, "run": str(args.run), "run_commit": run.get("commit"),
               "n_eval": len(rows), "eval_s": seconds,
               "acc_at_1": {a: sum(r["hit"] for r in recs) / len(recs) for a, recs in records.items()}}
    write_run(args.out, summary, records)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RerecError as err:
        sys.exit(f"test_arms: {err}")
