"""evaluate: the benchmark per query type against baselines, and general-ability retention (GPU image)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    rft_model: Input[Model],
    report: Output[Dataset],
    report_md: Output[Markdown],
    report_html: Output[HTML],
    metrics: Output[Metrics],
    sft_model: Input[Model] = None,
    plain_grpo_model: Input[Model] = None,
    champion_model: Input[Model] = None,
    config_json: str = "{}",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """Models are compared by name: ``sft``, ``rft``, ``plain_grpo`` and ``champion`` (the registry's current
    champion, absent or empty when there is none yet), on the same queries; baselines come from the config.
    A start model given as ``s3://`` in the config is downloaded first."""
    import shutil
    import tempfile
    from pathlib import Path

    from rerec.eval.evaluate import evaluate as stage
    from rerec.objectstore import localise_config
    from rerec.pipeline.component_glue import component_metrics, stage_config, use_pipeline_run

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id, data_dir=data.path)
    # the stage adds the zero-shot base model itself (its config's base_model); retention is measured against it
    given = {"sft": sft_model, "champion": champion_model, "rft": rft_model, "plain_grpo": plain_grpo_model}
    # an artifact without a model folder (no champion yet) is no model
    models = {name: Path(a.path) for name, a in given.items() if a is not None and (Path(a.path) / "config.json").is_file()}
    with tempfile.TemporaryDirectory(prefix="rerec-base-model-") as tmp:
        config = stage_config(stage, localise_config(config_json, tmp))
        summary = stage(Path(data.path), Path(graphs.path), Path(reward.path), models, Path(report.path), config)
    for source, target in (("report.md", report_md.path), ("report.html", report_html.path)):
        if (Path(report.path) / source).exists():
            shutil.copyfile(Path(report.path) / source, target)
    report.metadata["models"] = ",".join(models)
    champion_version = champion_model.metadata.get("model_version", "") if champion_model is not None else ""
    if "champion" in models:
        report.metadata["champion_version"] = str(champion_version)
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
