"""bench/ablation.py's arms: ablation switches and named variants, with the fix named for a bad one."""

import pytest

from bench.ablation import arm_fields, check_variants
from rerec.errors import ConfigError


def test_arms_are_switches_or_named_variants():
    variants = check_variants({"rerec_probe1": {"probe_every": 1, "probe_fraction": 0.5},
                               "plain_lr": {"ablation": "plain_grpo", "lr": 1e-4}})
    assert arm_fields("none", variants) == ("rerec", {"ablation": "none"})
    assert arm_fields("no_qas", variants) == ("no_qas", {"ablation": "no_qas"})
    # a variant is ReRec unless it sets its own ablation switch
    assert arm_fields("rerec_probe1", variants) == ("rerec_probe1", {"ablation": "none", "probe_every": 1,
                                                                     "probe_fraction": 0.5})
    assert arm_fields("plain_lr", variants)[1] == {"ablation": "plain_grpo", "lr": 1e-4}
    with pytest.raises(ConfigError, match="unknown arm 'nonee'.*--variants"):
        arm_fields("nonee", variants)


@pytest.mark.parametrize("variants, message", [
    ({"rerec": {"tau": 0.1}}, "rerec already name"),
    ({"no_pas": {}}, "no_pas already name"),
    ({"a/b": {}}, "names the arm's output folder"),
    ([1], "expected an object of named arms"),
    ({"v": 0.1}, "expected an object of named arms"),
])
def test_bad_variants_name_the_fix(variants, message):
    with pytest.raises(ConfigError, match=message):
        check_variants(variants)
