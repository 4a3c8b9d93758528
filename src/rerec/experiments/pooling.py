"""Pooling ablation runs over seeds (``experiments/pool_ablation.py``): every arm against a reference arm
(plain GRPO by default), paired per validation query within a seed and pooled over the seeds.

A run is an ``experiments/ablation.py --out`` folder: ``ablation.json`` (with the run's seed) and
``records.json`` (per arm, the per-query records ``{"query_id", "type", "hit"}``). The seed picks the
validation queries and their candidates, so the runs of one seed form one stratum: arms trained in separate
runs of one seed pair query by query. A seed whose runs lack the arm or the reference drops out of that arm's
comparison.

Per arm, :func:`pool` gives the pooled difference in Acc@1 (arm - reference) with a stratified paired
bootstrap interval (:func:`rerec.eval.metrics.pooled_paired_difference`: each seed's queries resampled within
the seed), for all query types and each type, plus the interval at a Bonferroni-corrected level for the number
of arms compared.
"""

from __future__ import annotations

import json
from pathlib import Path

from rerec.errors import InputError

Records = dict[str, list[dict]]


def write_run(out: Path, summary: dict, records: Records) -> None:
    """Write a run folder as :func:`load_run` reads it: ``ablation.json`` (the summary, with its ``seed``) and
    ``records.json`` (per arm, the per-query records)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(summary, indent=2))
    (out / "records.json").write_text(json.dumps(records))


def load_run(run: Path) -> tuple[int, Records]:
    """A run folder's seed and per-arm records (``[{"query_id", "type", "hit"}, ...]``)."""
    run = Path(run)
    summary_path, records_path = run / "ablation.json", run / "records.json"
    for path in (summary_path, records_path):
        if not path.is_file():
            raise InputError(f"{run}: no {path.name}. Fix: give the --out folder of a finished "
                             "experiments/ablation.py run (records.json holds its per-query hits).")
    summary, records = json.loads(summary_path.read_text()), json.loads(records_path.read_text())
    if not isinstance(summary.get("seed"), int):
        raise InputError(f"{summary_path} records no seed. Fix: add the run's --seed to it, as \"seed\": 0 for a "
                         "run without --seed.")
    if not isinstance(records, dict) or not all(isinstance(v, list) for v in records.values()):
        raise InputError(f"{records_path}: expected an object of arm name to per-query records")
    return summary["seed"], records


def group_by_seed(runs: list[tuple[str, int, Records]]) -> dict[int, Records]:
    """Merge the arms of the runs ``(name, seed, records)`` that share a seed. An arm twice in one seed, or
    arms of one seed scored on different queries, is an error that names the runs."""
    groups: dict[int, Records] = {}
    origin: dict[tuple[int, str], str] = {}
    for run, seed, records in runs:
        group = groups.setdefault(seed, {})
        for arm, recs in records.items():
            if arm in group:
                raise InputError(f"arm {arm!r} of seed {seed} is in both {origin[seed, arm]} and {run}. Fix: leave "
                                 "one run out, or train the second as a named variant (experiments/ablation.py "
                                 "--variants).")
            queries = {r["query_id"] for r in recs}
            for other, other_recs in group.items():
                if {r["query_id"] for r in other_recs} != queries:
                    raise InputError(f"seed {seed}: {arm!r} ({run}) and {other!r} ({origin[seed, other]}) were scored "
                                     "on different validation queries. Fix: pool only runs made with the same --data, "
                                     "--n-eval and --seed.")
            group[arm] = recs
            origin[seed, arm] = run
    return groups


