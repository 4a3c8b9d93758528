"""Typed pipeline parameters -> stage configs (rerec.pipeline.params), by hand."""

import json

import pytest

from rerec.errors import ConfigError
from rerec.pipeline.params import (
    TrainParams,
    param_help,
    parse_overrides,
    stage_configs,
    validate_stage_configs,
)
from rerec.pipeline.presets import STAGES, preset_configs


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
    overrides = {"rft": {"steps": 3, "reward": {"w_query": 0.5}}, "plain_grpo": {"seed": 4}, "eval": {"n_boot": 9}}
    configs = stage_configs(TrainParams(preset="smoke", rft_steps=9, reward_weights="paper",
                                        config_overrides=json.dumps(overrides)))
    assert configs["rft"]["steps"] == 3  # the advanced override beats the typed parameter
    assert configs["rft"]["reward"] == {"weights": "paper", "w_query": 0.5}
    assert configs["plain_grpo"]["seed"] == 4 and configs["rft"]["seed"] == 0
    assert configs["plain_grpo"]["steps"] == 3  # the arm follows the final rft budget
    assert configs["eval"]["n_boot"] == 9 and configs["gate_eval"]["n_boot"] == 50
    validate_stage_configs(configs)  # every merged field is one the stage has
    # a nested field that does not exist is merged by stage_configs and refused by the validation
    typo = stage_configs(TrainParams(preset="smoke", config_overrides='{"rft": {"reward": {"w_qas": 0.5}}}'))
    with pytest.raises(ConfigError, match="w_qas"):
        validate_stage_configs(typo)


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
    from rerec.pipeline.params import SchedulingParams

    assert set(param_help()) == {*TrainParams.__dataclass_fields__, *SchedulingParams.__dataclass_fields__}
    assert all(len(text) > 20 for text in param_help().values())


def test_rft_lr_zero_is_unset_and_the_value_comes_from_the_preset_else_the_model_profile():
    from rerec.models.profiles import get_profile
    from rerec.train.rft import RFTConfig

    for preset in ("smoke", "smollm2", "paper"):
        rft = stage_configs(TrainParams(preset=preset))["rft"]
        assert "lr" not in rft  # no preset sets one: the rft config's None, the model profile's rft_lr
        resolved = RFTConfig(**{k: v for k, v in rft.items() if k == "profile"}).resolved()
        assert resolved.lr == get_profile(rft.get("profile", "smollm2")).rft_lr
    assert stage_configs(TrainParams(preset="smoke", rft_lr=3e-5))["rft"]["lr"] == 3e-5
    # a learning rate of 0 itself is reachable, through the advanced overrides
    assert stage_configs(TrainParams(preset="smoke", config_overrides='{"rft": {"lr": 0}}'))["rft"]["lr"] == 0


def test_the_choices_have_one_home():
    from rerec.reward.scorer import WEIGHTINGS
    from rerec.train.rft import ABLATIONS

    helps = param_help()
    for arm in ABLATIONS:
        stage_configs(TrainParams(preset="smoke", ablation=arm))  # every arm of the rft stage is accepted
        assert arm in helps["ablation"]
    for weights in WEIGHTINGS:
        assert stage_configs(TrainParams(preset="smoke", reward_weights=weights))["rft"]["reward"] == {
            "weights": weights}
        assert weights in helps["reward_weights"]


def test_start_run_spells_out_exactly_the_train_params():
    """KFP ships start-run's source, so its signature is written out; it must be TrainParams: same names, same
    types, same defaults (retrain leaves some unset, and then these defaults apply)."""
    import inspect
    import typing
    from dataclasses import fields

    import components as c

    signature = inspect.signature(c.start_run.python_func)
    hints = typing.get_type_hints(TrainParams)
    spelled = {name: (p.annotation, p.default) for name, p in signature.parameters.items()
               if name not in ("pipeline", "kfp_run_id")}
    assert spelled == {f.name: (hints[f.name], f.default) for f in fields(TrainParams)}


def test_pipeline_signatures_come_from_the_dataclasses():
    from pipelines.retrain import make_retrain_pipeline
    from pipelines.train import make_train_pipeline
    from rerec.pipeline.params import RETRAIN_PARAMS, TRAIN_PARAMS, SchedulingParams, pipeline_signature

    train, retrain = make_train_pipeline(), make_retrain_pipeline()
    inputs = train.component_spec.inputs
    assert list(inputs) == list(TRAIN_PARAMS)
    defaults = {**vars(TrainParams()), **vars(SchedulingParams())}
    assert {k: v.default for k, v in inputs.items()} == {k: defaults[k] for k in TRAIN_PARAMS}
    assert all(len(v.description or "") > 20 for v in inputs.values())
    assert list(retrain.component_spec.inputs) == list(RETRAIN_PARAMS)
    assert retrain.component_spec.inputs["data_uri"].default is None  # required: no default
    assert pipeline_signature(["rft_lr"]).parameters["rft_lr"].annotation is float


def test_schedule_keeps_text_parameters_as_text_and_parses_the_others():
    import typing

    from rerec.pipeline.schedule import param_value

    for name, kind in typing.get_type_hints(TrainParams).items():
        value = param_value(name, "1")
        assert value == ("1" if kind is str else 1), name  # '1' stays text for a str parameter only
    assert param_value("config_overrides", '{"rft": {}}') == '{"rft": {}}'
    assert param_value("plain_grpo_arm", "true") is True


def test_an_override_under_a_renamed_fields_old_name_replaces_the_presets_value():
    """The smoke preset's RFT config sets ``max_new_tokens``; an override that still says ``max_completion_tokens``
    (its old name) replaces it, with a FutureWarning, rather than meeting it as a second option."""
    with pytest.warns(FutureWarning, match="config_overrides\\['rft'\\]: 'max_completion_tokens' is deprecated"):
        configs = stage_configs(TrainParams(preset="smoke", config_overrides='{"rft": {"max_completion_tokens": 8}}'))
    assert configs["rft"]["max_new_tokens"] == 8 and "max_completion_tokens" not in configs["rft"]
    assert configs["plain_grpo"]["max_new_tokens"] == 8
    validate_stage_configs(configs)
