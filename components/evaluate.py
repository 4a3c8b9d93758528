"""evaluate: the benchmark per query type against baselines, and general-ability retention."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import REREC_IMAGE


@dsl.component(base_image=REREC_IMAGE, install_kfp_package=False)
def evaluate(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    sft_model: Input[Model],
    rft_model: Input[Model],
    report: Output[Dataset],
    report_md: Output[Markdown],
    report_html: Output[HTML],
    metrics: Output[Metrics],
    config_json: str = "{}",
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """Models are compared as ``{"sft": ..., "rft": ...}``; baselines come from the eval config."""
    import shutil
    from pathlib import Path

    from rerec.eval.evaluate import evaluate as stage
    from rerec.tracking import component_metrics, stage_config, use_pipeline_run

    use_pipeline_run(mlflow_tracking_uri, mlflow_parent_run_id, kfp_run_id, data_dir=data.path)
    models = {"sft": Path(sft_model.path), "rft": Path(rft_model.path)}
    summary = stage(Path(data.path), Path(graphs.path), Path(reward.path), models, Path(report.path),
                    stage_config(stage, config_json))
    for source, target in (("report.md", report_md.path), ("report.html", report_html.path)):
        if (Path(report.path) / source).exists():
            shutil.copyfile(Path(report.path) / source, target)
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
