"""rerec.config with nested config dataclasses (``--<group>-<field>`` flags, nested JSON objects), and the
nested RFT config built on it (ablation arms, flags, pipeline-parameter JSON)."""

import argparse
import json
from dataclasses import dataclass, field

import pytest

from rerec.config import (
    add_dataclass_arguments,
    check_minimums,
    config_with,
    dataclass_from_args,
    dataclass_from_dict,
    merge_config_dicts,
)
from rerec.errors import ConfigError


@dataclass
class Inner:
    rate: float = field(default=0.5, metadata={"help": "A rate."})
    mode: str = field(default="a", metadata={"help": "A mode.", "choices": ("a", "b")})
    on: bool = field(default=True, metadata={"help": "A switch."})
    limit: int | None = field(default=None, metadata={"help": "A limit."})


@dataclass
class Outer:
    seed: int = field(default=0, metadata={"help": "Seed."})
    inner: Inner = field(default_factory=Inner, metadata={"help": "The inner part."})


def parse(argv):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Outer)
    return dataclass_from_args(Outer, parser.parse_args(argv))


def test_nested_flags_round_trip():
    assert parse([]) == Outer()
    cfg = parse(["--seed", "3", "--inner-rate", "0.25", "--inner-mode", "b", "--inner-on", "false",
                 "--inner-limit", "7"])
    assert cfg == Outer(seed=3, inner=Inner(rate=0.25, mode="b", on=False, limit=7))
    with pytest.raises(SystemExit):
        parse(["--inner-mode", "c"])  # choices hold for nested flags too
    with pytest.raises(SystemExit):
        parse(["--rate", "0.1"])  # no flat alias: each knob has one flag


def test_nested_flags_are_grouped_and_helped():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Outer)
    text = parser.format_help()
    assert "inner (Inner, flags --inner-*):" in text and "--inner-rate RATE" in text
    assert "A rate. (default: 0.5)" in text


def test_nested_json_fills_defaults_and_accepts_instances():
    cfg = dataclass_from_dict(Outer, {"seed": 1, "inner": {"rate": 1}})
    assert cfg == Outer(seed=1, inner=Inner(rate=1.0)) and isinstance(cfg.inner.rate, float)
    assert dataclass_from_dict(Outer, {"inner": Inner(mode="b")}).inner.mode == "b"
    assert dataclass_from_dict(Outer, {}) == Outer()


@pytest.mark.parametrize("values, message", [
    ({"inner": {"rte": 0.1}}, "config: inner: unknown option(s) rte for Inner. Did you mean 'rate' for 'rte'?"),
    ({"rate": 0.1}, """Did you mean {"inner": {"rate": ...}} for 'rate'?"""),
    ({"inner": {"rate": "0.1"}}, "config: inner: 'rate' must be float, got '0.1'"),
    ({"inner": {"mode": "c"}}, "'mode' must be one of a, b, got 'c'"),
    ({"inner": {"on": "yes"}}, "'on' must be bool"),
    ({"inner": 0.5}, "'inner' must be an object of Inner options"),
    ({"inner": ["rate"]}, "'inner' must be an object of Inner options"),
])
def test_bad_nested_values_are_refused_with_a_fix(values, message):
    with pytest.raises(ConfigError) as info:
        dataclass_from_dict(Outer, values)
    assert message in str(info.value) and "Fix" in str(info.value)


def test_merge_and_config_with_keep_the_other_nested_options():
    base = {"seed": 1, "inner": {"rate": 0.2, "mode": "b"}}
    merged = merge_config_dicts(base, {"inner": {"rate": 0.3}})
    assert merged == {"seed": 1, "inner": {"rate": 0.3, "mode": "b"}}
    assert base == {"seed": 1, "inner": {"rate": 0.2, "mode": "b"}}  # inputs unchanged
    cfg = config_with(Outer(seed=1, inner=Inner(rate=0.2, mode="b")), {"inner": {"on": False}})
    assert cfg == Outer(seed=1, inner=Inner(rate=0.2, mode="b", on=False))
    with pytest.raises(ConfigError, match="arm: inner: 'limit' must be int"):
        config_with(Outer(), {"inner": {"limit": 1.5}}, where="arm")


