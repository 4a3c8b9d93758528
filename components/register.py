"""register: MLflow model version with alias ``challenger``, then the promotion gate (challenger against the
champion on the same validation queries, paired)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    report: Input[Dataset],
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    decision: Output[Markdown],
    metrics: Output[Metrics],
    champion_version: str = "",
    config_json: str = "{}",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """``report``: the validation evaluation, which ranked the challenger and (when there is one) the champion
    of version ``champion_version`` on the same queries. ``data``, ``graphs`` and ``reward``: the run's
    prepare-data, build-graphs and train-reward-gnn outputs (the served model's catalog and, for a model
    evaluated with taste evidence, its taste index)."""
    from pathlib import Path

    from rerec.pipeline.component_glue import component_metrics, stage_config, use_pipeline_run
    from rerec.registry.register import RegisterConfig, decision_markdown
    from rerec.registry.register import register as stage

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id,
                     parent_model_version=str(model.metadata.get("model_version", "")))
    config = stage_config(stage, config_json, RegisterConfig)
    result = stage(Path(model.path), Path(report.path), config, compared_version=champion_version or None,
                   data_dir=Path(data.path), graphs_dir=Path(graphs.path), reward_dir=Path(reward.path))
    Path(decision.path).write_text(decision_markdown(result), encoding="utf-8")
    for name, value in component_metrics({k: v for k, v in result.items() if k != "comparison"}).items():
        metrics.log_metric(name, value)
