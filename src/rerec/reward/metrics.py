"""Ranking metrics on an answer list, pure Python.

The answer list is ranked: position 1 is what the model recommends first. Unlike the ReRec
reference code, which turns the answer into a ``set()`` and so loses its order, the order is kept.
A repeated item scores only at its first position; its later copies still occupy their positions
(and score nothing), so repeating an item never helps. ``None`` entries (answer items that matched
no candidate) occupy a position and score nothing.

    DCG@k  = sum_{i=1..k} rel_i / log2(i + 1)
    IDCG@k = sum_{i=1..min(|G|, k)} 1 / log2(i + 1)
    NDCG@k = DCG@k / IDCG@k                     (0 when G is empty)
    Recall@k = |G ∩ top-k| / |G|,  Hit@k = 1[G ∩ top-k ≠ ∅]
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

# 1 / log2(i + 1) for positions i = 1.. (index 0 is position 1); extended on demand.
_DISCOUNTS: list[float] = [1.0 / math.log2(i + 2) for i in range(64)]


def _discount(position0: int) -> float:
    while position0 >= len(_DISCOUNTS):
        _DISCOUNTS.append(1.0 / math.log2(len(_DISCOUNTS) + 2))
    return _DISCOUNTS[position0]


def _hits_in_top_k(ranked: Sequence[str | None], relevant: Collection[str], k: int) -> list[int]:
    """0-based positions (< k) of the first occurrence of each relevant item."""
    seen: set[str] = set()
    positions = []
    for i, item in enumerate(ranked[:k]):
        if item is None or item in seen:
            continue
        seen.add(item)
        if item in relevant:
            positions.append(i)
    return positions


def ndcg_at_k(ranked: Sequence[str | None], relevant: Collection[str], k: int) -> float:
    """Binary-relevance NDCG@k of an ordered answer list. In [0, 1]."""
    if k <= 0 or not relevant:
        return 0.0
    dcg = sum(_discount(i) for i in _hits_in_top_k(ranked, relevant, k))
    idcg = sum(_discount(i) for i in range(min(len(relevant), k)))
    return dcg / idcg


def recall_at_k(ranked: Sequence[str | None], relevant: Collection[str], k: int) -> float:
    """Fraction of the relevant items found in the first k answers. In [0, 1]."""
    if k <= 0 or not relevant:
        return 0.0
    return len(_hits_in_top_k(ranked, relevant, k)) / len(relevant)


def hit_at_k(ranked: Sequence[str | None], relevant: Collection[str], k: int) -> float:
    """1.0 if any relevant item is among the first k answers, else 0.0."""
    if k <= 0:
        return 0.0
    return 1.0 if any(item is not None and item in relevant for item in ranked[:k]) else 0.0
