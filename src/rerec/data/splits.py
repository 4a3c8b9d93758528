"""Train/val/test split of the query table, by query and seeded, with no leak of a (user, positive)
pair from evaluation into training: all queries that share ``(user_id, positive)`` land in the same
split, so a model never trains on the answer to a val/test query for the same user (DESIGN.md,
"Data"; the interaction graph excludes the val/test pairs too, see docs/interfaces.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rerec.data.schema import SPLITS
from rerec.errors import ConfigError


def split_queries(queries: pd.DataFrame, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> pd.Series:
    """The ``split`` column ("train" / "val" / "test") for ``queries``, index-aligned.

    Groups are the distinct ``(user_id, first positive)`` pairs, shuffled with ``seed``; groups are
    assigned to train until it holds ``fractions[0]`` of the queries, then to val, then to test, so
    each split's share of queries is as close to its fraction as whole groups allow.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ConfigError(f"split fractions {fractions} must be three non-negative numbers summing to 1. "
                          "Fix: pass e.g. --train-fraction 0.8 --val-fraction 0.1 --test-fraction 0.1.")
    if queries.empty:
        return pd.Series([], index=queries.index, dtype=object, name="split")
    positive = queries["positives"].map(lambda p: str(list(p)[0]) if len(p) else "")
    keys = queries["user_id"].astype(str) + "\x1f" + positive
    codes, uniques = pd.factorize(keys, sort=True)
    sizes = np.bincount(codes, minlength=len(uniques))
    order = np.random.default_rng(seed).permutation(len(uniques))
    cumulative = np.cumsum(sizes[order]) / len(queries)
    bounds = np.cumsum(fractions)[:2]
    # a group goes to the first split whose cumulative bound its midpoint has not passed
    midpoint = cumulative - sizes[order] / (2 * len(queries))
    which = np.searchsorted(bounds, midpoint, side="right")
    group_split = np.empty(len(uniques), dtype=np.int64)
    group_split[order] = which
    return pd.Series(np.asarray(SPLITS, dtype=object)[group_split[codes]], index=queries.index, name="split")
