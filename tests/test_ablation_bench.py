"""bench/ablation.py's arms: ablation switches and named variants, with the fix named for a bad one."""

import pytest

from bench.ablation import ARM_SETS, arm_fields, check_variants
from rerec.errors import ConfigError


def test_arms_are_switches_or_named_variants():
    variants = check_variants({"rerec_probe1": {"curriculum": {"probe_every": 1, "probe_fraction": 0.5}},
                               "plain_lr": {"ablation": "plain_grpo", "lr": 1e-4}})
    assert arm_fields("none", variants) == ("rerec", {"ablation": "none"})
    assert arm_fields("no_qas", variants) == ("no_qas", {"ablation": "no_qas"})
    # a variant is ReRec unless it sets its own ablation switch
    assert arm_fields("rerec_probe1", variants) == ("rerec_probe1", {
        "ablation": "none", "curriculum": {"probe_every": 1, "probe_fraction": 0.5}})
    assert arm_fields("plain_lr", variants)[1] == {"ablation": "plain_grpo", "lr": 1e-4}
    # built-in: the reward with the paper's weights
    assert arm_fields("rerec_paper_weights", {}) == ("rerec_paper_weights", {"ablation": "none",
                                                                             "reward": {"weights": "paper"}})
    with pytest.raises(ConfigError, match="unknown arm 'nonee'.*--variants"):
        arm_fields("nonee", variants)


def test_arm_configs_nest_on_the_shared_config():
    """A variant changes the nested options it names and keeps the shared ones; the weights arm set
    resolves to plain GRPO, ReRec with our weights and ReRec with the paper's."""
    from rerec.config import config_with
    from rerec.train.curriculum import CurriculumConfig
    from rerec.train.rft import RFTConfig

    base = RFTConfig(profile="tiny", steps=3, curriculum=CurriculumConfig(tau=0.3, min_active=1))
    variants = check_variants({"rerec_probe1": {"curriculum": {"probe_every": 1}}})
    probe = config_with(base, arm_fields("rerec_probe1", variants)[1]).resolved()
    assert (probe.curriculum.probe_every, probe.curriculum.tau, probe.curriculum.min_active, probe.steps) == (1, 0.3, 1, 3)
    resolved = {arm_fields(a, {})[0]: config_with(base, arm_fields(a, {})[1]).resolved() for a in ARM_SETS["weights"]}
    assert list(resolved) == ["plain_grpo", "rerec", "rerec_paper_weights"]
    plain, rerec, paper = resolved.values()
    assert (plain.advantage.estimator, plain.curriculum.enabled, plain.reward.use_qas) == ("grpo", False, False)
    assert (rerec.advantage.estimator, rerec.reward.weights, rerec.reward.w_query, rerec.reward.w_format) == \
        ("raae", "rerec", 0.5, 1.0)
    assert (paper.advantage.estimator, paper.reward.weights, paper.reward.w_query, paper.reward.w_format,
            paper.reward.format_bonus) == ("raae", "paper", 0.01, 0.1, 0.5)
    assert paper.curriculum.tau == 0.3  # the shared nested options stay
    with pytest.raises(ConfigError, match=r"arm x: reward: unknown option\(s\) wieghts.*Did you mean 'weights'"):
        config_with(base, {"reward": {"wieghts": "paper"}}, where="arm x")


@pytest.mark.parametrize("variants, message", [
    ({"rerec": {"curriculum": {"tau": 0.1}}}, "rerec already name"),
    ({"rerec_paper_weights": {}}, "rerec_paper_weights already name"),
    ({"no_pas": {}}, "no_pas already name"),
    ({"a/b": {}}, "names the arm's output folder"),
    ([1], "expected an object of named arms"),
    ({"v": 0.1}, "expected an object of named arms"),
])
def test_bad_variants_name_the_fix(variants, message):
    with pytest.raises(ConfigError, match=message):
        check_variants(variants)
