"""RFT on several nodes as a Kubeflow Trainer ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``).

:func:`trainjob_manifest` builds the object (a pure function, validated against a schema in the tests);
:func:`run_trainjob` creates it through the Kubernetes API, follows it and deletes it when it runs past
its deadline. The job uses the ``torch-distributed`` ClusterTrainingRuntime that Trainer ships: each of
``num_nodes`` pods runs ``torchrun`` with ``gpus_per_node`` processes (the runtime passes the node
count, node rank and master address as ``PET_*`` variables), and every process runs
:mod:`rerec.train.distributed`: all ranks train, rank 0 alone writes the model folder and the MLflow run.

The pods mount the run's checkpoint volume (it must be ReadWriteMany when the nodes differ) where the
pipeline staged the inputs and where checkpoints and the output go, a memory-backed ``/dev/shm`` (NCCL's
shared memory between the ranks of a node; a container runtime's default is 64 MB), run without an Istio
sidecar (a profile namespace injects one, and a sidecar keeps a finished pod running and sits between the
ranks), and get the S3 and MLflow credentials from the same Secrets as the pipeline steps.

Two shapes of the same request, by Trainer API (:data:`TRAINER_APIS`): ``v2.1`` (Kubeflow Trainer 2.1, what
the Kubeflow platform releases 1.11 and 26.03 ship) takes pod changes as ``podTemplateOverrides`` and has no
deadline of its own; ``v2.2`` (Trainer 2.2 and newer) takes them as ``runtimePatches`` and gets
``activeDeadlineSeconds``. Either way :func:`run_trainjob` deletes a job that runs past its deadline.

Why not the Kubeflow SDK's ``TrainerClient`` (``kubeflow`` on PyPI): its 0.5 release requires
``kubeflow-trainer-api`` 2.3 and writes ``runtimePatches``, which the Trainer 2.1 of the platform releases
refuses; it would also add three packages to the runtime images for what is one create, one poll and one
delete here.

A job created again for the same pipeline run (a retried step) keeps its name, so a failed one is replaced
and resumes from the volume's checkpoints, and a running one is followed rather than duplicated. The job
has no owner: a step's pod that is killed or retried must not take a running job with it; the step
deletes the job when it is done, and the nightly prune (:func:`rerec.pipeline.volumes.prune`) deletes what a
failed run left.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rerec.errors import RerecError

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
RUNTIME = "torch-distributed"
#: the replicated job and container that the torch-distributed runtime names "node"
NODE = "node"
MANAGER = "rerec.io/pipeline"
VOLUME = "checkpoints"
SHM = "dshm"
#: the TrainJob API shapes this module writes (see the module docstring)
TRAINER_APIS = ("v2.1", "v2.2")
POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}


@dataclass(frozen=True)
class SecretEnv:
    """Environment variables taken from a Secret's keys (``optional``: the keys may be absent)."""

    secret: str
    keys: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class TrainJobSpec:
    name: str
    image: str
    args: tuple[str, ...]  # arguments of rerec.train.distributed
    num_nodes: int
    gpus_per_node: int
    pvc: str
    mount_path: str
    timeout_s: int
    env: dict[str, str] = field(default_factory=dict)
    secret_env: tuple[SecretEnv, ...] = ()
    cpu: str = "8"
    memory: str = "64Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    shm_size: str = "16Gi"  # the memory-backed /dev/shm of each node (counts against its memory)
    trainer_api: str = "v2.1"
    runtime: str = RUNTIME


def job_name(kfp_run_id: str, arm: str = "rft") -> str:
    """A DNS-1035 name that is the same for every attempt of one pipeline run's step."""
    digest = hashlib.sha256(f"{kfp_run_id}/{arm}".encode()).hexdigest()[:10]
    return f"rerec-{arm.replace('_', '-')}-{digest}"[:63]


