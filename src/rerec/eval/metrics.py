"""Ranking metrics of the recommendation benchmark, their aggregation per query type and per number of
conditions, and bootstrap confidence intervals.

Per query, a ranker returns a ranked list of item ids (an LLM's parsed answer, possibly empty) and the
query has its ground-truth ``positives`` (one by construction, see ``docs/data.md``, "Queries"):

- ``Acc@1``: 1 when the first item is a positive. With one positive it equals NDCG@1.
- ``NDCG@K`` = DCG@K / IDCG@K, DCG@K = sum_{r<=K, item_r in G} 1 / log2(r + 1) (ranks from 1), IDCG@K
  the DCG of an ideal list with min(|G|, K) positives on top. Order matters (the reference code loses it
  with ``set()``); a repeated item scores once, at its first rank, and its copies still take their
  places; ``None`` (an answer that matched no candidate) takes a place and scores nothing. These two
  come from :mod:`rerec.reward.metrics`, shared with the reward.
- ``Recall@K`` = |top-K ∩ G| / |G|.
- ``MRR`` = mean of 1 / rank of the first positive in the list (0 when none is listed).
- parse rate: the fraction of completions whose answer could be parsed (1 for the baselines).

A metric at depth K only says something when it can vary: a ranker that lists all n candidates has
Recall@K = 1 for every K >= n, and NDCG@K of a list of d < K items is NDCG@d. :func:`ranking_ks` keeps
the K's below the candidate count and :func:`metrics_at_depth` names the metrics a list of d items is
judged on (Acc@1 always; NDCG@K and Recall@K for K <= d; MRR only for a list of every candidate).

Confidence intervals are percentile bootstrap intervals of the mean over queries, resampled with a
seeded generator in one vectorised draw (``n_boot`` x ``n`` indices).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# The ranking maths lives with the reward (one definition for training and evaluation).
from rerec.reward.metrics import ndcg_at_k, recall_at_k


def acc_at_1(ranked: Sequence[str | None], positives: Iterable[str]) -> float:
    return float(bool(ranked) and ranked[0] is not None and ranked[0] in set(positives))


def reciprocal_rank(ranked: Sequence[str | None], positives: Iterable[str]) -> float:
    """1 / (1-based rank of the first positive in ``ranked``); 0.0 when no positive is listed. A ``None``
    (an answer item naming no candidate) takes its place like any other item."""
    relevant = set(positives)
    for rank, item in enumerate(ranked, start=1):
        if item is not None and item in relevant:
            return 1.0 / rank
    return 0.0


def query_metrics(ranked: Sequence[str | None], positives: Iterable[str], ks: Sequence[int] = (5, 10),
                  parsed: bool = True) -> dict[str, float]:
    """All per-query metrics as ``{"acc@1": ., "ndcg@5": ., "recall@5": ., ..., "mrr": ., "parsed": .}``."""
    positives = list(positives)
    out = {"acc@1": acc_at_1(ranked, positives)}
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, positives, k)
        out[f"recall@{k}"] = recall_at_k(ranked, positives, k)
    out["mrr"] = reciprocal_rank(ranked, positives)
    out["parsed"] = float(parsed)
    return out


def auto_ks(n_candidates: int) -> list[int]:
    """The default K's for ``n_candidates`` shown: 5 and 10 when more than 10 are shown, else the two
    largest of 2, 3, 5 below the count (4 candidates: [2, 3]; 2 or fewer: none)."""
    if n_candidates > 10:
        return [5, 10]
    return [k for k in (2, 3, 5) if k < n_candidates][-2:]


def ranking_ks(ks: Sequence[int] | None, n_candidates: int) -> tuple[list[int], list[int]]:
    """``(kept, dropped)``: the K's of NDCG@K / Recall@K that can vary when every query shows at least
    ``n_candidates`` candidates, i.e. ``1 < K < n_candidates`` (K = 1 is Acc@1; at K >= n a full ranking
    has Recall@K = 1 and NDCG@K = NDCG@n). ``ks`` None: :func:`auto_ks`. Kept K's are sorted and unique."""
    requested = sorted(set(auto_ks(n_candidates) if ks is None else ks))
    kept = [k for k in requested if 1 < k < n_candidates]
    return kept, [k for k in requested if k not in kept]