def pool(groups: dict[int, Records], reference: str, alpha: float = 0.05, n_boot: int = 10000) -> dict[str, dict]:
    """Each arm against ``reference``: all query types (``"all"``) and each type, pooled over the seeds that
    have both. Per arm: ``seeds`` and, per type, ``n``, ``acc_at_1``, ``reference_acc_at_1`` and the pooled
    paired difference (``diff``, ``low``, ``high``, ``separated``, ``per_stratum``: resampling queries within
    each seed); ``"all"`` also has ``bonferroni`` (the interval at ``alpha`` divided by the number of arms
    compared, which it names: every arm with a seed in common with the reference counts, a start model scored
    on one seed included) and ``seed_level`` (:func:`seed_level_interval`: the spread between seeds)."""
    from rerec.eval.metrics import pooled_paired_difference

    arms = [a for a in dict.fromkeys(a for g in groups.values() for a in g) if a != reference]
    if not any(reference in g for g in groups.values()):
        raise InputError(f"no run holds the reference arm {reference!r}. Fix: pass --reference with one of "
                         f"{', '.join(sorted({a for g in groups.values() for a in g}))}.")
    seeds_of = {arm: sorted(s for s, g in groups.items() if arm in g and reference in g) for arm in arms}
    arms = [arm for arm in arms if seeds_of[arm]]  # the comparisons made, which the correction counts
    out = {}
    for arm in arms:
        seeds = seeds_of[arm]
        pairs = []  # (seed, type, hit of arm, hit of reference)
        for s in seeds:
            ref = {r["query_id"]: r["hit"] for r in groups[s][reference]}
            pairs += [(s, r["type"], r["hit"], ref[r["query_id"]]) for r in groups[s][arm]]
        strata = {t: [([p[2] for p in pairs if p[0] == s and t in ("all", p[1])],
                       [p[3] for p in pairs if p[0] == s and t in ("all", p[1])]) for s in seeds]
                  for t in ["all", *sorted({p[1] for p in pairs})]}
        entry = {"seeds": seeds}
        for t, part in strata.items():
            res = pooled_paired_difference(part, n_boot=n_boot, alpha=alpha)
            n = res["n"]
            entry[t] = {"n": n, "acc_at_1": sum(sum(a) for a, _ in part) / n,
                        "reference_acc_at_1": sum(sum(b) for _, b in part) / n, **res}
        corrected = pooled_paired_difference(strata["all"], n_boot=n_boot, alpha=alpha / len(arms))
        entry["all"]["bonferroni"] = {"alpha": alpha / len(arms), "comparisons": arms, "low": corrected["low"],
                                      "high": corrected["high"], "separated": corrected["separated"]}
        entry["all"]["seed_level"] = seed_level_interval(entry["all"]["per_stratum"], alpha)
        out[arm] = entry
    return out


# Student's t at 0.975 for 1 to 30 degrees of freedom (scipy.stats.t.ppf(0.975, df), rounded to 4 places)
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423)


def seed_level_interval(per_seed: list[float], alpha: float = 0.05) -> dict | None:
    """The interval of the mean per-seed difference with the seeds as the sample: mean ± t(1 - alpha/2,
    k - 1) x sd / sqrt(k) over the k seeds' mean differences. It counts the spread between training runs,
    which the query-level interval (queries resampled within each seed) leaves out; with few seeds it is wide.
    None below two seeds, or at an ``alpha`` other than 0.05 (the t quantiles are tabled for 95% only)."""
    import math

    k = len(per_seed)
    if k < 2 or k - 1 > len(_T975) or not math.isclose(alpha, 0.05):
        return None
    mean = sum(per_seed) / k
    sd = math.sqrt(sum((d - mean) ** 2 for d in per_seed) / (k - 1))
    half = _T975[k - 2] * sd / math.sqrt(k)
    return {"seeds": k, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half,
            "separated": bool(mean - half > 0 or mean + half < 0)}


def pool_runs(runs: list[Path], reference: str = "plain_grpo", alpha: float = 0.05) -> dict:
    """Load the run folders, group them by seed and pool: ``{"reference", "alpha", "runs", "arms"}``."""
    loaded = [(str(run), *load_run(Path(run))) for run in runs]
    return {"reference": reference, "alpha": alpha, "runs": [r[0] for r in loaded],
            "arms": pool(group_by_seed(loaded), reference, alpha=alpha)}


def pooled_table(result: dict) -> str:
    """The pooled comparison as a table and one verdict line per arm (the verdict stays inside the interval:
    "NOT separated" when it holds 0)."""
    reference, alpha = result["reference"], result["alpha"]
    level = round(100 * (1 - alpha))
    lines = [f"{'arm':18s} {'seeds':>6s} {'n':>4s} {'acc@1':>6s} {'ref':>6s} {'diff':>7s} {f'{level}% CI':>17s} "
             f"{'Bonferroni CI':>17s} {'seed-level CI':>17s}  per seed"]
    for arm, e in result["arms"].items():
        a, b, c = e["all"], e["all"]["bonferroni"], e["all"].get("seed_level")
        per_seed = " ".join(f"{s}:{d:+.2f}" for s, d in zip(e["seeds"], a["per_stratum"], strict=True))
        seed_ci = f"[{c['low']:+.3f}, {c['high']:+.3f}]" if c else f"{'-':>17s}"
        lines.append(f"{arm:18s} {len(e['seeds']):6d} {a['n']:4d} {a['acc_at_1']:6.3f} {a['reference_acc_at_1']:6.3f} "
                     f"{a['diff']:+7.3f} [{a['low']:+.3f}, {a['high']:+.3f}] [{b['low']:+.3f}, {b['high']:+.3f}] "
                     f"{seed_ci}  {per_seed}")
    for arm, e in result["arms"].items():
        a = e["all"]
        verdict = ("separated" if a["bonferroni"]["separated"] else
                   "separated uncorrected only" if a["separated"] else "NOT separated (the interval holds 0)")
        lines.append(f"[pool] {arm} - {reference}: {a['diff']:+.3f} over {a['n']} queries of {len(e['seeds'])} "
                     f"seed(s): {verdict}")
    return "\n".join(lines)
