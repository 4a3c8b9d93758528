"""sft-warmup: supervised pass on reasoning traces synthesised from the graphs (GPU image)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def sft_warmup(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    config_json: str = "{}",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """A start model given as ``s3://bucket/folder/`` in the config's ``model`` is downloaded first."""
    import tempfile
    from pathlib import Path

    from rerec.objectstore import localise_config
    from rerec.pipeline.component_glue import component_metrics, stage_config, use_pipeline_run
    from rerec.train.sft import sft_warmup as stage

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id, data_dir=data.path)
    with tempfile.TemporaryDirectory(prefix="rerec-base-model-") as tmp:
        config = stage_config(stage, localise_config(config_json, tmp))
        summary = stage(Path(data.path), Path(graphs.path), Path(model.path), config, reward_dir=Path(reward.path))
    model.metadata["stage"] = "sft-warmup"
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
