"""The typed parameters a person sets in the Kubeflow UI, and how they become each stage's config.

:class:`TrainParams` (and :class:`SchedulingParams`) list them with their types, defaults and help: the
pipelines' signatures and descriptions are made from them (:func:`typed_pipeline`), ``start-run``'s spelled-out
signature and ``rerec schedule``'s text parameters are checked against them (tests/test_pipeline_params.py). :func:`stage_configs` is the mapping, a pure function:

1. start from the run preset's per-stage configs (:mod:`rerec.pipeline.presets`);
2. apply the typed parameters that are set (an empty string, 0 or "none" means unset: the parameter adds
   no key, so the preset's value holds, else the stage's own default, which for a number is often its
   model profile's);
3. merge the advanced JSON overrides ``{"<stage>": {...}}`` last, nested objects key by key.

The RFT config nests its reward settings: ``reward_weights="paper"`` becomes
``{"rft": {"reward": {"weights": "paper"}}}``. The optional plain-GRPO arm is the final rft config with
``ablation`` set to ``plain_grpo``: the same start model, steps, learning rate and seed.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from rerec.config import json_object, merge_config_dicts, with_current_names
from rerec.errors import ConfigError

# The choices of ``ablation`` and ``reward_weights`` have one home each, read when a run is configured (their
# modules import torch): rerec.train.rft.ABLATIONS and rerec.reward.scorer.WEIGHTINGS.
#: stage keys of the configs a pipeline run uses (the run presets' keys plus the plain-GRPO arm)
ARM_STAGE = "plain_grpo"


@dataclass
class TrainParams:
    """What the ``train`` pipeline asks for; each help text is the parameter's description in the UI."""

    preset: str = field(default="smollm2", metadata={
        "help": "Run preset: model and budgets of every stage. smoke (minutes, tiny model), tiny, default "
                "(the CPU run of 'make run'), smollm2 (the embedded SmolLM2-135M), paper (the paper's GPU "
                "settings, Qwen2.5-3B-Instruct)."})
    data_uri: str = field(default="", metadata={
        "help": "Dataset folder: s3://bucket/folder/ with parquet tables or RecBole atomic files (downloaded with "
                "the rerec-s3 credentials), or a path inside the image. Empty: the embedded MovieLens-100k."})
    base_model: str = field(default="", metadata={
        "help": "Model SFT starts from: s3://bucket/folder/ of a Hugging Face model folder, a hub id, or "
                "smollm2 / tiny. Empty: the preset's model."})
    # 0 is "unset" for the numbers (KFP's local runner cannot carry an optional number): the key is left out
    # of the stage config, whose own unset (None) then takes the model profile's value.
    sft_steps: int = field(default=0, metadata={
        "help": "SFT optimiser steps. 0: unset, the preset's sft steps, else the model profile's sft_steps."})
    rft_steps: int = field(default=0, metadata={
        "help": "RFT optimiser steps. 0: unset, the preset's rft steps, else the model profile's rft_steps."})
    rft_lr: float = field(default=0.0, metadata={
        "help": "RFT learning rate. 0: unset, the preset's rft lr, else the model profile's rft_lr (a learning "
                "rate of 0 itself: config_overrides {\"rft\": {\"lr\": 0}})."})
    reward_weights: str = field(default="", metadata={
        "help": "Reward weights of RFT: rerec or paper (NDCG@1 + 0.01 QAS + 0.01 PAS + 0.1 format). "
                "Empty: the RFT default."})
    ablation: str = field(default="none", metadata={
        "help": "RFT ablation arm: none (full ReRec), plain_grpo, no_raae, no_curriculum, no_qas, no_pas."})
    plain_grpo_arm: bool = field(default=False, metadata={
        "help": "Also train a plain-GRPO arm from the same SFT model with the same budget, and evaluate it beside "
                "ReRec (model 'plain_grpo' in the report)."})
    model_name: str = field(default="rerec-recommender", metadata={"help": "Registered model name in MLflow."})
    config_overrides: str = field(default="{}", metadata={
        "help": 'Advanced: per-stage config fields as JSON, applied last, e.g. {"rft": {"beta": 0.04}, '
                '"eval": {"max_queries_per_type": 50}}. Stages: prepare, graph, reward, sft, rft, plain_grpo, eval, '
                "gate_eval, register."})


