"""sft-warmup: supervised pass on reasoning traces synthesised from the graphs."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import REREC_IMAGE


@dsl.component(base_image=REREC_IMAGE, install_kfp_package=False)
def sft_warmup(
    data: Input[Dataset],
    graphs: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    config_json: str = "{}",
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    from pathlib import Path

    from rerec.tracking import component_metrics, stage_config, use_pipeline_run
    from rerec.train.sft import sft_warmup as stage

    use_pipeline_run(mlflow_tracking_uri, mlflow_parent_run_id, kfp_run_id, data_dir=data.path)
    summary = stage(Path(data.path), Path(graphs.path), Path(model.path), stage_config(stage, config_json))
    model.metadata["stage"] = "sft-warmup"
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