def test_check_minimums_names_nested_flags():
    with pytest.raises(ConfigError, match=r"inner.limit must be >= 0, got -1. Fix: pass --inner-limit \(>= 0\)"):
        check_minimums(Inner(limit=-1), {"limit": 0}, prefix="inner.")


# ------------------------------------------------------------------------------------------ the RFT config
def rft_parser():
    from rerec.train.rft import add_cli_arguments

    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser


def test_rft_flags_of_the_nested_configs():
    from rerec.train.rft import RFTConfig

    args = rft_parser().parse_args(["--data", "d", "--out", "o", "--reward", "r", "--reward-weights", "paper",
                                    "--reward-w-query", "0.2", "--advantage-estimator", "raae_paper",
                                    "--advantage-w-penalty", "0.1", "--advantage-sigma-floor", "0.2",
                                    "--curriculum-tau", "0.1", "--curriculum-enabled", "false", "--steps", "5"])
    cfg = dataclass_from_args(RFTConfig, args)
    assert str(args.reward) == "r"  # the stage's --reward folder is not the reward config
    assert (cfg.steps, cfg.reward.weights, cfg.reward.w_query, cfg.reward.w_pref) == (5, "paper", 0.2, None)
    assert (cfg.advantage.estimator, cfg.advantage.w_penalty, cfg.advantage.sigma_floor) == ("raae_paper", 0.1, 0.2)
    assert (cfg.curriculum.tau, cfg.curriculum.enabled) == (0.1, False)
    assert cfg.resolved().reward.w_pref == 0.01
    for old in ("--w-penalty", "--tau", "--use-curriculum", "--use-qas", "--uniform-groups"):
        with pytest.raises(SystemExit):
            rft_parser().parse_args(["--data", "d", "--out", "o", old, "1"])


@pytest.mark.parametrize("ablation, estimator, curriculum, qas, pas", [
    ("none", "raae", True, True, True),
    ("plain_grpo", "grpo", False, False, False),
    ("no_raae", "grpo", True, True, True),
    ("no_curriculum", "raae", False, True, True),
    ("no_qas", "raae", True, False, True),
    ("no_pas", "raae", True, True, False),
])
def test_ablation_arms_switch_the_nested_options(ablation, estimator, curriculum, qas, pas):
    from rerec.reward.scorer import RewardConfig
    from rerec.train.rft import RFTConfig

    cfg = RFTConfig(profile="tiny", ablation=ablation, reward=RewardConfig(weights="paper")).resolved()
    assert (cfg.advantage.estimator, cfg.curriculum.enabled, cfg.reward.use_qas, cfg.reward.use_pas) == \
        (estimator, curriculum, qas, pas)
    assert (cfg.reward.weights, cfg.reward.w_query, cfg.reward.w_format) == ("paper", 0.01, 0.1)  # kept


def test_rft_pipeline_json_nests_and_refuses_the_old_flat_names():
    from rerec.pipeline.component_glue import stage_config
    from rerec.train.rft import rft

    cfg = stage_config(rft, json.dumps({"steps": 30, "lr": 5e-5, "ablation": "none", "reward": {"weights": "paper"},
                                        "curriculum": {"probe_every": 1}}))
    assert (cfg.steps, cfg.reward.weights, cfg.curriculum.probe_every, cfg.curriculum.tau) == (30, "paper", 1, 0.2)
    with pytest.raises(ConfigError, match=r"""Did you mean \{"curriculum": \{"tau": \.\.\.\}\} for 'tau'"""):
        stage_config(rft, '{"tau": 0.1}')
    with pytest.raises(ConfigError, match="'advantage' must be an object of AdvantageConfig options"):
        stage_config(rft, '{"advantage": "grpo"}')
    with pytest.raises(ConfigError, match="rft config: reward: 'weights' must be one of rerec, paper"):
        stage_config(rft, '{"reward": {"weights": "ours"}}')


