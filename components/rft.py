"""rft: curriculum GRPO with RAAE and the dual-graph reward, in one pod (multi-GPU via accelerate)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import REREC_IMAGE


@dsl.component(base_image=REREC_IMAGE, install_kfp_package=False)
def rft(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    base_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    config_json: str = "{}",
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """``base_model`` is the SFT output (train) or the champion (retrain); its registry version, when it
    has one, becomes the run's parent-model lineage tag. With ``REREC_CHECKPOINT_DIR`` (the checkpoint
    PVC) the stage works on the volume under the KFP run id and resumes there, so a restarted pod
    continues from its last checkpoint; the finished model is then copied into the output artifact."""
    import os
    import shutil
    from pathlib import Path

    from rerec.tracking import component_metrics, stage_config, use_pipeline_run
    from rerec.train.rft import rft as stage

    use_pipeline_run(mlflow_tracking_uri, mlflow_parent_run_id, kfp_run_id, data_dir=data.path,
                     parent_model_version=str(base_model.metadata.get("model_version", "")))
    config = stage_config(stage, config_json)
    inputs = (Path(data.path), Path(graphs.path), Path(reward.path), Path(base_model.path))
    volume = os.environ.get("REREC_CHECKPOINT_DIR", "")
    if volume:
        work = Path(volume) / (kfp_run_id or "local") / "rft" / "model"
        summary = stage(*inputs, work, config, resume=True)
        shutil.copytree(work, model.path, dirs_exist_ok=True)
    else:
        summary = stage(*inputs, Path(model.path), config)
    model.metadata["stage"] = "rft"
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
