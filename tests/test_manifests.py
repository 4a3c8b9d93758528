"""Kustomize manifests rendered with `kubectl kustomize`: non-root, read-only roots, no plaintext
credentials, least-privilege RBAC, secrets wired by reference."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def rendered():
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests" / "base")], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return out, {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _pod_specs(objs):
    for (kind, name), obj in objs.items():
        if kind == "Deployment":
            yield name, obj["spec"]["template"]["spec"]
        elif kind == "Job":
            yield name, obj["spec"]["template"]["spec"]


def test_expected_objects(rendered):
    _, objs = rendered
    assert {("Deployment", "mlflow"), ("Service", "mlflow"), ("ServiceAccount", "rerec-pipeline-runner"),
            ("Role", "rerec-pipeline-runner"), ("RoleBinding", "rerec-pipeline-runner"),
            ("PersistentVolumeClaim", "rerec-rft-checkpoints"), ("ConfigMap", "rerec-schedule"),
            ("Job", "rerec-schedule")} <= set(objs)
    assert all(o["metadata"].get("namespace") == "rerec" for (k, _), o in objs.items() if k != "Namespace")
    assert not any(kind == "Secret" for kind, _ in objs), "real Secrets must not be part of the base"


def test_containers_non_root_read_only(rendered):
    _, objs = rendered
    for name, spec in _pod_specs(objs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])), name
            assert "limits" in c["resources"], name
            assert not c["image"].endswith(":latest") and ":" in c["image"], name


def test_mlflow_server_reads_stores_from_secrets(rendered):
    _, objs = rendered
    c = objs[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    for var in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "rerec-mlflow-server"
        assert "value" not in env[var]
    assert {"secretRef": {"name": "rerec-s3"}} in c["envFrom"]
    assert "--artifacts-destination=$(MLFLOW_ARTIFACTS_DESTINATION)" in c["args"]


def test_rbac_least_privilege(rendered):
    _, objs = rendered
    assert not any(kind in ("ClusterRole", "ClusterRoleBinding") for kind, _ in objs)
    rules = objs[("Role", "rerec-pipeline-runner")]["rules"]
    allowed = {"get", "list", "watch", "create"}
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert set(rule["verbs"]) <= allowed, rule
        assert "secrets" not in rule["resources"]
        if "create" in rule["verbs"]:
            assert rule["resources"] == ["trainjobs"], rule
    binding = objs[("RoleBinding", "rerec-pipeline-runner")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rerec-pipeline-runner", "namespace": "rerec"}]
    assert ("Role", "rerec-scheduler") not in objs


def test_recurring_run_job_calls_rerec_schedule(rendered):
    _, objs = rendered
    c = objs[("Job", "rerec-schedule")]["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["rerec", "schedule"]
    cfg = objs[("ConfigMap", "rerec-schedule")]["data"]
    assert len(cfg["SCHEDULE_CRON"].split()) == 6 and cfg["KFP_HOST"].startswith("http")


def test_no_plaintext_credentials(rendered):
    text, _ = rendered
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(?i)(secret_access_key|password|token)\s*:\s*['\"]?[A-Za-z0-9/+=]{8,}", text)
    assert "stringData" not in text and "kind: Secret" not in text


def test_secret_template_has_placeholders_only():
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "secrets" / "template.yaml").read_text()) if d]
    assert {d["metadata"]["name"] for d in docs} == {"rerec-s3", "rerec-mlflow", "rerec-mlflow-server"}
    for d in docs:
        for key, value in d["stringData"].items():
            if key != "MLFLOW_TRACKING_URI":
                assert value == "CHANGE_ME", (d["metadata"]["name"], key)
    # the names the pipelines read are exactly the keys the template defines
    from pipelines.options import MLFLOW_AUTH_ENV, MLFLOW_ENV, S3_ENV

    by_name = {d["metadata"]["name"]: set(d["stringData"]) for d in docs}
    assert set(S3_ENV) == by_name["rerec-s3"] and set(MLFLOW_ENV) | set(MLFLOW_AUTH_ENV) == by_name["rerec-mlflow"]
