"""``train``: prepare-data -> build-graphs -> train-reward-gnn -> sft-warmup -> rft -> evaluate -> register."""


from kfp import dsl
from kfp.dsl import Dataset, PipelineTask

import components as c
from pipelines.options import ClusterOptions, on_gpus, with_checkpoints, with_secrets


def rft_task(data, graphs, reward, base_model, options: ClusterOptions, config: str, tracking: dict):
    """RFT in one pod, or as a multi-node Kubeflow Trainer TrainJob when ``options.rft_nodes > 1``."""
    if options.rft_nodes > 1:
        task = c.rft_trainjob(data=data, graphs=graphs, reward=reward, base_model=base_model,
                              num_nodes=options.rft_nodes, gpus_per_node=options.gpus_per_node,
                              image=c.image.REREC_IMAGE, shared_dir=options.checkpoint_mount,
                              config_json=config, **tracking)
        with_checkpoints(task, options)
    else:
        task = c.rft(data=data, graphs=graphs, reward=reward, base_model=base_model, config_json=config, **tracking)
        on_gpus(with_checkpoints(task, options), options, options.rft_gpus)
    return with_secrets(task.set_display_name("rft"), options)


def evaluate_and_register(data, graphs, reward, reference_model, rft_model, options: ClusterOptions,
                          eval_config, gate_eval_config, register_config, tracking: dict) -> PipelineTask:
    """Evaluate on test (the report), evaluate on validation (what the gate reads), register the RFT model.

    ``reference_model`` fills evaluate's ``sft`` slot: the SFT model in ``train``, the champion in
    ``retrain``. The gate selects a model, so it decides on validation; the test report is only reported.
    Returns the test evaluation task.
    """
    evaluation = c.evaluate(data=data, graphs=graphs, reward=reward, sft_model=reference_model,
                            rft_model=rft_model, config_json=eval_config, **tracking)
    on_gpus(with_secrets(evaluation, options), options, options.sft_gpus)
    gate_eval = c.evaluate(data=data, graphs=graphs, reward=reward, sft_model=reference_model,
                           rft_model=rft_model, config_json=gate_eval_config, **tracking)
    on_gpus(with_secrets(gate_eval.set_display_name("evaluate-val"), options), options, options.sft_gpus)
    with_secrets(c.register(model=rft_model, report=gate_eval.outputs["report"], data=data,
                            config_json=register_config, **tracking), options)
    return evaluation


def make_train_pipeline(options: ClusterOptions = ClusterOptions()):  # noqa: B008 - frozen dataclass
    @dsl.pipeline(name="rerec-train", description="ReRec: data, graphs, reward GNN, SFT, RFT, evaluation, registry.")
    def train(
        input_dir: str = "",
        prepare_config: str = "{}",
        graph_config: str = "{}",
        reward_config: str = "{}",
        sft_config: str = "{}",
        rft_config: str = "{}",
        eval_config: str = "{}",
        gate_eval_config: str = '{"split": "val"}',
        register_config: str = "{}",
        mlflow_tracking_uri: str = "",
        mlflow_parent_run_id: str = "",
    ) -> Dataset:
        tracking = {"mlflow_tracking_uri": mlflow_tracking_uri, "mlflow_parent_run_id": mlflow_parent_run_id,
                    "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
        prep = with_secrets(c.prepare_data(input_dir=input_dir, config_json=prepare_config, **tracking), options)
        graphs = with_secrets(c.build_graphs(data=prep.outputs["data"], config_json=graph_config, **tracking), options)
        reward = with_secrets(c.train_reward_gnn(data=prep.outputs["data"], graphs=graphs.outputs["graphs"],
                                                 config_json=reward_config, **tracking), options)
        sft = c.sft_warmup(data=prep.outputs["data"], graphs=graphs.outputs["graphs"], config_json=sft_config,
                           **tracking)
        on_gpus(with_secrets(sft, options), options, options.sft_gpus)
        rft = rft_task(prep.outputs["data"], graphs.outputs["graphs"], reward.outputs["reward"],
                       sft.outputs["model"], options, rft_config, tracking)
        evaluation = evaluate_and_register(prep.outputs["data"], graphs.outputs["graphs"], reward.outputs["reward"],
                                           sft.outputs["model"], rft.outputs["model"], options, eval_config,
                                           gate_eval_config, register_config, tracking)
        return evaluation.outputs["report"]

    return train
