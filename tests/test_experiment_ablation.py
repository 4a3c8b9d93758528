"""The ablation experiment's arms (rerec.experiments.ablation): ablation switches and named variants, with the
fix named for a bad one; the per-query summary against the reference arm."""

import pytest

from rerec.errors import ConfigError
from rerec.experiments.ablation import ARM_SETS, arm_fields, check_variants, resolve_arms, summarise


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


def test_arm_sets_and_lists_resolve_once_each():
    assert resolve_arms("weights", {}) == ["plain_grpo", "none", "rerec_paper_weights"]
    assert resolve_arms("no_qas,v1", {"v1": {"lr": 1e-4}}) == ["no_qas", "v1"]
    with pytest.raises(ConfigError, match="names an arm twice"):
        resolve_arms("none,rerec_paper_weights,none", {})
    with pytest.raises(ConfigError, match="unknown arm 'nope'"):
        resolve_arms("plain_grpo,nope", {})


def test_summary_by_type_with_the_paired_difference():
    def records(hits):
        types = ["explicit", "explicit", "implicit", "implicit"]
        return [{"query_id": f"q{i}", "type": t, "hit": h} for i, (t, h) in enumerate(zip(types, hits, strict=True))]

    arm, ref = records([1.0, 1.0, 0.0, 1.0]), records([0.0, 1.0, 0.0, 0.0])
    alone = summarise(arm, None)
    assert list(alone) == ["explicit", "implicit", "all"]
    assert (alone["all"]["n"], alone["all"]["acc_at_1"], alone["implicit"]["acc_at_1"]) == (4, 0.75, 0.5)
    assert "diff_vs_plain" not in alone["all"]
    paired = summarise(arm, ref)
    # per query: +1, 0, 0, +1 -> mean 0.5 over all; explicit +1, 0 -> 0.5; implicit 0, +1 -> 0.5
    assert paired["all"]["diff_vs_plain"] == 0.5 and paired["explicit"]["diff_vs_plain"] == 0.5
    low, high = paired["all"]["diff_ci95"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
