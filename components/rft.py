"""rft: curriculum GRPO with RAAE and the dual-graph reward, in one pod (GPU image; one process per GPU)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def rft(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    base_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    same_budget_as: Input[Model] = None,
    arm: str = "rft",
    config_json: str = "{}",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    """``base_model`` is the SFT output (train) or the champion (retrain); its registry version, when it
    has one, becomes the run's parent-model lineage tag. ``same_budget_as`` (another arm's model) makes this
    arm stop after the same number of steps. With ``REREC_CHECKPOINT_DIR`` (the checkpoint volume) the
    step works on the volume under the KFP run id and ``arm`` and resumes there, so a restarted pod or a
    retried step continues from its last checkpoint. Several visible GPUs: one process each (torchrun)."""
    import json
    import os
    from pathlib import Path

    from rerec.pipeline.component_glue import component_metrics, use_pipeline_run
    from rerec.train.distributed import gpu_count, run_rft_step, same_budget

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id, data_dir=data.path,
                     parent_model_version=str(base_model.metadata.get("model_version", "")))
    if same_budget_as is not None:
        reference = json.loads((Path(same_budget_as.path) / "metrics.json").read_text(encoding="utf-8"))
        config_json = same_budget(config_json, reference)
    volume = os.environ.get("REREC_CHECKPOINT_DIR", "")
    summary = run_rft_step(Path(data.path), Path(graphs.path), Path(reward.path), Path(base_model.path),
                           Path(model.path), config_json, volume=Path(volume) if volume else None,
                           kfp_run_id=kfp_run_id, arm=arm, nproc=gpu_count())
    model.metadata["stage"] = "rft"
    model.metadata["arm"] = arm
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)
