"""Pool ablation runs of several seeds: every arm against a reference arm (plain GRPO by default), paired per
validation query within a seed and pooled over the seeds (:mod:`rerec.experiments.pooling`).

    .venv/bin/python experiments/pool_ablation.py RUN_DIR [RUN_DIR ...] [--reference plain_grpo] [--out pooled.json]

Each RUN_DIR is an ``experiments/ablation.py --out`` folder (``ablation.json`` with the run's seed, and the
per-query hits in ``records.json``). Runs of one seed pair query by query (the default arms in one run, the
ablations in another); a seed whose runs lack the arm or the reference drops out of that arm's comparison.

Per arm it prints the pooled difference in Acc@1 (arm - reference) with a stratified paired bootstrap interval
(each seed's queries resampled within the seed), the interval again at a Bonferroni-corrected level for the
number of arms compared, and each seed's own difference; then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rerec.errors import RerecError  # noqa: E402
from rerec.experiments.pooling import pool_runs, pooled_table  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="experiments/ablation.py --out folders")
    ap.add_argument("--reference", default="plain_grpo", help="The arm every other arm is compared with.")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=None, help="Also write the pooled comparison here as JSON.")
    args = ap.parse_args(argv)
    result = pool_runs(args.runs, args.reference, alpha=args.alpha)
    print(pooled_table(result))
    if args.out:
        from rerec.experiments.provenance import provenance

        args.out.write_text(json.dumps({**provenance(argv), **result}, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RerecError as err:
        sys.exit(f"pool_ablation: {err}")
