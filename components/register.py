"""register: MLflow model version with alias ``challenger``, then the promotion gate."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.image import REREC_IMAGE


@dsl.component(base_image=REREC_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    report: Input[Dataset],
    data: Input[Dataset],
    decision: Output[Markdown],
    metrics: Output[Metrics],
    config_json: str = "{}",
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    from pathlib import Path

    from rerec.registry import RegisterConfig, decision_markdown
    from rerec.registry import register as stage
    from rerec.tracking import component_metrics, stage_config, use_pipeline_run

    use_pipeline_run(mlflow_tracking_uri, mlflow_parent_run_id, kfp_run_id,
                     parent_model_version=str(model.metadata.get("model_version", "")))
    config = stage_config(stage, config_json, RegisterConfig)
    result = stage(Path(model.path), Path(report.path) / "report.json", config, data_dir=Path(data.path))
    Path(decision.path).write_text(decision_markdown(result), encoding="utf-8")
    for name, value in component_metrics(result).items():
        metrics.log_metric(name, value)
