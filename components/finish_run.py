"""finish-run: the pipeline's exit step. Marks the MLflow parent run FINISHED or FAILED with the pipeline
(it runs whatever happened to the other steps)."""

from kfp import dsl

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def finish_run(status: dsl.PipelineTaskFinalStatus, kfp_run_id: str = "") -> None:
    from rerec.pipeline.component_glue import use_pipeline_run
    from rerec.pipeline.parent_run import finish_pipeline_run
    from rerec.tracking import tracking_enabled

    if not tracking_enabled():
        return
    use_pipeline_run("", "", kfp_run_id)
    closed = finish_pipeline_run(kfp_run_id, status.state, status.error_message or "")
    print(f"pipeline {kfp_run_id}: {status.state}; parent run {closed or '(owned by the caller, left open)'}")
