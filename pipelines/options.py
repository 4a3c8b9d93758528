"""Cluster settings, applied when a pipeline is built (they are part of the compiled YAML).

``ClusterOptions()`` is the Kubeflow default that ``pipelines/*.yaml`` is compiled with;
``ClusterOptions.local()`` strips everything the KFP local runner has no use for (GPUs, Kubernetes).
Scheduling that differs between clusters (node selectors, tolerations) is not compiled in: it is a pair
of run-time pipeline parameters (``gpu_node_selector``, ``gpu_tolerations``, empty by default). The CPU
and memory of the GPU steps follow the run's preset (:data:`GPU_POD_BY_PRESET`, looked up by the
``size-gpu-steps`` step at run time).

Every field written here must be one that KFP backend 2.15 knows (tests/test_kfp_backend_compat.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kfp import kubernetes
from kfp.dsl import PipelineTask

from rerec.pipeline.volumes import SETTINGS_ENV


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
    "small": Resources("250m", "1Gi", "1", "4Gi"),  # start-run, finish-run, resolve-champion, volumes, sizes
    "trainjob": Resources("250m", "1Gi", "2", "8Gi"),  # rft-trainjob: stages the inputs, waits, copies the model
    "data": Resources("1", "4Gi", "4", "16Gi"),  # prepare-data, build-graphs
    "reward": Resources("2", "8Gi", "8", "16Gi"),  # train-reward-gnn (CPU)
    "register": Resources("500m", "4Gi", "2", "8Gi"),  # uploads the model folder
}
_GPU_POD = Resources("8", "48Gi", "16", "96Gi")  # per GPU step's pod (the GPUs come on top)
DEFAULT_RESOURCES.update(sft=_GPU_POD, rft=_GPU_POD, evaluate=_GPU_POD)
#: CPU and memory of a GPU step's pod by preset (the run-time parameter), requests small enough for common
#: one-GPU nodes (8 vCPU / 32 GiB takes smollm2; 16 vCPU / 64 GiB the paper's 3B model). A preset not listed
#: gets ``_GPU_POD``. Limits may exceed a node: the scheduler places pods by their requests.
GPU_POD_BY_PRESET: dict[str, Resources] = {
    "smoke": Resources("1", "4Gi", "4", "16Gi"),
    "tiny": Resources("1", "4Gi", "4", "16Gi"),
    "default": Resources("4", "16Gi", "8", "28Gi"),
    "smollm2": Resources("4", "16Gi", "8", "28Gi"),
    "paper": Resources("8", "48Gi", "16", "96Gi"),
}
GPU_KINDS = ("sft", "rft", "evaluate")


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
    checkpoint_volumes: bool = field(default=True, metadata={
        "help": "One RFT checkpoint volume per run and arm (the checkpoint-volume step; false: none)."})
    checkpoint_config_map: str = field(default="rerec-checkpoints", metadata={
        "help": "ConfigMap with the checkpoint volumes' storage class, access mode and size."})
    checkpoint_mount: str = field(default="/mnt/checkpoints", metadata={"help": "Where the checkpoint volume is mounted."})
    rft_nodes: int = field(default=1, metadata={"help": "Nodes for RFT; >1 runs it as a Kubeflow Trainer TrainJob."})
    gpus_per_node: int = field(default=8, metadata={"help": "GPUs per node of the multi-node TrainJob."})
    trainer_api: str = field(default="v2.1", metadata={
        "help": "TrainJob shape: v2.1 (Trainer 2.1, Kubeflow 1.11 and 26.03) or v2.2 (Trainer 2.2 and newer)."})
    size_gpu_steps_by_preset: bool = field(default=True, metadata={
        "help": "GPU steps' CPU and memory from GPU_POD_BY_PRESET at run time (false: resources['sft'|...])."})
    rft_retries: int = field(default=2, metadata={"help": "Retries of an rft step (each resumes from its checkpoint)."})
    timeouts_s: tuple[tuple[str, int], ...] = field(
        default=(("data", 2 * 3600), ("reward", 4 * 3600), ("sft", 12 * 3600), ("rft", 48 * 3600),
                 ("evaluate", 6 * 3600), ("small", 3600), ("register", 2 * 3600),
                 # the rft-trainjob step waits for the TrainJob: the job's deadline and an hour to stage and copy
                 ("trainjob", 49 * 3600)),
        metadata={"help": "Seconds a step's pod may run (activeDeadlineSeconds) per kind of step."})
    kubernetes: bool = field(default=True, metadata={"help": "Apply Kubernetes settings (false for the local runner)."})

    @classmethod
    def local(cls) -> ClusterOptions:
        return cls(sft_gpus=0, rft_gpus=0, eval_gpus=0, checkpoint_volumes=False, size_gpu_steps_by_preset=False,
                   kubernetes=False)

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
                 node_selector=None, tolerations=None, retries: int = 0, sizes: PipelineTask | None = None
                 ) -> PipelineTask:
    """What every step gets on a cluster: credentials from the Secrets, requests and limits, a deadline;
    GPU steps also their GPUs, ``REREC_REQUIRE_GPU=1`` and the run-time node
    selector and tolerations; resumable steps retries. ``sizes``: the size-gpu-steps task, whose outputs
    then give the CPU and memory of a GPU kind of step."""
    if gpus > 0:
        task.set_accelerator_type(options.accelerator_type).set_accelerator_limit(gpus)
        task.set_env_variable("REREC_REQUIRE_GPU", "1")
    if not options.kubernetes:
        return task
    res = options.resources_for(kind)
    if sizes is not None and kind in GPU_KINDS:
        res = Resources(*(sizes.outputs[f] for f in ("cpu", "memory", "cpu_limit", "memory_limit")))
        # the compiler passes a channel into a nested DAG (a condition branch) only when it is registered
        task.register_pipeline_channels([res.cpu, res.memory, res.cpu_limit, res.memory_limit])
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


def with_checkpoints(task: PipelineTask, options: ClusterOptions, volume: PipelineTask | None) -> PipelineTask:
    """RFT checkpoints on the run's volume (``volume``: the checkpoint-volume task, whose output is the
    claim's name) so that a restarted pod resumes instead of starting over."""
    if options.kubernetes and volume is not None:
        kubernetes.mount_pvc(task, pvc_name=volume.output, mount_path=options.checkpoint_mount)
        task.set_env_variable("REREC_CHECKPOINT_DIR", options.checkpoint_mount)
    return task


def with_checkpoint_settings(task: PipelineTask, options: ClusterOptions) -> PipelineTask:
    """The checkpoint-volume step reads storage class, access mode and size from the ConfigMap."""
    kubernetes.use_config_map_as_env(task, config_map_name=options.checkpoint_config_map,
                                     config_map_key_to_env={v: v for v in SETTINGS_ENV.values()}, optional=True)
    return task
