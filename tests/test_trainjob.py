"""The multi-node RFT TrainJob: the object (command, volume, shared memory, no sidecar, secrets, deadline) for
the Trainer API that Kubeflow 1.11 and 26.03 ship (2.1, checked against that release's CRD schema) and for
Trainer 2.2+, and how the step follows it, against an in-memory stand-in for the Kubernetes custom-objects
API (no cluster here)."""

import json
from pathlib import Path

import jsonschema
import pytest
from kubernetes.client.exceptions import ApiException

from rerec.errors import RerecError
from rerec.pipeline.trainjob import SecretEnv, TrainJobSpec, job_name, run_trainjob, trainjob_manifest


def spec(**kw):
    base = dict(name=job_name("run-1"), image="img:1", args=("--data", "/mnt/c/d", "--resume"), num_nodes=2,
                gpus_per_node=4, pvc="rerec-rft-checkpoints", mount_path="/mnt/c", timeout_s=600,
                env={"KFP_RUN_ID": "run-1"}, secret_env=(SecretEnv("rerec-s3", ("AWS_ACCESS_KEY_ID",)),
                                                         SecretEnv("rerec-mlflow", ("MLFLOW_TRACKING_PASSWORD",), True)))
    return TrainJobSpec(**{**base, **kw})


SCHEMA_V21 = Path(__file__).resolve().parent / "schemas" / "trainer" / "trainjob.trainer.kubeflow.org.v2.1.0.json"


def strict(schema):
    """A CRD's structural schema with unknown fields refused (kubectl's strict field validation)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get(
                "x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    return [strict(v) for v in schema] if isinstance(schema, list) else schema


def validate_v21(body):
    jsonschema.Draft202012Validator(strict(json.loads(SCHEMA_V21.read_text()))).validate(body)


def _pod_v21(body):
    (override,) = body["spec"]["podTemplateOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    return override["metadata"], override["spec"]


def _pod_v22(body):
    job = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    template = job["template"]["spec"]["template"]
    return template["metadata"], template["spec"]


def test_trainer_21_manifest_validates_against_its_crd():
    body = trainjob_manifest(spec(node_selector={"gpu": "h100"},
                                  tolerations=({"key": "nvidia.com/gpu", "operator": "Exists"},)))
    validate_v21(body)
    assert "activeDeadlineSeconds" not in body["spec"] and "runtimePatches" not in body["spec"]  # not in 2.1
    with pytest.raises(jsonschema.ValidationError):  # what the 2.2+ shape would meet on a 2.1 cluster
        validate_v21(trainjob_manifest(spec(trainer_api="v2.2")))
    with pytest.raises(RerecError, match="Unknown Trainer API"):
        trainjob_manifest(spec(trainer_api="v3"))


@pytest.mark.parametrize(("api", "pod_of"), [("v2.1", _pod_v21), ("v2.2", _pod_v22)])
def test_pods_get_the_volume_shared_memory_and_no_sidecar(api, pod_of):
    body = trainjob_manifest(spec(trainer_api=api))
    meta, pod = pod_of(body)
    assert meta == {"annotations": {"sidecar.istio.io/inject": "false"}}
    assert pod["volumes"] == [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "rerec-rft-checkpoints"}},
                              {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
    assert pod["containers"] == [{"name": "node", "volumeMounts": [{"name": "checkpoints", "mountPath": "/mnt/c"},
                                                                   {"name": "dshm", "mountPath": "/dev/shm"}]}]
    assert "ownerReferences" not in body["metadata"]  # a killed or retried step must not take the job with it
    assert (body["spec"].get("activeDeadlineSeconds") == 600) == (api == "v2.2")


def test_manifest_runs_torchrun_on_every_node_with_the_volume_and_secrets():
    body = trainjob_manifest(spec(trainer_api="v2.2"))
    trainer = body["spec"]["trainer"]
    assert trainer["command"][:3] == ["torchrun", "--nproc-per-node=4", "-m"]
    assert trainer["command"][3:] == ["rerec.train.distributed", "--data", "/mnt/c/d", "--resume"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    env = {e["name"]: e for e in trainer["env"]}
    assert env["KFP_RUN_ID"]["value"] == "run-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "rerec-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert body["spec"]["activeDeadlineSeconds"] == 600 and body["spec"]["runtimeRef"] == {"name": "torch-distributed"}
    _, pod = _pod_v22(body)
    assert "nodeSelector" not in pod and "tolerations" not in pod
    with pytest.raises(RerecError, match="at least one node"):
        trainjob_manifest(spec(num_nodes=0))
    # the name is stable across attempts of one step, and differs between arms and runs
    assert job_name("run-1") == job_name("run-1") != job_name("run-1", "plain_grpo") != job_name("run-2")


class FakeTrainJobs:
    """CustomObjectsApi's four calls over a dict; ``script`` gives the status conditions each get returns."""

    def __init__(self, script=(), existing=None):
        self.jobs, self.script, self.calls = dict(existing or {}), list(script), []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", name))
        if name not in self.jobs:
            raise ApiException(status=404)
        if self.script:
            self.jobs[name]["status"] = {"conditions": self.script.pop(0)}
        return self.jobs[name]

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", body["metadata"]["name"]))
        self.jobs[body["metadata"]["name"]] = body

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body=None):
        self.calls.append(("delete", name))
        self.jobs.pop(name, None)


RUNNING = [{"type": "Created", "status": "True"}]
COMPLETE = [{"type": "Complete", "status": "True"}]
FAILED = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "node-0 exit 1"}]


def run(api, **kw):
    clock = iter(range(0, 10_000, 10))
    return run_trainjob(api, "rerec", trainjob_manifest(spec()), timeout_s=kw.get("timeout_s", 100), poll_s=0,
                        clock=lambda: next(clock), sleep=lambda s: None, log=lambda m: None)


def test_created_then_followed_to_completion_then_deleted():
    api = FakeTrainJobs(script=[RUNNING, RUNNING, COMPLETE])
    job = run(api)
    assert job["status"]["conditions"] == COMPLETE
    assert [c[0] for c in api.calls] == ["get", "create", "get", "get", "get", "delete"] and not api.jobs


def test_failure_is_one_clear_error_and_the_job_stays_for_its_logs():
    api = FakeTrainJobs(script=[RUNNING, FAILED])
    with pytest.raises(RerecError, match="BackoffLimitExceeded: node-0 exit 1.*resumes from the last checkpoint"):
        run(api)
    assert ("delete", job_name("run-1")) not in api.calls


def test_past_the_deadline_the_job_is_deleted():
    api = FakeTrainJobs(script=[RUNNING] * 100)
    with pytest.raises(RerecError, match="did not finish within 100 s and was deleted"):
        run(api, timeout_s=100)
    assert api.calls[-1] == ("delete", job_name("run-1")) and not api.jobs


def test_a_retried_step_follows_a_running_job_and_replaces_a_failed_one():
    name = job_name("run-1")
    running = FakeTrainJobs(script=[RUNNING, COMPLETE], existing={name: {"metadata": {"name": name}}})
    run(running)
    assert "create" not in [c[0] for c in running.calls]
    failed = FakeTrainJobs(script=[FAILED, RUNNING, COMPLETE], existing={name: {"metadata": {"name": name}}})
    run(failed)
    assert [c[0] for c in failed.calls][:3] == ["get", "delete", "create"]
