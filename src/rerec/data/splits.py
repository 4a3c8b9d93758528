"""Train/val/test splits of the queries, and the leakage rules they keep (docs/data.md, "Splits").

A query's split is the split of its (user, positive) pair. Every pair a user liked is given a split
*before* any query is built (:func:`assign_pair_splits`: a seeded shuffle of all liked pairs, cut at the
fractions), and the generator then never shows a held-out (val or test) pair of a user in any of that
user's prompts: not in a history, not as an item the request names, not as a negative. So

- all queries answered by the same (user, item) land in the same split;
- no val or test positive appears in any query's history or request for that user, train queries
  included, whatever ``max_history`` a profile shows;
- build-graphs leaves the val and test (user, positive) pairs out of the interaction graph, so LightGCN
  and the collaborative baselines never train on what is evaluated.

:func:`audit_queries` measures the rules on any query table (user-supplied ones included, where they
are reported, not enforced).
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pandas as pd

from rerec.data.schema import SPLITS
from rerec.errors import ConfigError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def check_fractions(fractions: tuple[float, ...]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ConfigError(f"split fractions {fractions} must be three non-negative numbers summing to 1. "
                          "Fix: pass e.g. --train-fraction 0.8 --val-fraction 0.1 --test-fraction 0.1.")
    return fractions  # type: ignore[return-value]


def assign_pair_splits(n_pairs: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                       seed: int = 0) -> list[str]:
    """The split of each of ``n_pairs`` (user, liked item) pairs, in the caller's (deterministic) order.

    A seeded permutation of the pairs; the first ``round(f_train * n)`` are train, the next
    ``round((f_train + f_val) * n) - round(f_train * n)`` val, the rest test. Its random stream is its
    own (``[seed, 7]``), so query counts do not change it.
    """
    fractions = check_fractions(fractions)
    if n_pairs <= 0:
        return []
    bounds = np.round(np.cumsum(fractions)[:2] * n_pairs).astype(np.int64)
    which = np.searchsorted(bounds, np.arange(n_pairs), side="right")
    out = np.empty(n_pairs, dtype=np.int64)
    out[np.random.default_rng([seed, 7]).permutation(n_pairs)] = which
    return np.asarray(SPLITS, dtype=object)[out].tolist()


def audit_queries(queries: pd.DataFrame, interactions: pd.DataFrame) -> dict:
    """Counts of the leakage rules' violations in a query table.

    - ``negatives_in_user_items``: negatives (candidates that are not positives) the query's user
      interacted with, of ``negatives`` in all;
    - ``heldout_in_history``: val/test queries whose positive is in another query's ``history`` for the
      same user (``heldout_in_train_history``: in a train query's), of ``heldout_queries``;
    - ``heldout_named``: val/test queries whose positive another query of that user names as ``via``.
    """
    user_items: dict[str, set[str]] = defaultdict(set)
    for user, item in zip(interactions["user_id"].astype(str), interactions["item_id"].astype(str), strict=True):
        user_items[user].add(item)
    shown: dict[str, list[tuple[str, str, set[str], set[str]]]] = defaultdict(list)
    has_history = "history" in queries
    for row in queries.itertuples(index=False):
        vias = {str(c["via"]) for c in json.loads(row.conditions or "[]") if c.get("via") is not None}
        history = {str(h) for h in row.history} if has_history else set()
        shown[str(row.user_id)].append((str(row.query_id), str(row.split), history, vias))
    out = dict.fromkeys(("negatives", "negatives_in_user_items", "heldout_queries", "heldout_in_history",
                         "heldout_in_train_history", "heldout_named"), 0)
    for row in queries.itertuples(index=False):
        user, positives = str(row.user_id), {str(p) for p in row.positives}
        negatives = [str(c) for c in row.candidates if str(c) not in positives]
        out["negatives"] += len(negatives)
        out["negatives_in_user_items"] += sum(c in user_items.get(user, ()) for c in negatives)
        if row.split in ("val", "test"):
            others = [s for s in shown[user] if s[0] != str(row.query_id)] if user else []
            out["heldout_queries"] += 1
            out["heldout_in_history"] += any(positives & h for _, _, h, _ in others)
            out["heldout_in_train_history"] += any(positives & h for _, sp, h, _ in others if sp == "train")
            out["heldout_named"] += any(positives & v for _, _, _, v in others)
    return out
