"""NDCG/Recall/Hit on ordered answer lists, against hand-computed values."""

import math

import pytest

from rerec.reward.metrics import hit_at_k, ndcg_at_k, recall_at_k


def test_relevant_first_is_one():
    assert ndcg_at_k(["a", "b"], {"a"}, 10) == 1.0


def test_relevant_at_rank_2():
    assert ndcg_at_k(["x", "a", "y"], {"a"}, 10) == pytest.approx(1 / math.log2(3))


def test_order_matters_unlike_a_set():
    # the reference code's set() would score these two lists the same
    assert ndcg_at_k(["a", "x"], {"a"}, 2) > ndcg_at_k(["x", "a"], {"a"}, 2)


def test_two_relevant_hand_computed():
    # relevant at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    value = ndcg_at_k(["a", "x", "b"], ["a", "b"], 3)
    assert value == pytest.approx(1.5 / (1 + 1 / math.log2(3)))


def test_cut_at_k():
    assert ndcg_at_k(["x", "a"], {"a"}, 1) == 0.0
    assert recall_at_k(["x", "a"], {"a"}, 1) == 0.0
    assert hit_at_k(["x", "a"], {"a"}, 1) == 0.0
    assert hit_at_k(["x", "a"], {"a"}, 2) == 1.0


def test_repeats_count_once_at_first_position_and_keep_their_slot():
    # "a" repeated: counted once at rank 1; "b" stays at rank 3
    assert ndcg_at_k(["a", "a", "b"], ["a", "b"], 3) == pytest.approx(ndcg_at_k(["a", "x", "b"], ["a", "b"], 3))
    assert ndcg_at_k(["a", "a", "a"], ["a"], 3) == 1.0
    assert recall_at_k(["a", "a"], ["a", "b"], 2) == 0.5


def test_none_entries_occupy_a_slot():
    assert ndcg_at_k([None, "a"], {"a"}, 2) == pytest.approx(1 / math.log2(3))
    assert hit_at_k([None], {"a"}, 1) == 0.0


def test_idcg_uses_min_of_relevant_and_k():
    # 3 relevant, k = 2: IDCG = 1 + 1/log2(3); one hit at rank 1 -> 1 / IDCG
    assert ndcg_at_k(["a"], ["a", "b", "c"], 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_recall_fraction():
    assert recall_at_k(["a", "x", "c"], ["a", "b", "c", "d"], 3) == 0.5


@pytest.mark.parametrize("fn", [ndcg_at_k, recall_at_k, hit_at_k])
def test_empty_inputs_are_zero(fn):
    assert fn([], {"a"}, 5) == 0.0
    assert fn(["a"], set(), 5) == 0.0
    assert fn(["a"], {"a"}, 0) == 0.0


def test_long_list_beyond_cached_discounts():
    ranked = [str(i) for i in range(200)]
    assert ndcg_at_k(ranked, {"150"}, 200) == pytest.approx(1 / math.log2(152))
