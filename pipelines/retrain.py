"""``retrain`` (scheduled): new interactions -> graphs -> reward -> RFT from the current champion ->
evaluate (champion against the new model) -> register and gate."""


from kfp import dsl

import components as c
from pipelines.options import ClusterOptions, with_secrets
from pipelines.train import evaluate_and_register, rft_task


def make_retrain_pipeline(options: ClusterOptions = ClusterOptions()):  # noqa: B008 - frozen dataclass
    @dsl.pipeline(name="rerec-retrain",
                  description="Scheduled retraining from the registry's champion on fresh interactions.")
    def retrain(
        input_dir: str,
        model_name: str = "rerec-recommender",
        prepare_config: str = "{}",
        graph_config: str = "{}",
        reward_config: str = "{}",
        rft_config: str = "{}",
        eval_config: str = "{}",
        gate_eval_config: str = '{"split": "val"}',
        register_config: str = "{}",
        mlflow_tracking_uri: str = "",
        mlflow_parent_run_id: str = "",
    ):
        tracking = {"mlflow_tracking_uri": mlflow_tracking_uri, "mlflow_parent_run_id": mlflow_parent_run_id,
                    "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
        prep = with_secrets(c.prepare_data(input_dir=input_dir, config_json=prepare_config, **tracking), options)
        graphs = with_secrets(c.build_graphs(data=prep.outputs["data"], config_json=graph_config, **tracking), options)
        reward = with_secrets(c.train_reward_gnn(data=prep.outputs["data"], graphs=graphs.outputs["graphs"],
                                                 config_json=reward_config, **tracking), options)
        champion = with_secrets(c.resolve_champion(model_name=model_name, alias="champion",
                                                   mlflow_tracking_uri=mlflow_tracking_uri), options)
        champion.set_caching_options(False)  # the alias moves between runs
        rft = rft_task(prep.outputs["data"], graphs.outputs["graphs"], reward.outputs["reward"],
                       champion.outputs["model"], options, rft_config, tracking)
        # Retention is measured against the champion (the reference in evaluate's sft slot).
        evaluate_and_register(prep.outputs["data"], graphs.outputs["graphs"], reward.outputs["reward"],
                              champion.outputs["model"], rft.outputs["model"], options, eval_config,
                              gate_eval_config, register_config, tracking)

    return retrain