def test_rft_nested_minimums_name_the_nested_flag():
    from rerec.train.curriculum import CurriculumConfig
    from rerec.train.rft import RFTConfig

    with pytest.raises(ConfigError, match=r"--curriculum-probe-every \(>= 0\)"):
        RFTConfig(profile="tiny", curriculum=CurriculumConfig(probe_every=-1)).resolved()


@dataclass
class Renamed:
    context_mode: str = field(default="evidence", metadata={"help": "Context.", "choices": ("evidence", "titles"),
                                                            "old_names": ("mode",)})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Limit.", "old_names": ("max_completion_tokens",)})


def test_a_renamed_option_still_reads_its_old_name_and_says_so(capsys):
    """A knob renamed so that every stage calls it the same (``old_names``): a config under the old name is read
    with a FutureWarning, the old flag with a note and hidden from --help; both names at once are refused."""
    with pytest.warns(FutureWarning, match="the x config: 'mode' is deprecated and will be removed; use "
                                           "'context_mode'"):
        assert dataclass_from_dict(Renamed, {"mode": "titles"}, where="the x config") == Renamed(context_mode="titles")
    with pytest.warns(FutureWarning, match="'max_completion_tokens' is deprecated"):
        assert config_with(Renamed(max_new_tokens=5), {"max_completion_tokens": 9}).max_new_tokens == 9
    with pytest.raises(ConfigError, match="'mode' and 'context_mode' are one option"):
        dataclass_from_dict(Renamed, {"mode": "titles", "context_mode": "evidence"})
    with pytest.warns(FutureWarning), pytest.raises(ConfigError, match="'context_mode' must be one of evidence, titles"):
        dataclass_from_dict(Renamed, {"mode": "graph"})

    parser = argparse.ArgumentParser(prog="rerec x")
    add_dataclass_arguments(parser, Renamed)
    assert "--mode" not in parser.format_help() and "--max-completion-tokens" not in parser.format_help()
    args = parser.parse_args(["--mode", "titles", "--max-completion-tokens", "7"])
    assert dataclass_from_args(Renamed, args) == Renamed(context_mode="titles", max_new_tokens=7)
    err = capsys.readouterr().err
    assert "rerec x: --mode is deprecated and will be removed; use --context-mode (same values)." in err
    assert "--max-completion-tokens is deprecated and will be removed; use --max-new-tokens" in err
    assert dataclass_from_args(Renamed, parser.parse_args([])) == Renamed()
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "graph"])  # the old flag takes the same values


def test_the_stages_renamed_knobs_keep_their_old_names():
    """``mode`` (evaluation, serving) and ``max_completion_tokens`` (RFT) became ``context_mode`` and
    ``max_new_tokens``, the names every stage uses; configs written with the old ones still load."""
    from rerec.eval.evaluate import EvalConfig
    from rerec.serving.recommender import ServingOverrides, ServingSettings
    from rerec.train.rft import RFTConfig
    from rerec.train.sft import SFTWarmupConfig

    for cls in (EvalConfig, RFTConfig, SFTWarmupConfig, ServingSettings, ServingOverrides):
        names = {f for f in cls.__dataclass_fields__}
        assert "context_mode" in names and "max_new_tokens" in names and not names & {"mode", "max_completion_tokens"}
    with pytest.warns(FutureWarning):
        assert dataclass_from_dict(RFTConfig, {"max_completion_tokens": 8}).max_new_tokens == 8
    with pytest.warns(FutureWarning):
        assert dataclass_from_dict(EvalConfig, {"mode": "titles"}).context_mode == "titles"
