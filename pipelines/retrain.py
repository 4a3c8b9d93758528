"""``retrain`` (scheduled): new interactions -> graphs -> reward -> RFT from the current champion ->
evaluate (the champion beside the new model) -> register and gate. The gate promotes the new model only
when its paired interval against the champion, on the same validation queries, clears the margin."""

from kfp import dsl

import components as c
from pipelines.options import ClusterOptions, cluster_step
from pipelines.train import (
    _DEFAULTS,
    JOB_ID,
    evaluate_and_register,
    resolve_champion,
    rft_task,
    start_and_data,
)
from rerec.pipeline_params import pipeline_docstring

RETRAIN_PARAMS = ["data_uri", "preset", "rft_steps", "rft_lr", "reward_weights", "ablation", "model_name",
                  "gpu_node_selector", "gpu_tolerations", "config_overrides"]


def make_retrain_pipeline(options: ClusterOptions = ClusterOptions()):  # noqa: B008 - frozen dataclass
    def retrain(
        data_uri: str,
        preset: str = _DEFAULTS.preset,
        rft_steps: int = _DEFAULTS.rft_steps,
        rft_lr: float = _DEFAULTS.rft_lr,
        reward_weights: str = _DEFAULTS.reward_weights,
        ablation: str = _DEFAULTS.ablation,
        model_name: str = _DEFAULTS.model_name,
        gpu_node_selector: dict = {},  # noqa: B006 - KFP reads the default from the signature
        gpu_tolerations: list = [],  # noqa: B006
        config_overrides: str = _DEFAULTS.config_overrides,
    ):
        finish = cluster_step(c.finish_run(kfp_run_id=JOB_ID), options, "small")
        with dsl.ExitHandler(finish, name="rerec-retrain"):
            params = dict(preset=preset, data_uri=data_uri, rft_steps=rft_steps, rft_lr=rft_lr,
                          reward_weights=reward_weights, ablation=ablation, model_name=model_name,
                          config_overrides=config_overrides)
            steps, prep, graphs, reward = start_and_data(options, "retrain", params, gpu_node_selector, gpu_tolerations)
            data, graph, gnn = prep.outputs["data"], graphs.outputs["graphs"], reward.outputs["reward"]
            champion = resolve_champion(steps, model_name, required=True)
            rft = rft_task(steps, data, graph, gnn, champion.outputs["model"])
            evaluate_and_register(steps, data, graph, gnn, rft.outputs["model"], champion)

    retrain.__doc__ = pipeline_docstring(
        "Scheduled retraining: RFT from the registry's champion on fresh interactions; the new model is promoted "
        "only when it beats the champion on the same validation queries by a paired interval.", RETRAIN_PARAMS)
    return dsl.pipeline(name="rerec-retrain")(retrain)
