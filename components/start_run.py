"""start-run: the pipeline's first step. Turns the typed pipeline parameters into every stage's config
(checked against the stage dataclasses, so a typo fails here and not in a GPU step an hour later) and
opens the MLflow parent run that every stage nests under."""

from typing import NamedTuple

from kfp import dsl

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def start_run(
    pipeline: str,
    preset: str = "smollm2",
    data_uri: str = "",
    base_model: str = "",
    sft_steps: int = 0,
    rft_steps: int = 0,
    rft_lr: float = 0.0,
    reward_weights: str = "",
    ablation: str = "none",
    plain_grpo_arm: bool = False,
    model_name: str = "rerec-recommender",
    config_overrides: str = "{}",
    kfp_run_id: str = "",
) -> NamedTuple("StageConfigs", [  # spelled out: the component's source must hold it
    ("parent_run_id", str), ("prepare", str), ("graph", str), ("reward", str), ("sft", str), ("rft", str),
    ("plain_grpo", str), ("eval", str), ("gate_eval", str), ("register", str)]):
    # the signature is TrainParams spelled out (KFP ships this function's source); tests/test_pipeline_params.py
    # holds it to the dataclass: same names, types and defaults
    given = dict(locals())
    import json

    from rerec.pipeline.component_glue import use_pipeline_run
    from rerec.pipeline.params import TrainParams, stage_configs, train_params_of, validate_stage_configs
    from rerec.pipeline.parent_run import open_pipeline_run
    from rerec.tracking import tracking_enabled

    params = TrainParams(**train_params_of(given))
    configs = stage_configs(params)
    validate_stage_configs(configs)
    use_pipeline_run("", "", kfp_run_id)
    parent = open_pipeline_run(pipeline, kfp_run_id, vars(params), configs) if tracking_enabled() else ""
    print(json.dumps({"parent_run_id": parent, "configs": configs}, indent=2, sort_keys=True))
    stages = ("prepare", "graph", "reward", "sft", "rft", "plain_grpo", "eval", "gate_eval", "register")
    return (parent, *(json.dumps(configs[k], sort_keys=True) for k in stages))
