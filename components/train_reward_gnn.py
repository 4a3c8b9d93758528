"""train-reward-gnn: LightGCN (BPR) item embeddings for the preference-alignment reward."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def train_reward_gnn(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Output[Model],
    metrics: Output[Metrics],
    config_json: str = "{}",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """``data`` is taken only for lineage (the dataset hash on the MLflow run)."""
    from pathlib import Path

    from rerec.pipeline.component_glue import component_metrics, stage_config, use_pipeline_run
    from rerec.reward.lightgcn import train_reward_gnn as stage

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id, data_dir=data.path)
    summary = stage(Path(graphs.path), Path(reward.path), stage_config(stage, config_json))
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
