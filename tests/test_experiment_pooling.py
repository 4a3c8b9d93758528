"""Pooling ablation runs (rerec.experiments.pooling and experiments/pool_ablation.py): arms of separate runs pair
within a seed and pool over seeds; bad runs name the fix."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rerec.errors import InputError
from rerec.experiments import pooling
from rerec.experiments.pooling import group_by_seed, load_run, pool

ROOT = Path(__file__).resolve().parents[1]


def recs(hits, types=None, prefix="q"):
    types = types or ["explicit"] * len(hits)
    return [{"query_id": f"{prefix}{i}", "type": t, "hit": float(h)} for i, (h, t) in enumerate(zip(hits, types, strict=True))]


def write_run(path, seed, records):
    path.mkdir(parents=True)
    summary = {"experiment": "ablation"} if seed is None else {"experiment": "ablation", "seed": seed}
    (path / "ablation.json").write_text(json.dumps(summary))
    (path / "records.json").write_text(json.dumps(records))
    return path


def test_arms_of_separate_runs_pair_within_a_seed_and_pool_over_seeds(tmp_path):
    types = ["explicit", "explicit", "interest", "interest"]
    # seed 0: the default arms in one run, an ablation in another; seed 1: one run with all three
    a = write_run(tmp_path / "s0a", 0, {"plain_grpo": recs([1, 1, 0, 0], types), "rerec": recs([1, 0, 0, 0], types)})
    b = write_run(tmp_path / "s0b", 0, {"no_raae": recs([1, 1, 1, 0], types)})
    c = write_run(tmp_path / "s1", 1, {"plain_grpo": recs([1, 0, 1, 0], types, "r"),
                                        "rerec": recs([0, 0, 1, 0], types, "r"),
                                        "no_raae": recs([1, 0, 1, 0], types, "r")})
    # a seed without the reference drops out of the comparison instead of failing
    d = write_run(tmp_path / "s2", 2, {"rerec": recs([1, 1], prefix="t"), "no_pas": recs([0, 1], prefix="t")})
    pooled = pool(group_by_seed([(str(r), *load_run(r)) for r in (a, b, c, d)]), "plain_grpo")
    assert list(pooled) == ["rerec", "no_raae"]
    rerec = pooled["rerec"]
    assert rerec["seeds"] == [0, 1] and rerec["all"]["n"] == 8
    assert rerec["all"]["diff"] == -0.25 and rerec["all"]["per_stratum"] == [-0.25, -0.25]
    assert rerec["all"]["acc_at_1"] == 2 / 8 and rerec["all"]["reference_acc_at_1"] == 4 / 8
    assert rerec["explicit"]["diff"] == -0.5 and rerec["interest"]["diff"] == 0.0
    assert pooled["no_raae"]["all"]["per_stratum"] == [0.25, 0.0]
    # Bonferroni over the two arms compared (no_pas, never beside the reference, is not one): alpha / 2
    bon = rerec["all"]["bonferroni"]
    assert bon["alpha"] == 0.025 and bon["low"] <= rerec["all"]["low"] and bon["high"] >= rerec["all"]["high"]

    out = tmp_path / "pooled.json"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "pool_ablation.py"), str(a), str(b), str(c),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    assert "[pool] rerec - plain_grpo: -0.250 over 8 queries of 2 seed(s)" in printed
    assert json.loads(out.read_text())["arms"]["no_raae"]["seeds"] == [0, 1]


def test_bad_runs_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="no ablation.json"):
        load_run(tmp_path)
    with pytest.raises(InputError, match='records no seed.*"seed": 0'):
        load_run(write_run(tmp_path / "old", None, {"plain_grpo": recs([1])}))
    one = (str(tmp_path / "x"), 0, {"plain_grpo": recs([1, 0]), "rerec": recs([0, 0])})
    with pytest.raises(InputError, match="'rerec' of seed 0 is in both .*x and .*y.*--variants"):
        group_by_seed([one, (str(tmp_path / "y"), 0, {"rerec": recs([1, 1])})])
    with pytest.raises(InputError, match="different validation queries"):
        group_by_seed([one, (str(tmp_path / "z"), 0, {"no_pas": recs([1, 1, 1])})])
    with pytest.raises(InputError, match="no run holds the reference arm 'plain'.*plain_grpo, rerec"):
        pool(group_by_seed([one]), "plain")


def test_a_written_run_loads_back(tmp_path):
    records = {"plain_grpo": [{"query_id": "q1", "type": "explicit", "hit": 1.0}],
               "rerec": [{"query_id": "q1", "type": "explicit", "hit": 0.0}]}
    pooling.write_run(tmp_path / "run", {"seed": 7, "split": "test"}, records)
    assert load_run(tmp_path / "run") == (7, records)


def test_seed_level_interval_by_hand():
    """Seeds' mean differences +0.03, +0.01, -0.01: mean 0.01, sd 0.02, t(0.975, 2) = 4.3027, so
    0.01 ± 4.3027 x 0.02 / sqrt(3) = 0.01 ± 0.04968."""
    import math

    from rerec.experiments.pooling import seed_level_interval

    out = seed_level_interval([0.03, 0.01, -0.01])
    half = 4.3027 * 0.02 / math.sqrt(3)
    assert out["seeds"] == 3 and math.isclose(out["mean"], 0.01) and math.isclose(out["sd"], 0.02)
    assert math.isclose(out["low"], 0.01 - half) and math.isclose(out["high"], 0.01 + half)
    assert not out["separated"]
    # two seeds: 0.055 ± 12.7062 x 0.00707 / sqrt(2) = 0.055 ± 0.0635, which holds 0; closer seeds separate
    assert not seed_level_interval([0.05, 0.06])["separated"]
    assert seed_level_interval([0.050, 0.051])["separated"]
    assert seed_level_interval([0.02]) is None and seed_level_interval([0.1, 0.2], alpha=0.1) is None
