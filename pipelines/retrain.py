"""``retrain`` (scheduled): new interactions -> graphs -> reward -> RFT from the current champion ->
evaluate (the champion beside the new model) -> register and gate. The gate promotes the new model only
when its paired interval against the champion, on the same validation queries, clears the margin."""

from kfp import dsl

import components as c
from pipelines.options import ClusterOptions, cluster_step
from pipelines.train import JOB_ID, evaluate_and_register, resolve_champion, rft_task, start_and_data
from rerec.pipeline.params import RETRAIN_PARAMS, typed_pipeline


def make_retrain_pipeline(options: ClusterOptions = ClusterOptions()):  # noqa: B008 - frozen dataclass
    # the typed parameters (names, types, defaults, descriptions) come from rerec.pipeline.params; data_uri
    # has no default here: a scheduled retraining always names its fresh data
    @typed_pipeline("Scheduled retraining: RFT from the registry's champion on fresh interactions; the new model is "
                    "promoted only when it beats the champion on the same validation queries by a paired interval.",
                    RETRAIN_PARAMS, required=("data_uri",))
    def retrain(params: dict):
        finish = cluster_step(c.finish_run(kfp_run_id=JOB_ID), options, "small")
        with dsl.ExitHandler(finish, name="rerec-retrain"):
            steps, prep, graphs, reward = start_and_data(options, "retrain", params, params["gpu_node_selector"],
                                                         params["gpu_tolerations"])
            data, graph, gnn = prep.outputs["data"], graphs.outputs["graphs"], reward.outputs["reward"]
            champion = resolve_champion(steps, params["model_name"], required=True)
            rft = rft_task(steps, data, graph, gnn, champion.outputs["model"])
            evaluate_and_register(steps, data, graph, gnn, rft.outputs["model"], champion)

    return dsl.pipeline(name="rerec-retrain")(retrain)
