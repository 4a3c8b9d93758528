"""Typed pipeline parameters -> stage configs (rerec.pipeline_params), by hand."""

import json

import pytest

from rerec.errors import ConfigError
from rerec.pipeline_params import (
    TrainParams,
    param_help,
    parse_overrides,
    stage_configs,
    validate_stage_configs,
)
from rerec.run_presets import STAGES, preset_configs


def test_unset_parameters_add_nothing_to_the_preset():
    configs = stage_configs(TrainParams(preset="smoke", model_name=""))
    smoke = preset_configs("smoke")
    assert {k: configs[k] for k in STAGES} == smoke
    # the arm is the final rft config with only the ablation switched
    assert configs["plain_grpo"] == {**smoke["rft"], "ablation": "plain_grpo"}
    validate_stage_configs(configs)


def test_typed_parameters_land_in_their_stage_with_the_nested_reward_contract():
    configs = stage_configs(TrainParams(preset="smoke", base_model="s3://models/qwen/", sft_steps=7, rft_steps=9,
                                        rft_lr=2e-5, reward_weights="paper", ablation="no_qas", model_name="m"))
    assert configs["sft"]["model"] == "s3://models/qwen/" and configs["sft"]["steps"] == 7
    rft = configs["rft"]
    assert (rft["steps"], rft["lr"], rft["ablation"], rft["reward"]) == (9, 2e-5, "no_qas", {"weights": "paper"})
    assert configs["plain_grpo"]["steps"] == 9 and configs["plain_grpo"]["reward"] == {"weights": "paper"}
    assert configs["plain_grpo"]["ablation"] == "plain_grpo"
    assert configs["register"]["model_name"] == "m"
    assert "reward" not in stage_configs(TrainParams(preset="smoke"))["rft"]  # unset: the rft stage's default


def test_overrides_come_last_and_merge_nested_objects():
    overrides = {"rft": {"steps": 3, "reward": {"w_qas": 0.5}}, "plain_grpo": {"seed": 4}, "eval": {"n_boot": 9}}
    configs = stage_configs(TrainParams(preset="smoke", rft_steps=9, reward_weights="paper",
                                        config_overrides=json.dumps(overrides)))
    assert configs["rft"]["steps"] == 3  # the advanced override beats the typed parameter
    assert configs["rft"]["reward"] == {"weights": "paper", "w_qas": 0.5}
    assert configs["plain_grpo"]["seed"] == 4 and configs["rft"]["seed"] == 0
    assert configs["plain_grpo"]["steps"] == 3  # the arm follows the final rft budget
    assert configs["eval"]["n_boot"] == 9 and configs["gate_eval"]["n_boot"] == 50


@pytest.mark.parametrize("params, message", [
    ({"ablation": "no_such_arm"}, "not an arm"),
    ({"reward_weights": "ours"}, "not a weighting"),
    ({"rft_steps": -1}, "rft_steps must be >= 0"),
    ({"rft_lr": -0.1}, "rft_lr must be >= 0"),
    ({"preset": "nope"}, "Unknown run preset"),
    ({"config_overrides": "{rft: 1}"}, "not valid JSON"),
    ({"config_overrides": "[1]"}, "must be a JSON object"),
    ({"config_overrides": '{"rtf": {}}'}, "unknown stage"),
    ({"config_overrides": '{"rft": 3}'}, "must be an object"),
])
def test_bad_parameters_are_refused_with_the_fix(params, message):
    with pytest.raises(ConfigError, match=message):
        stage_configs(TrainParams(**{"preset": "smoke", **params}))


def test_a_typo_in_a_stage_field_fails_validation_before_any_step():
    configs = stage_configs(TrainParams(preset="smoke", config_overrides='{"sft": {"stesp": 3}}'))
    with pytest.raises(ConfigError, match="the sft config: unknown option"):
        validate_stage_configs(configs)
    configs = stage_configs(TrainParams(preset="smoke", config_overrides='{"rft": {"num_generations": 1}}'))
    with pytest.raises(ConfigError, match="num_generations must be at least 2"):
        validate_stage_configs(configs)  # resolved() ranges run here too


def test_parse_overrides_accepts_a_dict_and_every_parameter_has_help():
    assert parse_overrides({"rft": {"beta": 0.1}}, ("rft",)) == {"rft": {"beta": 0.1}}
    assert set(param_help()) == {f for f in TrainParams.__dataclass_fields__}
    assert all(len(text) > 20 for text in param_help().values())
