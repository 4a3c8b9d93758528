"""rft-trainjob: RFT on several nodes as a Kubeflow Trainer ``TrainJob`` (trainer.kubeflow.org/v1alpha1).

The component creates the TrainJob through the Kubernetes API (the pipeline runner's ServiceAccount
may create and watch TrainJobs in its namespace, nothing else), waits for it, and copies the model that
the job wrote to the shared checkpoint volume into its output artifact.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import REREC_IMAGE


@dsl.component(base_image=REREC_IMAGE, install_kfp_package=False)
def rft_trainjob(
    data: Input[Dataset],
    graphs: Input[Dataset],
    reward: Input[Model],
    base_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    num_nodes: int = 2,
    gpus_per_node: int = 8,
    image: str = "",
    runtime: str = "torch-distributed",
    shared_dir: str = "/mnt/checkpoints",
    config_json: str = "{}",
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
    kfp_run_id: str = "",
    timeout_s: int = 86400,
) -> None:
    import json
    import os
    import shutil
    import time
    import uuid
    from pathlib import Path

    from kubernetes import client, config

    # Inputs are staged on the shared volume so every node of the job sees the same files.
    job_name = f"rerec-rft-{uuid.uuid4().hex[:8]}"
    work = Path(shared_dir) / job_name
    for name, artifact in (("data", data), ("graphs", graphs), ("reward", reward), ("base", base_model)):
        shutil.copytree(artifact.path, work / name)
    out_dir = work / "model"
    command = [
        "python", "-c",
        "import json,sys; from pathlib import Path; from rerec.train.rft import rft; "
        "from rerec.tracking import stage_config; w=Path(sys.argv[1]); "
        "rft(w/'data', w/'graphs', w/'reward', w/'base', w/'model', stage_config(rft, sys.argv[2]))",
        str(work), config_json,
    ]
    env = [{"name": "REREC_PARENT_RUN_ID", "value": mlflow_parent_run_id},
           {"name": "KFP_RUN_ID", "value": kfp_run_id}]
    if mlflow_tracking_uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": mlflow_tracking_uri})
    body = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": job_name, "labels": {"app.kubernetes.io/part-of": "rerec", "rerec.io/kfp-run": kfp_run_id}},
        "spec": {
            "runtimeRef": {"name": runtime},
            "trainer": {
                "image": image or os.environ.get("REREC_IMAGE", ""),
                "command": command,
                "numNodes": num_nodes,
                "resourcesPerNode": {"limits": {"nvidia.com/gpu": gpus_per_node}},
                "env": env,
            },
        },
    }
    config.load_incluster_config()
    namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    api = client.CustomObjectsApi()
    api.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", namespace, "trainjobs", body)
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", namespace, "trainjobs", job_name)
        conditions = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        if conditions.get("Complete") == "True":
            break
        if conditions.get("Failed") == "True":
            raise RuntimeError(f"TrainJob {job_name} failed: {json.dumps(job.get('status'))}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"TrainJob {job_name} did not finish within {timeout_s} s.")
        time.sleep(30)
    shutil.copytree(out_dir, model.path)
    model.metadata["stage"] = "rft"
    model.metadata["trainjob"] = job_name
    summary_path = out_dir / "metrics.json"
    if summary_path.exists():
        for name, value in json.loads(summary_path.read_text()).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics.log_metric(name, float(value))
