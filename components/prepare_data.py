"""prepare-data: validate and normalise the input tables, generate queries and splits."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.image import REREC_IMAGE


@dsl.component(base_image=REREC_IMAGE, install_kfp_package=False)
def prepare_data(
    data: Output[Dataset],
    metrics: Output[Metrics],
    config_json: str = "{}",
    input_dir: str = "",
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """``input_dir`` empty means the embedded MovieLens-100k."""
    from pathlib import Path

    from rerec.data.prepare import prepare_data as stage
    from rerec.tracking import component_metrics, stage_config, use_pipeline_run

    use_pipeline_run(mlflow_tracking_uri, mlflow_parent_run_id, kfp_run_id)
    summary = stage(Path(input_dir) if input_dir else None, Path(data.path), stage_config(stage, config_json))
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
