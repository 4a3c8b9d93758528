"""Cluster settings, applied when a pipeline is built (they are part of the compiled YAML).

``ClusterOptions()`` is the Kubeflow default that ``pipelines/*.yaml`` is compiled with;
``ClusterOptions.local()`` strips everything the KFP local runner has no use for (GPUs, Kubernetes).
Scheduling that differs between clusters (node selectors, tolerations) is not compiled in: it is a pair
of run-time pipeline parameters (``gpu_node_selector``, ``gpu_tolerations``, empty by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kfp import kubernetes
from kfp.dsl import PipelineTask

#: the user the images run as (USER 10001:10001 in images/Dockerfile.*)
RUN_AS_USER = 10001


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one step's container (Kubernetes quantities)."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str


# Sized for the paper profile (3B model, LoRA, G=5, 768/768 tokens) on one 80 GB GPU; the CPU steps for
# MovieLens-scale catalogs (LightGCN on a few million interactions fits in 16 GiB).
DEFAULT_RESOURCES: dict[str, Resources] = {
    "small": Resources("250m", "1Gi", "1", "4Gi"),  # start-run, finish-run, resolve-champion, rft-trainjob
    "data": Resources("1", "4Gi", "4", "16Gi"),  # prepare-data, build-graphs
    "reward": Resources("2", "8Gi", "8", "16Gi"),  # train-reward-gnn (CPU)
    "register": Resources("500m", "4Gi", "2", "8Gi"),  # uploads the model folder
}
_GPU_POD = Resources("8", "64Gi", "16", "96Gi")  # per GPU step's pod (the GPUs come on top)
DEFAULT_RESOURCES.update(sft=_GPU_POD, rft=_GPU_POD, evaluate=_GPU_POD)


@dataclass(frozen=True)
class ClusterOptions:
    accelerator_type: str = field(default="nvidia.com/gpu", metadata={"help": "Accelerator resource name."})
    sft_gpus: int = field(default=1, metadata={"help": "GPUs for sft-warmup (0: CPU)."})
    rft_gpus: int = field(default=1, metadata={"help": "GPUs for rft in one pod (one torchrun process each)."})
    eval_gpus: int = field(default=1, metadata={"help": "GPUs for evaluate."})
    resources: tuple[tuple[str, Resources], ...] = field(default=tuple(DEFAULT_RESOURCES.items()),
                                                         metadata={"help": "Requests/limits per kind of step."})
    s3_secret: str = field(default="rerec-s3", metadata={"help": "Secret with the S3 credentials and endpoint."})
    mlflow_secret: str = field(default="rerec-mlflow", metadata={"help": "Secret with the MLflow URI and login."})
    checkpoint_pvc: str = field(default="rerec-rft-checkpoints", metadata={"help": "PVC for RFT checkpoints ('' for none)."})
    checkpoint_mount: str = field(default="/mnt/checkpoints", metadata={"help": "Where the checkpoint PVC is mounted."})
    rft_nodes: int = field(default=1, metadata={"help": "Nodes for RFT; >1 runs it as a Kubeflow Trainer TrainJob."})
    gpus_per_node: int = field(default=8, metadata={"help": "GPUs per node of the multi-node TrainJob."})
    rft_retries: int = field(default=2, metadata={"help": "Retries of an rft step (each resumes from its checkpoint)."})
    timeouts_s: tuple[tuple[str, int], ...] = field(
        default=(("data", 2 * 3600), ("reward", 4 * 3600), ("sft", 12 * 3600), ("rft", 48 * 3600),
                 ("evaluate", 6 * 3600), ("small", 3600), ("register", 2 * 3600)),
        metadata={"help": "Seconds a step's pod may run (activeDeadlineSeconds) per kind of step."})
    kubernetes: bool = field(default=True, metadata={"help": "Apply Kubernetes settings (false for the local runner)."})

    @classmethod
    def local(cls) -> ClusterOptions:
        return cls(sft_gpus=0, rft_gpus=0, eval_gpus=0, checkpoint_pvc="", kubernetes=False)

    def multinode(self, nodes: int = 2) -> ClusterOptions:
        return replace(self, rft_nodes=nodes)

    def resources_for(self, kind: str) -> Resources:
        return dict(self.resources)[kind]

    def timeout_for(self, kind: str) -> int:
        return dict(self.timeouts_s)[kind]


# Secret key -> environment variable. Only names travel in the YAML, never values.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL",
}
MLFLOW_ENV = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
# Basic auth for the tracking server (manifests/base/mlflow.yaml runs it with basic-auth).
MLFLOW_AUTH_ENV = {
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}


def cluster_step(task: PipelineTask, options: ClusterOptions, kind: str, *, gpus: int = 0,
                 node_selector=None, tolerations=None, retries: int = 0) -> PipelineTask:
    """What every step gets on a cluster: credentials from the Secrets, requests and limits, a deadline;
    GPU steps also their GPUs, ``REREC_REQUIRE_GPU=1`` and the run-time node
    selector and tolerations; resumable steps retries."""
    if gpus > 0:
        task.set_accelerator_type(options.accelerator_type).set_accelerator_limit(gpus)
        task.set_env_variable("REREC_REQUIRE_GPU", "1")
    if not options.kubernetes:
        return task
    res = options.resources_for(kind)
    task.set_cpu_request(res.cpu).set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.memory).set_memory_limit(res.memory_limit)
    kubernetes.use_secret_as_env(task, secret_name=options.s3_secret, secret_key_to_env=S3_ENV)
    kubernetes.use_secret_as_env(task, secret_name=options.mlflow_secret, secret_key_to_env=MLFLOW_ENV)
    kubernetes.use_secret_as_env(task, secret_name=options.mlflow_secret, secret_key_to_env=MLFLOW_AUTH_ENV,
                                 optional=True)
    kubernetes.set_timeout(task, options.timeout_for(kind))
    # No kubernetes.set_security_context: its field (securityContext) needs KFP backend 2.16, and KFP 2.15
    # (Kubeflow 1.11) refuses the whole pipeline for it (tests/test_kfp_backend_compat.py). The images'
    # numeric USER 10001:10001 is what the pods run as.
    if gpus > 0:
        if node_selector is not None:
            kubernetes.add_node_selector_json(task, node_selector)
        if tolerations is not None:
            kubernetes.add_toleration_json(task, tolerations)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="3600s")
    return task


def with_checkpoints(task: PipelineTask, options: ClusterOptions) -> PipelineTask:
    """RFT checkpoints on a PVC so that a restarted pod resumes instead of starting over."""
    if options.kubernetes and options.checkpoint_pvc:
        kubernetes.mount_pvc(task, pvc_name=options.checkpoint_pvc, mount_path=options.checkpoint_mount)
        task.set_env_variable("REREC_CHECKPOINT_DIR", options.checkpoint_mount)
    return task
