"""experiments/taste_rules.py: the z-score that adds the two taste signals (hand-computed cases)."""

import math
from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
taste_rules = load_script(ROOT / "experiments" / "taste_rules.py", "taste_rules")


def test_zscore_standardises_among_the_shown_candidates():
    # mean 2, population std sqrt(2/3)
    z = taste_rules.zscore([1.0, 2.0, 3.0])
    s = math.sqrt(2 / 3)
    assert [round(v, 6) for v in z] == [round(-1 / s, 6), 0.0, round(1 / s, 6)]


def test_zscore_of_equal_values_is_zero_and_a_missing_score_ranks_last():
    assert list(taste_rules.zscore([0.5, 0.5, 0.5])) == [0.0, 0.0, 0.0]
    # -inf (no LightGCN embedding): standardised over the finite scores, then -3
    assert list(taste_rules.zscore([2.0, -math.inf, 4.0])) == [-1.0, -3.0, 1.0]
    assert list(taste_rules.zscore([-math.inf, -math.inf])) == [0.0, 0.0]
