"""RFT checkpoint volumes: one PersistentVolumeClaim per pipeline run and RFT arm, made writable for the
images' non-root user before the step that writes to it starts.

Why not one claim for every run: a ReadWriteOnce volume attaches to one node, so two runs (or two arms of
one run) on different nodes would wait on each other (Multi-Attach). Why a preparing Job: a fresh volume's
root is root-owned 0755, the pipeline steps run as uid 10001, and KFP (2.15) cannot give a step's pod an
``fsGroup``. The Job made here can: its pod runs as 10001 with ``fsGroup: 10001``, so the kubelet gives the
volume's root to group 10001 (group-writable, setgid) before the pod starts, and the Job checks that it
can create a folder there. After it, any pod running as 10001:10001 writes to the volume.

- :func:`ensure_checkpoint_volume` (the ``checkpoint-volume`` pipeline step): creates the claim and runs the
  preparing Job once; a retried step finds the claim prepared and returns at once.
- :func:`delete_checkpoint_volume` (``release-checkpoint-volume``, after the RFT step succeeded).
- :func:`prune` (``python -m rerec.pipeline.volumes prune``, the nightly CronJob): claims and TrainJobs of runs that
  failed and were not retried within ``older_than_days``.
- ``python -m rerec.pipeline.volumes probe PATH``: what the preparing Job runs.

The functions take the ``kubernetes`` client APIs (``CoreV1Api``, ``BatchV1Api``, ``CustomObjectsApi``) as
arguments, so the tests drive them with in-memory stand-ins.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rerec.errors import RerecError

#: the images' user and group (USER 10001:10001 in images/Dockerfile.*)
RUN_AS = 10001
LABEL = "rerec.io/checkpoints"
RUN_LABEL = "rerec.io/kfp-run"
PREPARED = "rerec.io/prepared"
#: the settings the overlay's params.env puts in the ConfigMap rerec-checkpoints (and their defaults)
SETTINGS_ENV = {"storage_class": "CHECKPOINT_STORAGE_CLASS", "access_mode": "CHECKPOINT_ACCESS_MODE",
                "size": "CHECKPOINT_SIZE"}


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    image: str
    kfp_run_id: str = "local"
    storage_class: str = ""  # "" : the cluster's default StorageClass
    access_mode: str = "ReadWriteOnce"
    size: str = "200Gi"
    mount_path: str = "/mnt/checkpoints"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **kwargs) -> VolumeSpec:
        env = os.environ if env is None else env
        given = {k: env[v] for k, v in SETTINGS_ENV.items() if env.get(v)}
        return cls(**{**given, **kwargs})


def volume_name(kfp_run_id: str, arm: str = "rft") -> str:
    """A DNS-1123 name, the same for every attempt of one run's arm."""
    digest = hashlib.sha256(f"{kfp_run_id}/{arm}".encode()).hexdigest()[:10]
    return f"rerec-ckpt-{arm.replace('_', '-')}-{digest}"[:63]


def _labels(spec: VolumeSpec) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "rerec", LABEL: "true", RUN_LABEL: spec.kfp_run_id[:63]}


def pvc_manifest(spec: VolumeSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": spec.name, "labels": _labels(spec)},
        "spec": {"accessModes": [spec.access_mode], "resources": {"requests": {"storage": spec.size}}},
    }
    if spec.storage_class:
        body["spec"]["storageClassName"] = spec.storage_class
    return body


def prepare_job_manifest(spec: VolumeSpec) -> dict[str, Any]:
    """The Job that makes the volume's root writable for uid 10001 (``fsGroup``) and checks it. It runs on
    the nodes the GPU steps use (their node selector and tolerations), so that a volume bound where this pod
    runs (``WaitForFirstConsumer``) is in a zone those steps can reach."""
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "prepare",
            "image": spec.image,
            "command": ["python3", "-m", "rerec.pipeline.volumes", "probe", spec.mount_path],
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "checkpoints", "mountPath": spec.mount_path}, {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": spec.name}},
                    {"name": "tmp", "emptyDir": {}}],
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{spec.name}-prepare"[:63], "labels": _labels(spec)},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 1800,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": _labels(spec), "annotations": {"sidecar.istio.io/inject": "false"}},
                         "spec": pod},
        },
    }


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def ensure_checkpoint_volume(core: Any, batch: Any, namespace: str, spec: VolumeSpec, *, timeout_s: float = 1800,
                             poll_s: float = 10, clock: Callable[[], float] = time.monotonic,
                             sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print) -> str:
    """The claim ``spec.name``, created and prepared (idempotent: a prepared claim is returned as it is)."""
    try:
        pvc = core.read_namespaced_persistent_volume_claim(spec.name, namespace)
    except Exception as exc:  # noqa: BLE001 - ApiException; only 404 is expected
        if _status(exc) != 404:
            raise
        pvc = None
    if pvc is not None and (_annotations(pvc).get(PREPARED) == "true"):
        log(f"checkpoint volume {spec.name} is prepared already (an earlier attempt of this run)")
        return spec.name
    if pvc is None:
        core.create_namespaced_persistent_volume_claim(namespace, pvc_manifest(spec))
        log(f"checkpoint volume {spec.name} created ({spec.access_mode}, {spec.size}, "
            f"storage class {spec.storage_class or 'the default'})")
    job = prepare_job_manifest(spec)
    job_name = job["metadata"]["name"]
    try:
        batch.create_namespaced_job(namespace, job)
    except Exception as exc:  # noqa: BLE001
        if _status(exc) != 409:  # 409: an earlier attempt's Job, followed below
            raise
    deadline = clock() + timeout_s
    while True:
        state = _job_state(batch.read_namespaced_job_status(job_name, namespace))
        if state == "Complete":
            break
        if state == "Failed" or clock() > deadline:
            raise RerecError(
                f"The checkpoint volume {spec.name} was not prepared ({state or 'still pending'} after "
                f"{timeout_s:.0f} s). Fix: kubectl -n {namespace} describe job {job_name} and pvc {spec.name} "
                "(a StorageClass that cannot provision, a quota, no node matching gpu_node_selector); then retry.")
        sleep(poll_s)
    core.patch_namespaced_persistent_volume_claim(spec.name, namespace,
                                                  {"metadata": {"annotations": {PREPARED: "true"}}})
    _delete(batch.delete_namespaced_job, job_name, namespace, propagation_policy="Background")
    log(f"checkpoint volume {spec.name} prepared for uid {RUN_AS}")
    return spec.name