@dataclass
class SchedulingParams:
    """Kubernetes scheduling parameters (not stage configs): applied to the GPU steps by the cluster."""

    gpu_node_selector: dict = field(default_factory=dict, metadata={
        "help": 'Node labels the GPU steps must run on, e.g. {"nvidia.com/gpu.product": '
                '"NVIDIA-H100-80GB-HBM3"}. Empty: any node with a free GPU.'})
    gpu_tolerations: list = field(default_factory=list, metadata={
        "help": 'Tolerations of the GPU steps, e.g. [{"key": "nvidia.com/gpu", "operator": "Exists", '
                '"effect": "NoSchedule"}]. Empty: none.'})


#: the typed parameters of the train pipeline, in the order the UI shows them
TRAIN_PARAMS = ("preset", "data_uri", "base_model", "sft_steps", "rft_steps", "rft_lr", "reward_weights", "ablation",
                "plain_grpo_arm", "model_name", "gpu_node_selector", "gpu_tolerations", "config_overrides")
#: the typed parameters of the retrain pipeline (it starts from the champion: no SFT, no arm)
RETRAIN_PARAMS = ("data_uri", "preset", "rft_steps", "rft_lr", "reward_weights", "ablation", "model_name",
                  "gpu_node_selector", "gpu_tolerations", "config_overrides")
#: the TrainParams fields whose values are text (``rerec schedule --param`` keeps them as typed)
TEXT_PARAMS = tuple(f.name for f in fields(TrainParams) if f.type in ("str", str))


def _param_fields() -> dict[str, Any]:
    return {f.name: f for f in (*fields(TrainParams), *fields(SchedulingParams))}


def param_help() -> dict[str, str]:
    """Parameter name -> description (TrainParams and SchedulingParams), for the pipelines' docstrings."""
    return {name: f.metadata["help"] for name, f in _param_fields().items()}


def pipeline_docstring(summary: str, names: Sequence[str]) -> str:
    """A Google-style docstring (KFP reads parameter descriptions from its ``Args:`` section)."""
    helps = param_help()
    lines = [summary, "", "Args:"]
    lines += [f"    {name}: {helps[name]}" for name in names]
    return "\n".join(lines) + "\n"


def pipeline_signature(names: Sequence[str], required: Sequence[str] = ()) -> inspect.Signature:
    """The pipeline function's signature KFP reads (names, types, defaults), made from :class:`TrainParams` and
    :class:`SchedulingParams`; the ``required`` ones have no default."""
    hints = {**typing.get_type_hints(TrainParams), **typing.get_type_hints(SchedulingParams)}
    out = []
    for name in names:
        f = _param_fields()[name]
        default = f.default if f.default is not MISSING else f.default_factory()
        out.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=hints[name],
                                     default=inspect.Parameter.empty if name in required else default))
    return inspect.Signature(out)


