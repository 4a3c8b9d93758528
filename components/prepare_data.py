"""prepare-data: fetch the dataset (an s3:// folder or a path), validate and normalise it, generate queries
and splits, and log the dataset as an MLflow input of the pipeline run."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prepare_data(
    data: Output[Dataset],
    metrics: Output[Metrics],
    config_json: str = "{}",
    data_uri: str = "",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """``data_uri``: ``s3://bucket/folder/`` (downloaded first), a folder in the container, or empty for the
    embedded MovieLens-100k."""
    import tempfile
    from pathlib import Path

    from rerec.data.prepare import prepare_data as stage
    from rerec.objectstore import is_s3_uri, localise
    from rerec.pipeline.component_glue import component_metrics, stage_config, use_pipeline_run
    from rerec.pipeline.parent_run import embedded_dataset_source, log_dataset_input
    from rerec.tracking import tracking_enabled

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id)
    config = stage_config(stage, config_json)
    with tempfile.TemporaryDirectory(prefix="rerec-input-") as tmp:
        local = localise(data_uri, tmp) if data_uri else ""
        summary = stage(Path(local) if local else None, Path(data.path), config)
    source = data_uri or embedded_dataset_source()
    data.metadata["source"] = source
    if tracking_enabled() and mlflow_parent_run_id:
        data.metadata.update(log_dataset_input(mlflow_parent_run_id, data.path, source))
    if is_s3_uri(data_uri):
        data.metadata["downloaded_from"] = data_uri
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
