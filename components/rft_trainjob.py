"""rft-trainjob: RFT on several nodes as a Kubeflow Trainer ``TrainJob`` (see :mod:`rerec.pipeline.trainjob`).

This step (a small CPU pod) stages the inputs on the run's checkpoint volume (``pvc``, made by the
checkpoint-volume step), creates the TrainJob in its own namespace (its ServiceAccount may create, watch and
delete TrainJobs there), waits for it, deletes it when it completes or runs past ``timeout_s``, and copies
the model that rank 0 wrote to the volume into its output. ``trainer_api``: ``v2.1`` for Kubeflow Trainer
2.1 (Kubeflow 1.11 and 26.03), ``v2.2`` for Trainer 2.2 and newer.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def rft_trainjob(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    base_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    image: str,
    same_budget_as: Input[Model] = None,
    arm: str = "rft",
    num_nodes: int = 2,
    gpus_per_node: int = 8,
    pvc: str = "",
    shared_dir: str = "/mnt/checkpoints",
    node_selector: dict = {},  # noqa: B006 - KFP reads the default from the signature
    tolerations: list = [],  # noqa: B006
    s3_secret: str = "rerec-s3",
    mlflow_secret: str = "rerec-mlflow",
    timeout_s: int = 86400,
    trainer_api: str = "v2.1",
    config_json: str = "{}",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
) -> None:
    import json
    import os
    import shutil
    from pathlib import Path

    from kubernetes import client, config

    from rerec.pipeline.component_glue import component_metrics
    from rerec.pipeline.trainjob import SecretEnv, TrainJobSpec, job_name, run_trainjob, trainjob_manifest
    from rerec.train.distributed import same_budget, stage_args

    if not pvc:
        raise ValueError("rft-trainjob needs the run's checkpoint volume (pvc): the checkpoint-volume step's output")
    if same_budget_as is not None:
        reference = json.loads((Path(same_budget_as.path) / "metrics.json").read_text(encoding="utf-8"))
        config_json = same_budget(config_json, reference)
    name = job_name(kfp_run_id or "local", arm)
    work = Path(shared_dir) / (kfp_run_id or "local") / f"{arm}-trainjob"
    for folder, artifact in (("data", data), ("graphs", graphs), ("reward", reward), ("base", base_model)):
        if not (work / folder).is_dir():  # a retried step finds them staged already
            shutil.copytree(artifact.path, work / f".{folder}.staging", dirs_exist_ok=True)
            os.replace(work / f".{folder}.staging", work / folder)
    out = work / "model"
    config.load_incluster_config()
    namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    env = {"KFP_RUN_ID": kfp_run_id, "REREC_PARENT_RUN_ID": mlflow_parent_run_id, "REREC_REQUIRE_GPU": "1"}
    spec = TrainJobSpec(
        name=name, image=image, num_nodes=num_nodes, gpus_per_node=gpus_per_node, pvc=pvc, mount_path=shared_dir,
        timeout_s=timeout_s, args=tuple(stage_args(work / "data", work / "graphs", work / "reward", work / "base",
                                                   out, config_json, resume=True)),
        env={k: v for k, v in env.items() if v},
        secret_env=(SecretEnv(s3_secret, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL")),
                    SecretEnv(mlflow_secret, ("MLFLOW_TRACKING_URI",)),
                    SecretEnv(mlflow_secret, ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"), optional=True)),
        node_selector=dict(node_selector or {}), tolerations=tuple(tolerations or ()),
        labels={"rerec.io/kfp-run": (kfp_run_id or "local")[:63]}, trainer_api=trainer_api,
    )
    run_trainjob(client.CustomObjectsApi(), namespace, trainjob_manifest(spec), timeout_s=timeout_s)
    shutil.copytree(out, model.path, dirs_exist_ok=True)
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    shutil.rmtree(work, ignore_errors=True)
    model.metadata.update(stage="rft", arm=arm, trainjob=name)
    for metric, value in component_metrics(summary).items():
        metrics.log_metric(metric, value)
