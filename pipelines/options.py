"""Cluster settings, applied when a pipeline is built (they are part of the compiled YAML).

``ClusterOptions()`` is the Kubeflow default that ``pipelines/*.yaml`` is compiled with;
``ClusterOptions.local()`` strips everything the KFP local runner has no use for (GPUs, Kubernetes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kfp import kubernetes
from kfp.dsl import PipelineTask


@dataclass(frozen=True)
class ClusterOptions:
    accelerator_type: str = field(default="nvidia.com/gpu", metadata={"help": "Accelerator resource name."})
    sft_gpus: int = field(default=1, metadata={"help": "GPUs for sft-warmup (0: CPU)."})
    rft_gpus: int = field(default=1, metadata={"help": "GPUs for rft in one pod (accelerate launches one process each)."})
    node_selector: tuple[tuple[str, str], ...] = field(
        default=(("rerec.io/pool", "gpu"),), metadata={"help": "Node labels the GPU stages must run on."})
    gpu_tolerations: tuple[tuple[str, str, str], ...] = field(
        default=(("nvidia.com/gpu", "Exists", "NoSchedule"),),
        metadata={"help": "(key, operator, effect) tolerations for the GPU node taint."})
    s3_secret: str = field(default="rerec-s3", metadata={"help": "Secret with the S3 credentials and endpoint."})
    mlflow_secret: str = field(default="rerec-mlflow", metadata={"help": "Secret with the MLflow tracking URI."})
    checkpoint_pvc: str = field(default="rerec-rft-checkpoints", metadata={"help": "PVC for RFT checkpoints ('' for none)."})
    checkpoint_mount: str = field(default="/mnt/checkpoints", metadata={"help": "Where the checkpoint PVC is mounted."})
    rft_nodes: int = field(default=1, metadata={"help": "Nodes for RFT; >1 runs it as a Kubeflow Trainer TrainJob."})
    gpus_per_node: int = field(default=8, metadata={"help": "GPUs per node of the multi-node TrainJob."})
    kubernetes: bool = field(default=True, metadata={"help": "Apply Kubernetes settings (false for the local runner)."})

    @classmethod
    def local(cls) -> ClusterOptions:
        return cls(sft_gpus=0, rft_gpus=0, node_selector=(), gpu_tolerations=(), checkpoint_pvc="",
                   kubernetes=False)

    def multinode(self, nodes: int = 2) -> ClusterOptions:
        return replace(self, rft_nodes=nodes)


# Secret key -> environment variable. Only names travel in the YAML, never values.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL",
}
MLFLOW_ENV = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
# Basic auth for the tracking server, when it has any: the keys may be absent from the secret.
MLFLOW_AUTH_ENV = {
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}


def with_secrets(task: PipelineTask, options: ClusterOptions) -> PipelineTask:
    """Every stage reads MLflow and S3 settings from Kubernetes secrets."""
    if options.kubernetes:
        kubernetes.use_secret_as_env(task, secret_name=options.s3_secret, secret_key_to_env=S3_ENV)
        kubernetes.use_secret_as_env(task, secret_name=options.mlflow_secret, secret_key_to_env=MLFLOW_ENV)
        kubernetes.use_secret_as_env(task, secret_name=options.mlflow_secret, secret_key_to_env=MLFLOW_AUTH_ENV,
                                     optional=True)
    return task


def on_gpus(task: PipelineTask, options: ClusterOptions, gpus: int) -> PipelineTask:
    """GPU count and type, node selectors and tolerations for the training stages."""
    if gpus > 0:
        task.set_accelerator_type(options.accelerator_type).set_accelerator_limit(gpus)
    if options.kubernetes:
        for label, value in options.node_selector:
            kubernetes.add_node_selector(task, label_key=label, label_value=value)
        for key, operator, effect in options.gpu_tolerations:
            kubernetes.add_toleration(task, key=key, operator=operator, effect=effect)
    return task


def with_checkpoints(task: PipelineTask, options: ClusterOptions) -> PipelineTask:
    """RFT checkpoints on a PVC so that a restarted pod resumes instead of starting over."""
    if options.kubernetes and options.checkpoint_pvc:
        kubernetes.mount_pvc(task, pvc_name=options.checkpoint_pvc, mount_path=options.checkpoint_mount)
        task.set_env_variable("REREC_CHECKPOINT_DIR", options.checkpoint_mount)
    return task