def metrics_at_depth(ks: Sequence[int], depth: int | None, n_candidates: int) -> list[str]:
    """The metrics a ranker is judged on when its list holds ``depth`` items (None: every candidate) and
    queries show at most ``n_candidates``: Acc@1, NDCG@K and Recall@K for K <= depth, MRR when the list
    covers every candidate (depth >= n_candidates), and the parse rate. A top-1 LLM gets Acc@1 alone:
    its NDCG@K would be its Acc@1 again and its Recall@K would not compare with a full ranking's."""
    full = depth is None or depth >= n_candidates
    names = ["acc@1", *[f"{m}@{k}" for k in ks if full or k <= depth for m in ("ndcg", "recall")]]
    return [*names, *(["mrr"] if full else []), "parsed"]


def bootstrap_ci(values: Sequence[float] | np.ndarray, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: ``(low, high)``; ``(nan, nan)`` for no values.

    One vectorised draw of ``(n_boot, n)`` indices from ``np.random.default_rng(seed)``.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def paired_difference(a: Sequence[float], b: Sequence[float], n_boot: int = 1000, alpha: float = 0.05,
                      seed: int = 1) -> dict:
    """Mean of ``a - b`` over the same queries, its bootstrap interval, and whether the interval excludes 0.

    ``a`` and ``b`` are per-query scores of two models on the same queries, in the same order. Resampling the
    per-query differences (not each model on its own) keeps what the two share out of the interval.
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(f"paired_difference needs scores of the same queries: got {np.size(a)} and {np.size(b)}")
    res = pooled_paired_difference([(a, b)], n_boot=n_boot, alpha=alpha, seed=seed)
    return {k: res[k] for k in ("diff", "low", "high", "separated")}


def pooled_paired_difference(strata: Sequence[tuple[Sequence[float], Sequence[float]]], n_boot: int = 1000,
                             alpha: float = 0.05, seed: int = 1) -> dict:
    """:func:`paired_difference` over several independent runs (seeds), each scored on its own queries.

    ``strata`` holds one ``(a, b)`` pair of per-query score lists per run. The estimate is the mean of every
    ``a - b``; the bootstrap resamples each run's differences within that run (a stratified bootstrap), so each
    run keeps its size in every draw and the spread between runs is not mistaken for noise between queries.
    With one stratum it is :func:`paired_difference`. Returns ``diff``, ``low``, ``high``, ``separated``,
    ``n`` (all queries) and ``per_stratum`` (each run's mean difference).
    """
    diffs = []
    for i, (a, b) in enumerate(strata):
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"pooled_paired_difference: stratum {i} pairs {x.size} scores with {y.size}; "
                             "each stratum needs both models' scores of the same queries")
        diffs.append(x - y)
    n = sum(d.size for d in diffs)
    if n == 0:
        return {"diff": math.nan, "low": math.nan, "high": math.nan, "separated": False, "n": 0, "per_stratum": []}
    rng = np.random.default_rng(seed)
    totals = np.zeros(n_boot)
    for d in diffs:
        if d.size:
            totals += d[rng.integers(0, d.size, size=(n_boot, d.size))].sum(axis=1)
    low, high = np.quantile(totals / n, [alpha / 2, 1 - alpha / 2])
    return {"diff": float(sum(d.sum() for d in diffs) / n), "low": float(low), "high": float(high),
            "separated": bool(low > 0 or high < 0), "n": int(n),
            "per_stratum": [float(d.mean()) if d.size else math.nan for d in diffs]}


# The one draw count of every paired comparison: the report's (EvalConfig.n_boot) and the gate's
# (RegisterConfig.n_boot) default to it, so that on the same per-query table both give the same interval.
PAIRED_N_BOOT = 1000


def paired_by_type(per_query: pd.DataFrame, model: str, reference: str, metric: str, *,
                   n_boot: int = PAIRED_N_BOOT, alpha: float = 0.05, seed: int = 0) -> dict[str, dict]:
    """``model - reference`` in ``metric`` on the queries both answered, overall and per query type: the one
    statistic behind the report's paired differences (:func:`rerec.eval.evaluate.paired_differences`) and the
    promotion gate (:func:`rerec.registry.register.paired_comparison`).

    ``per_query``: one row per (model, query) with ``model``, ``query_id``, ``type`` and ``metric``. A query
    counts when both models have a row of it with a finite ``metric``. Per type: :func:`paired_difference`.
    Overall (``"all"``): the mean of every per-query difference, its interval from
    :func:`pooled_paired_difference` with one stratum per query type, because the evaluation subset is drawn
    per type (``max_queries_per_type``), so every bootstrap draw keeps each type's count. Types come in
    :data:`rerec.data.schema.QUERY_TYPES` order, then any other in sorted order, each drawn with the same
    ``seed``.

    Returns ``{"all": cell, type: cell, ...}``; a cell is ``{"diff", "low", "high", "n", "separated",
    "model_score", "reference_score"}`` (each model's mean on those queries); with no query in common
    ``"all"`` is the only key, with ``n`` 0 and None values.
    """
    from rerec.data.schema import QUERY_TYPES

    a = per_query.loc[per_query["model"] == model, ["query_id", "type", metric]]
    b = per_query.loc[per_query["model"] == reference, ["query_id", "type", metric]]
    both = a.merge(b, on=["query_id", "type"], suffixes=("_m", "_r"))
    both = both.dropna(subset=[f"{metric}_m", f"{metric}_r"])
    present = set(both["type"])
    types = [t for t in QUERY_TYPES if t in present] + sorted(present - set(QUERY_TYPES))
    by_type, strata = {}, []
    for t in types:
        g = both[both["type"] == t]
        x, y = g[f"{metric}_m"].to_numpy(float), g[f"{metric}_r"].to_numpy(float)
        strata.append((x, y))
        by_type[str(t)] = _paired_cell(paired_difference(x, y, n_boot=n_boot, alpha=alpha, seed=seed), x, y)
    pooled = pooled_paired_difference(strata, n_boot=n_boot, alpha=alpha, seed=seed)
    x, y = both[f"{metric}_m"].to_numpy(float), both[f"{metric}_r"].to_numpy(float)
    return {"all": _paired_cell(pooled, x, y), **by_type}


def _paired_cell(result: dict, a: np.ndarray, b: np.ndarray) -> dict:
    if not len(a):
        return {"diff": None, "low": None, "high": None, "n": 0, "separated": False,
                "model_score": None, "reference_score": None}
    return {"diff": result["diff"], "low": result["low"], "high": result["high"], "n": int(len(a)),
            "separated": bool(result["separated"]), "model_score": float(np.mean(a)),
            "reference_score": float(np.mean(b))}


def metric_names(ks: Sequence[int] = (5, 10)) -> list[str]:
    """Every per-query metric of :func:`query_metrics`, in its order."""
    return ["acc@1", *[f"{m}@{k}" for k in ks for m in ("ndcg", "recall")], "mrr", "parsed"]


def aggregate(per_query: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], n_boot: int = 1000,
              alpha: float = 0.05, seed: int = 0) -> list[dict]:
    """Mean and bootstrap CI of each metric per group.

    ``per_query`` has one row per (model, query) with the grouping columns and the metric columns.
    Returns one dict per group: the group keys, ``n``, and for each metric ``m``: ``m`` (mean),
    ``m_low``, ``m_high``. Groups come in sorted order; the seed is the same for every group so that
    intervals are reproducible run to run.
    """
    rows = []
    for keys, group in per_query.groupby(list(by), sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row: dict = {name: _plain(key) for name, key in zip(by, keys, strict=True)}
        row["n"] = int(len(group))
        for m in metrics:
            values = group[m].to_numpy(dtype=float)
            low, high = bootstrap_ci(values, n_boot=n_boot, alpha=alpha, seed=seed)
            row[m], row[f"{m}_low"], row[f"{m}_high"] = float(values.mean()), low, high
        rows.append(row)
    return rows


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars, so report.json stays plain JSON."""
    return value.item() if isinstance(value, np.generic) else value
