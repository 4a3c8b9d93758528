"""build-graphs: the user-item interaction graph and the item-attribute (query) graph."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def build_graphs(
    data: Input[Dataset],
    graphs: Output[Dataset],
    metrics: Output[Metrics],
    config_json: str = "{}",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    from pathlib import Path

    from rerec.graphs.build import build_graphs as stage
    from rerec.pipeline.component_glue import component_metrics, stage_config, use_pipeline_run

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id, data_dir=data.path)
    summary = stage(Path(data.path), Path(graphs.path), stage_config(stage, config_json))
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