def trainjob_manifest(spec: TrainJobSpec) -> dict[str, Any]:
    """The ``TrainJob`` object for :func:`run_trainjob` (see the module docstring)."""
    from rerec.train.distributed import ENTRY_MODULE

    if spec.num_nodes < 1 or spec.gpus_per_node < 1:
        raise RerecError(f"A TrainJob needs at least one node and one GPU per node, got {spec.num_nodes} node(s) x "
                         f"{spec.gpus_per_node} GPU(s). Fix: set rft_nodes and gpus_per_node.")
    if spec.trainer_api not in TRAINER_APIS:
        raise RerecError(f"Unknown Trainer API '{spec.trainer_api}'. Fix: one of {', '.join(TRAINER_APIS)}.")
    env: list[dict] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    for source in spec.secret_env:
        for key in source.keys:
            ref = {"name": source.secret, "key": key, **({"optional": True} if source.optional else {})}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    pod_patch: dict[str, Any] = {
        "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": spec.pvc}},
                    {"name": SHM, "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}],
        "containers": [{"name": NODE, "volumeMounts": [{"name": VOLUME, "mountPath": spec.mount_path},
                                                       {"name": SHM, "mountPath": "/dev/shm"}]}],
    }
    if spec.node_selector:
        pod_patch["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_patch["tolerations"] = [dict(t) for t in spec.tolerations]
    metadata: dict[str, Any] = {"name": spec.name, "labels": {"app.kubernetes.io/part-of": "rerec", **spec.labels}}
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": metadata,
        "spec": {
            "runtimeRef": {"name": spec.runtime},
            "trainer": {
                "image": spec.image,
                # torchrun takes --nnodes, --node-rank and the master address from the runtime's PET_* variables
                "command": ["torchrun", f"--nproc-per-node={spec.gpus_per_node}", "-m", ENTRY_MODULE, *spec.args],
                "numNodes": spec.num_nodes,
                "numProcPerNode": spec.gpus_per_node,
                "resourcesPerNode": {
                    "requests": {"cpu": spec.cpu, "memory": spec.memory, "nvidia.com/gpu": str(spec.gpus_per_node)},
                    "limits": {"memory": spec.memory, "nvidia.com/gpu": str(spec.gpus_per_node)},
                },
                "env": env,
            },
        },
    }
    if spec.trainer_api == "v2.1":
        body["spec"]["podTemplateOverrides"] = [{
            "targetJobs": [{"name": NODE}], "metadata": {"annotations": dict(POD_ANNOTATIONS)}, "spec": pod_patch}]
    else:
        body["spec"]["activeDeadlineSeconds"] = int(spec.timeout_s)
        body["spec"]["runtimePatches"] = [{
            "manager": MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [{
                "name": NODE, "template": {"spec": {"template": {
                    "metadata": {"annotations": dict(POD_ANNOTATIONS)}, "spec": pod_patch}}},
            }]}}},
        }]
    return body


def conditions(job: dict) -> dict[str, str]:
    return {c.get("type"): c.get("status") for c in (job.get("status") or {}).get("conditions") or []}


def run_trainjob(api: Any, namespace: str, body: dict, *, timeout_s: float, poll_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] = print) -> dict:
    """Create ``body`` (or follow the job of that name when it is already running), wait until it is
    Complete, delete it and return it. A Failed job (kept for its logs), or one still running ``timeout_s``
    after this call began, raises :class:`RerecError`; the timed-out job is deleted first, with its pods, so
    no GPUs stay held.

    ``api`` is a ``kubernetes.client.CustomObjectsApi`` (or anything with its four methods)."""
    from kubernetes.client.exceptions import ApiException

    name = body["metadata"]["name"]
    args = (GROUP, VERSION, namespace, PLURAL)
    try:
        existing = api.get_namespaced_custom_object(*args, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        existing = None
    if existing is not None and conditions(existing).get("Failed") == "True":
        log(f"TrainJob {name} failed in an earlier attempt: replacing it (it resumes from the volume's checkpoints)")
        _delete(api, args, name)
        existing = None
    if existing is None:
        api.create_namespaced_custom_object(*args, body)
        log(f"TrainJob {name} created in {namespace}")
    else:
        log(f"TrainJob {name} already exists (an earlier attempt of this step): following it")
    deadline = clock() + timeout_s
    while True:
        job = api.get_namespaced_custom_object(*args, name)
        state = conditions(job)
        if state.get("Complete") == "True":
            _delete(api, args, name)  # its output is on the volume; a finished job holds nothing else
            log(f"TrainJob {name} complete (deleted)")
            return job
        if state.get("Failed") == "True":
            reasons = [f"{c.get('reason')}: {c.get('message')}" for c in job["status"]["conditions"]
                       if c.get("type") == "Failed"]
            raise RerecError(f"TrainJob {name} failed ({'; '.join(reasons)[:500]}). Fix: read its pods' logs "
                             f"(kubectl -n {namespace} logs -l jobset.sigs.k8s.io/jobset-name={name}), then retry "
                             "the pipeline step: it resumes from the last checkpoint on the volume.")
        if clock() > deadline:
            _delete(api, args, name)
            raise RerecError(f"TrainJob {name} did not finish within {timeout_s:.0f} s and was deleted. Fix: raise "
                             "rft_timeout_s, or give it more nodes; a retry resumes from the last checkpoint.")
        sleep(poll_s)


def _delete(api: Any, args: tuple, name: str) -> None:
    from kubernetes.client import V1DeleteOptions
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(*args, name, body=V1DeleteOptions(propagation_policy="Foreground"))
    except ApiException as exc:
        if exc.status != 404:
            raise