def typed_pipeline(summary: str, names: Sequence[str], required: Sequence[str] = ()) -> Callable:
    """Decorator: ``body(params: dict)`` becomes a pipeline function with the typed parameters ``names``
    (:func:`pipeline_signature`, described by :func:`pipeline_docstring`), so that no pipeline spells out a
    parameter, its type or its default. KFP calls the function with one channel per parameter; ``body`` gets
    them as a dict by name."""
    signature = pipeline_signature(names, required)

    def decorate(body: Callable[[dict], Any]) -> Callable:
        def pipeline(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return body(dict(bound.arguments))

        pipeline.__signature__ = signature  # type: ignore[attr-defined]
        pipeline.__name__ = pipeline.__qualname__ = body.__name__
        pipeline.__module__ = body.__module__
        pipeline.__doc__ = pipeline_docstring(summary, names)
        return pipeline

    return decorate


def train_params_of(params: dict[str, Any]) -> dict[str, Any]:
    """The :class:`TrainParams` entries of a pipeline's parameters (what ``start-run`` takes)."""
    return {k: v for k, v in params.items() if k in TrainParams.__dataclass_fields__}


def parse_overrides(text: str | dict | None, stages: tuple[str, ...]) -> dict[str, dict]:
    """The advanced JSON overrides as ``{stage: {field: value}}``; refuses other shapes and unknown stages."""
    values = text if isinstance(text, dict) else json_object(
        text, "config_overrides", "a JSON object of stages", 'pass an object such as {"rft": {"beta": 0.04}}.')
    unknown = sorted(set(values) - set(stages))
    if unknown:
        raise ConfigError(f"config_overrides names unknown stage(s) {', '.join(unknown)}. "
                          f"Fix: use some of {', '.join(stages)}.")
    for stage, value in values.items():
        if not isinstance(value, dict):
            raise ConfigError(f"config_overrides['{stage}'] must be an object of config fields, got "
                              f"{type(value).__name__}. Fix: e.g. {{\"{stage}\": {{\"seed\": 1}}}}.")
    return values


def stage_configs(params: TrainParams | dict[str, Any]) -> dict[str, dict]:
    """Per-stage config dicts for a pipeline run (see the module docstring). Keys: the run preset's stages
    and ``plain_grpo``. Checks the choices of the typed parameters; the configs' own fields are checked
    against their dataclasses by :func:`validate_stage_configs`."""
    from rerec.pipeline.presets import STAGES, preset_configs, stage_config_classes
    from rerec.reward.scorer import WEIGHTINGS
    from rerec.train.rft import ABLATIONS

    p = params if isinstance(params, TrainParams) else TrainParams(**params)
    if p.ablation not in ABLATIONS:
        raise ConfigError(f"ablation '{p.ablation}' is not an arm. Fix: use one of {', '.join(ABLATIONS)}.")
    if p.reward_weights and p.reward_weights not in WEIGHTINGS:
        raise ConfigError(f"reward_weights '{p.reward_weights}' is not a weighting. Fix: use "
                          f"{' or '.join(WEIGHTINGS)}, or leave it empty for the RFT default.")
    for name in ("sft_steps", "rft_steps"):
        if getattr(p, name) < 0:
            raise ConfigError(f"{name} must be >= 0 (0: unset), got {getattr(p, name)}.")
    if p.rft_lr < 0:
        raise ConfigError(f"rft_lr must be >= 0 (0: unset), got {p.rft_lr}.")
    configs = preset_configs(p.preset)
    typed: dict[str, dict] = {"sft": {}, "rft": {}, "eval": {}, "gate_eval": {}, "register": {}}
    if p.base_model:  # SFT starts from it; evaluation's zero-shot base row and retention reference are it
        typed["sft"]["model"] = p.base_model
        typed["eval"]["base_model"] = typed["gate_eval"]["base_model"] = p.base_model
    if p.sft_steps:
        typed["sft"]["steps"] = p.sft_steps
    if p.rft_steps:
        typed["rft"]["steps"] = p.rft_steps
    if p.rft_lr:
        typed["rft"]["lr"] = p.rft_lr
    if p.ablation != "none":
        typed["rft"]["ablation"] = p.ablation
    if p.reward_weights:
        typed["rft"]["reward"] = {"weights": p.reward_weights}
    if p.model_name:
        typed["register"]["model_name"] = p.model_name
    overrides = parse_overrides(p.config_overrides, (*STAGES, ARM_STAGE))
    classes = {**stage_config_classes(), ARM_STAGE: stage_config_classes()["rft"]}
    overrides = {stage: with_current_names(classes[stage], values, f"config_overrides['{stage}']")
                 for stage, values in overrides.items()}  # a renamed field's old name replaces the preset's value
    out = {stage: merge_config_dicts(merge_config_dicts(configs[stage], typed.get(stage, {})), overrides.get(stage, {})) for stage in STAGES}
    top_k = (out["rft"].get("reward") or {}).get("top_k")
    for stage in ("eval", "gate_eval"):  # evaluation reads as many answer items as the reward asks for
        if top_k is not None and "top_k" not in overrides.get(stage, {}):
            out[stage]["top_k"] = top_k
    out[ARM_STAGE] = merge_config_dicts(merge_config_dicts(out["rft"], {"ablation": "plain_grpo"}), overrides.get(ARM_STAGE, {}))
    return out


def validate_stage_configs(configs: dict[str, dict]) -> None:
    """Build every stage's config dataclass from its dict, so that a typo fails the first step of a run
    (one :class:`ConfigError` naming the stage and field) instead of a GPU step an hour later."""
    from rerec.config import dataclass_from_dict
    from rerec.pipeline.presets import stage_config_classes

    classes = {**stage_config_classes()}
    classes[ARM_STAGE] = classes["rft"]
    for stage, values in configs.items():
        config = dataclass_from_dict(classes[stage], values, where=f"the {stage} config")
        resolved = getattr(config, "resolved", None)
        if callable(resolved):
            resolved()  # model profile values filled in and ranges checked, as the stage itself will
