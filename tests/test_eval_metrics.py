"""Ranking metrics against hand-computed cases, aggregation and bootstrap intervals."""

import math

import numpy as np
import pandas as pd
import pytest

from rerec.eval.metrics import (
    acc_at_1,
    aggregate,
    auto_ks,
    bootstrap_ci,
    metric_names,
    metrics_at_depth,
    ndcg_at_k,
    paired_difference,
    pooled_paired_difference,
    query_metrics,
    ranking_ks,
    recall_at_k,
    reciprocal_rank,
)


def test_acc_at_1():
    assert acc_at_1(["a", "b"], ["a"]) == 1.0
    assert acc_at_1(["b", "a"], ["a"]) == 0.0
    assert acc_at_1([], ["a"]) == 0.0


def test_ndcg_hand_computed():
    # positive at rank 3: DCG = 1/log2(4) = 0.5, IDCG = 1
    assert ndcg_at_k(["x", "y", "a", "z"], ["a"], 5) == pytest.approx(0.5)
    # beyond K -> 0
    assert ndcg_at_k(["x", "y", "a"], ["a"], 2) == 0.0
    # rank 2: 1/log2(3)
    assert ndcg_at_k(["x", "a"], ["a"], 10) == pytest.approx(1 / math.log2(3))
    # two positives at ranks 1 and 3, K=3: (1 + 0.5) / (1 + 1/log2(3))
    assert ndcg_at_k(["a", "x", "b"], ["a", "b"], 3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # NDCG@1 equals Acc@1 with one positive
    for ranked in (["a", "b"], ["b", "a"], []):
        assert ndcg_at_k(ranked, ["a"], 1) == acc_at_1(ranked, ["a"])


def test_ndcg_keeps_order_and_counts_duplicates_once():
    assert ndcg_at_k(["a", "x"], ["a"], 2) > ndcg_at_k(["x", "a"], ["a"], 2)
    # repeating an item never helps: copies take places and score nothing
    assert ndcg_at_k(["x", "x", "a"], ["a"], 2) == 0.0
    assert ndcg_at_k(["a", "a"], ["a", "b"], 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # an unmatched answer (None) takes a place
    assert ndcg_at_k([None, "a"], ["a"], 2) == pytest.approx(1 / math.log2(3))
    assert acc_at_1([None, "a"], ["a"]) == 0.0


def test_recall():
    assert recall_at_k(["a", "x", "b"], ["a", "b"], 2) == 0.5
    assert recall_at_k(["a", "x", "b"], ["a", "b"], 3) == 1.0
    assert recall_at_k([], ["a"], 5) == 0.0


def test_query_metrics_keys():
    m = query_metrics(["x", "a"], ["a"], ks=(1, 5), parsed=False)
    assert list(m) == metric_names((1, 5))
    assert m["acc@1"] == 0.0 and m["recall@5"] == 1.0 and m["mrr"] == 0.5 and m["parsed"] == 0.0


def test_bootstrap_ci_constant_and_seeded():
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    low, high = bootstrap_ci(np.r_[np.zeros(50), np.ones(50)], n_boot=2000, seed=3)
    assert low < 0.5 < high
    assert 0.35 < low and high < 0.65  # sd of the mean is 0.05
    assert bootstrap_ci([0, 1, 1, 0, 1], seed=7) == bootstrap_ci([0, 1, 1, 0, 1], seed=7)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_paired_difference_separates_only_when_the_interval_excludes_zero():
    """Two models on the same 100 queries: the verdict follows the per-query differences."""
    same = paired_difference([1, 0] * 50, [1, 0] * 50)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0, "separated": False}
    # a wins 20 queries and loses none: +0.2, and every resample is >= 0 with most > 0
    wins = paired_difference([1] * 20 + [0] * 80, [0] * 100)
    assert wins["diff"] == pytest.approx(0.2) and wins["low"] > 0.1 and wins["separated"]
    # 3 wins and 2 losses: +0.01, an interval around 0
    close = paired_difference([1, 1, 1, 0, 0] + [0] * 95, [0, 0, 0, 1, 1] + [0] * 95)
    assert close["diff"] == pytest.approx(0.01) and close["low"] < 0 < close["high"] and not close["separated"]
    # worse on every differing query: separated below 0
    assert paired_difference([0] * 30 + [1] * 70, [1] * 100)["high"] < 0
    assert paired_difference([1, 0], [0, 0])["diff"] == 0.5
    with pytest.raises(ValueError, match="same queries"):
        paired_difference([1, 0, 1], [1, 0])


def test_paired_difference_interval_is_the_exact_bootstrap_quantile():
    """With d = [1]*5 + [0]*5 a bootstrap mean is X/10, X ~ Binomial(10, 1/2): P(X <= 1) = 0.011 and
    P(X <= 2) = 0.055, so the 2.5% quantile is 0.2 and, by symmetry, the 97.5% one 0.8. With d = [+1, -1]*5
    the mean is 2X/10 - 1: [-0.6, +0.6]. With d = [1, 1, 0, 0], X ~ Binomial(4, 1/2) and P(X = 0) = 0.0625,
    so [0, 1]. 20,000 draws put each empirical quantile on that value."""
    half = paired_difference([1] * 5 + [0] * 5, [0] * 10, n_boot=20000)
    assert half == {"diff": 0.5, "low": pytest.approx(0.2), "high": pytest.approx(0.8), "separated": True}
    even = paired_difference([1, 0] * 5, [0, 1] * 5, n_boot=20000)
    assert even == {"diff": 0.0, "low": pytest.approx(-0.6), "high": pytest.approx(0.6), "separated": False}
    assert paired_difference([1, 1, 0, 1], [0, 0, 0, 1], n_boot=20000) == {
        "diff": 0.5, "low": 0.0, "high": 1.0, "separated": False}


def test_pooled_paired_difference_resamples_within_each_run():
    """Two seeds: a wins both queries of one run and ties both of the other. Pooled, +0.5; resampled within
    each run, every draw keeps one run's +2 and the other's 0, so the interval is the point, where the four
    differences resampled together give [0, 1] (previous test)."""
    pooled = pooled_paired_difference([([1, 1], [0, 0]), ([0, 1], [0, 1])])
    assert pooled == {"diff": 0.5, "low": 0.5, "high": 0.5, "separated": True, "n": 4, "per_stratum": [1.0, 0.0]}
    # unequal runs weigh by their queries: (3 * 1 + 1 * 0) / 4
    assert pooled_paired_difference([([1, 1, 1], [0, 0, 0]), ([0], [0])])["diff"] == 0.75
    # a run of d = [1]*5 + [0]*5 beside a run of ten ties: the draw's sum is X ~ Binomial(10, 1/2) over 20
    # queries, so [2/20, 8/20] around (5 + 0) / 20
    two = pooled_paired_difference([([1] * 5 + [0] * 5, [0] * 10), ([0] * 10, [0] * 10)], n_boot=20000)
    assert two == {"diff": 0.25, "low": pytest.approx(0.1), "high": pytest.approx(0.4), "separated": True,
                   "n": 20, "per_stratum": [0.5, 0.0]}


def test_pooled_paired_difference_by_hand_one_and_two_runs():
    """A run losing 3 of 100 queries: a draw's losses X ~ Binomial(100, 0.03); P(X = 0) = 0.048 > 0.025, so the
    high end is 0 (not separated), and P(X <= 6) = 0.969, P(X <= 7) = 0.989 put the low end at -0.07. Two such
    runs: X ~ Binomial(200, 0.03), P(X <= 1) = 0.016, P(X <= 2) = 0.059 -> high -2/200; P(X <= 10) = 0.960,
    P(X <= 11) = 0.982 -> low -11/200: separated together, not alone."""
    worse = [0, 0, 0] + [1] * 97
    alone = pooled_paired_difference([(worse, [1] * 100)], n_boot=20000)
    assert alone == {"diff": pytest.approx(-0.03), "low": pytest.approx(-0.07), "high": pytest.approx(0.0),
                     "separated": False, "n": 100, "per_stratum": [pytest.approx(-0.03)]}
    both = pooled_paired_difference([(worse, [1] * 100), (worse, [1] * 100)], n_boot=20000)
    assert both["diff"] == pytest.approx(-0.03) and both["n"] == 200 and both["separated"]
    assert (both["low"], both["high"]) == (pytest.approx(-0.055), pytest.approx(-0.01))
    with pytest.raises(ValueError, match="stratum 1 pairs 2 scores with 1"):
        pooled_paired_difference([([1], [0]), ([1, 0], [0])])
    assert math.isnan(pooled_paired_difference([])["diff"])


def test_reciprocal_rank():
    assert reciprocal_rank(["a", "b"], ["a"]) == 1.0
    assert reciprocal_rank(["x", "y", "a"], ["a"]) == pytest.approx(1 / 3)
    assert reciprocal_rank([None, "a"], ["a"]) == 0.5  # a miss keeps its place
    assert reciprocal_rank(["x"], ["a"]) == 0.0 and reciprocal_rank([], ["a"]) == 0.0
    assert reciprocal_rank(["x", "b", "a"], ["a", "b"]) == 0.5  # the first positive counts


def test_ranking_ks_drop_depths_a_full_ranking_cannot_miss():
    """At 4 candidates a full ranking has Recall@5 = Recall@10 = 1 for every ranker: dropped."""
    assert ranking_ks([5, 10], 4) == ([], [5, 10])
    assert ranking_ks([1, 2, 3, 4, 5], 4) == ([2, 3], [1, 4, 5])  # K = 1 is Acc@1, K = 4 covers the list
    assert ranking_ks([10, 5, 5], 20) == ([5, 10], [])
    assert ranking_ks(None, 4) == ([2, 3], []) and ranking_ks(None, 20) == ([5, 10], [])
    assert auto_ks(8) == [3, 5] and auto_ks(2) == [] and auto_ks(3) == [2]


def test_metrics_at_depth():
    """A full ranker is judged on everything; a top-1 LLM on Acc@1 alone; a top-2 LLM up to K = 2."""
    assert metrics_at_depth([2, 3], None, 4) == ["acc@1", "ndcg@2", "recall@2", "ndcg@3", "recall@3", "mrr", "parsed"]
    assert metrics_at_depth([2, 3], 1, 4) == ["acc@1", "parsed"]
    assert metrics_at_depth([2, 3], 2, 4) == ["acc@1", "ndcg@2", "recall@2", "parsed"]
    assert metrics_at_depth([2, 3], 4, 4) == metrics_at_depth([2, 3], None, 4)


def test_aggregate_groups():
    df = pd.DataFrame({
        "model": ["m"] * 4,
        "type": ["explicit", "explicit", "implicit", "implicit"],
        "n_conditions": [1, 2, 1, 1],
        "acc@1": [1.0, 0.0, 1.0, 1.0],
    })
    rows = aggregate(df, ["model", "type"], ["acc@1"], n_boot=200)
    assert [(r["type"], r["n"], r["acc@1"]) for r in rows] == [("explicit", 2, 0.5), ("implicit", 2, 1.0)]
    assert rows[0]["acc@1_low"] <= 0.5 <= rows[0]["acc@1_high"]
    rows = aggregate(df, ["model", "n_conditions"], ["acc@1"], n_boot=200)
    assert [(r["n_conditions"], r["n"]) for r in rows] == [(1, 3), (2, 1)]
    assert isinstance(rows[0]["n_conditions"], int)