def _annotations(obj: Any) -> dict:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    found = meta.get("annotations") if isinstance(meta, dict) else meta.annotations
    return dict(found or {})


def _job_state(job: Any) -> str:
    status = job["status"] if isinstance(job, dict) else job.status
    conditions = (status.get("conditions") if isinstance(status, dict) else status.conditions) or []
    for c in conditions:
        kind, value = (c["type"], c["status"]) if isinstance(c, dict) else (c.type, c.status)
        if kind in ("Complete", "Failed") and value == "True":
            return kind
    return ""


def _delete(call: Callable, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        if _status(exc) != 404:
            raise


def delete_checkpoint_volume(core: Any, namespace: str, name: str) -> None:
    """Delete a run's claim (Kubernetes keeps it until no pod uses it)."""
    _delete(core.delete_namespaced_persistent_volume_claim, name, namespace)


def _created(obj: Any) -> datetime:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    value = meta.get("creationTimestamp") if isinstance(meta, dict) else meta.creation_timestamp
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _name(obj: Any) -> str:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    return meta["name"] if isinstance(meta, dict) else meta.name


def _items(listing: Any) -> list:
    return listing["items"] if isinstance(listing, dict) else listing.items


def prune(core: Any, custom: Any | None, namespace: str, *, older_than_days: float, now: datetime | None = None,
          log: Callable[[str], None] = print) -> list[str]:
    """Delete the checkpoint claims (and rerec TrainJobs) created more than ``older_than_days`` ago: those of
    runs that failed and were not retried. A claim still in use is kept by Kubernetes until its pod ends."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    deleted = []
    for pvc in _items(core.list_namespaced_persistent_volume_claim(namespace, label_selector=f"{LABEL}=true")):
        if _created(pvc) < cutoff:
            delete_checkpoint_volume(core, namespace, _name(pvc))
            deleted.append(f"persistentvolumeclaim/{_name(pvc)}")
    if custom is not None:
        from rerec.pipeline.trainjob import GROUP, PLURAL, VERSION

        try:
            jobs = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                        label_selector="app.kubernetes.io/part-of=rerec")
        except Exception as exc:  # noqa: BLE001 - no Trainer installed: nothing to prune
            if _status(exc) != 404:
                raise
            jobs = {"items": []}
        for job in _items(jobs):
            if _created(job) < cutoff:
                _delete(custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, _name(job))
                deleted.append(f"trainjob/{_name(job)}")
    for what in deleted:
        log(f"deleted {what} (created before {cutoff:%Y-%m-%d %H:%M} UTC)")
    return deleted


def probe(path: Path) -> None:
    """Create, write and remove a folder under ``path``: what every checkpoint writer needs."""
    try:
        folder = Path(tempfile.mkdtemp(prefix=".rerec-probe-", dir=path))
        (folder / "ok").write_text("ok", encoding="utf-8")
        (folder / "ok").unlink()
        folder.rmdir()
    except OSError as exc:
        st = path.stat() if path.exists() else None
        owner = f"owner {st.st_uid}:{st.st_gid}, mode {st.st_mode & 0o7777:o}" if st else "missing"
        raise RerecError(f"{path} is not writable for uid {os.getuid()} ({owner}): {exc}. Fix: the pod needs "
                         f"fsGroup {RUN_AS} (the checkpoint-volume step's Job sets it).") from exc


def _in_cluster() -> tuple[Any, str]:
    from kubernetes import client, config

    config.load_incluster_config()
    namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    return client, namespace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rerec.pipeline.volumes", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="check that a folder can be created under PATH")
    p.add_argument("path", type=Path)
    p = sub.add_parser("prune", help="delete checkpoint volumes and TrainJobs of runs older than N days")
    p.add_argument("--older-than-days", type=float, default=7.0)
    p.add_argument("--namespace", default="", help="default: this pod's namespace")
    args = parser.parse_args(argv)
    try:
        if args.command == "probe":
            probe(args.path)
            print(f"{args.path} is writable for uid {os.getuid()}")
        else:
            client, namespace = _in_cluster()
            prune(client.CoreV1Api(), client.CustomObjectsApi(), args.namespace or namespace,
                  older_than_days=args.older_than_days)
    except RerecError as exc:
        print(f"rerec.pipeline.volumes: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
