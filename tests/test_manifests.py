"""The kustomize manifests, rendered with `kubectl kustomize`: every object is validated against the Kubernetes
schemas (kubernetes-validate, strict: an unknown field is an error) or, for the Kubeflow custom resources,
against tests/schemas/; then what a Kubeflow profile namespace needs: non-root and read-only roots, no
plaintext credentials, least-privilege RBAC for the runner KFP uses there, MLflow's stores, auth and
allowed hosts, network policies, the checkpoint volume's parameters."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
#: the Kubernetes release the built-in kinds are checked against (Kubeflow 1.10 supports 1.29-1.31)
K8S_VERSION = "1.31"
CRD_SCHEMAS = {("kubeflow.org/v1", "Profile"): "profile.kubeflow.org.v1.json",
               ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjob.trainer.kubeflow.org.v1alpha1.json"}


def render(folder: Path, *flags: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", *flags, str(folder)], capture_output=True, text=True, timeout=60,
                         check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate(obj: dict) -> None:
    """One object against its schema: Kubernetes' own (strict) or ours for a Kubeflow kind; an object of a
    kind neither knows fails, so nothing reaches a cluster unchecked."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        schema = json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text())
        jsonschema.Draft202012Validator(schema).validate(obj)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def objs():
    docs = render(MANIFESTS / "overlays" / "cluster")
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize("folder", ["base", "overlays/cluster", "profile"])
def test_every_rendered_object_validates(folder):
    docs = render(MANIFESTS / folder)
    assert docs
    for obj in docs:
        validate(obj)


def test_secret_templates_validate_and_name_every_key_the_manifests_read(objs):
    template = [d for d in yaml.safe_load_all((MANIFESTS / "secrets" / "template.yaml").read_text()) if d]
    for obj in template:
        validate(obj)
    keys = {d["metadata"]["name"]: set(d["stringData"]) for d in template}
    text = json.dumps(list(objs.values()))
    read = {(m.group(1), m.group(2)) for m in re.finditer(r'"secretKeyRef": \{"name": "([^"]+)", "key": "([^"]+)"', text)}
    for obj in objs.values():
        for volume in obj.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            for item in volume.get("secret", {}).get("items", []):
                read.add((volume["secret"]["secretName"], item["key"]))
    assert read and all(key in keys.get(secret, set()) for secret, key in read), read - {
        (s, k) for s, ks in keys.items() for k in ks}
    for d in template:
        for key, value in d["stringData"].items():
            if key != "MLFLOW_TRACKING_URI":
                assert "CHANGE_ME" in value or key == "POSTGRES_USER", (d["metadata"]["name"], key)
    from pipelines.options import MLFLOW_AUTH_ENV, MLFLOW_ENV, S3_ENV

    assert set(S3_ENV) == keys["rerec-s3"] and set(MLFLOW_ENV) | set(MLFLOW_AUTH_ENV) == keys["rerec-mlflow"]


def test_a_typo_is_caught_by_the_validation():
    base = render(MANIFESTS / "base")
    cron = next(d for d in base if d["kind"] == "CronJob")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate({**cron, "spec": {**cron["spec"], "schedul": "* * * * *"}})
    profile = render(MANIFESTS / "profile")[0]
    with pytest.raises(jsonschema.ValidationError):
        validate({**profile, "spec": {"owner": {"kind": "User"}}})  # no name
    with pytest.raises(jsonschema.ValidationError):
        validate({**profile, "metadata": {"name": "rerec", "namespace": "rerec"}})  # cluster-scoped


def test_the_trainjob_the_pipeline_creates_validates():
    from rerec.pipeline.trainjob import SecretEnv, TrainJobSpec, job_name, trainjob_manifest

    spec = TrainJobSpec(name=job_name("3f2c9a8e-run"), image="ghcr.io/rerec/rerec:0.1.0-cuda",
                        args=("--data", "/mnt/checkpoints/x/data", "--resume"), num_nodes=2, gpus_per_node=8,
                        pvc="rerec-rft-checkpoints", mount_path="/mnt/checkpoints", timeout_s=86400,
                        env={"KFP_RUN_ID": "3f2c9a8e-run"}, secret_env=(SecretEnv("rerec-s3", ("AWS_ACCESS_KEY_ID",)),),
                        node_selector={"nvidia.com/gpu.product": "H100"},
                        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
                        trainer_api="v2.2")
    validate(trainjob_manifest(spec))


def test_the_checkpoint_volume_and_its_preparing_job_validate():
    from rerec.pipeline.volumes import VolumeSpec, prepare_job_manifest, pvc_manifest, volume_name

    spec = VolumeSpec(name=volume_name("3f2c9a8e-run"), image="ghcr.io/rerec/rerec:0.1.0-cpu", kfp_run_id="3f2c9a8e-run",
                      storage_class="standard", node_selector={"nvidia.com/gpu.product": "H100"},
                      tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},))
    validate({**pvc_manifest(spec), "metadata": {**pvc_manifest(spec)["metadata"], "namespace": "rerec"}})
    validate(prepare_job_manifest(spec))
    validate(pvc_manifest(VolumeSpec(name="x", image="i")))  # no storage class: the cluster's default


def _pod_specs(objs):
    for (kind, name), obj in objs.items():
        if kind in ("Deployment", "StatefulSet", "Job"):
            yield name, obj["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield name, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_profile_owns_the_namespace():
    (profile,) = render(MANIFESTS / "profile")
    assert profile["kind"] == "Profile" and profile["metadata"]["name"] == "rerec"
    base = render(MANIFESTS / "base")
    assert not any(d["kind"] == "Namespace" for d in base), "the Profile creates the namespace"
    assert all(d["metadata"].get("namespace") == "rerec" for d in base)


def test_containers_non_root_read_only(objs):
    needs_api = {"rerec-checkpoint-cleanup"}  # lists and deletes claims (its own ServiceAccount and Role)
    for name, spec in _pod_specs(objs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is (name in needs_api), name
        if name in needs_api:
            assert spec["serviceAccountName"] == name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])), name
            assert "limits" in c["resources"], name
            assert not c["image"].endswith(":latest") and ":" in c["image"], name


def test_rbac_lets_the_profile_runner_read_launcher_config_and_run_trainjobs(objs):
    assert not any(kind in ("ClusterRole", "ClusterRoleBinding") for kind, _ in objs)
    rules = objs[("Role", "rerec-pipeline-runner")]["rules"]
    allowed = {}
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                allowed[(group, resource)] = (set(rule["verbs"]), set(rule.get("resourceNames", [])))
    assert allowed[("", "configmaps")] == ({"get"}, {"kfp-launcher"})
    assert allowed[("", "secrets")] == ({"get"}, {"mlpipeline-minio-artifact", "rerec-s3"})
    assert allowed[("trainer.kubeflow.org", "trainjobs")][0] == {"create", "get", "list", "watch", "delete"}
    # the checkpoint-volume step (rerec.pipeline.volumes): the run's claim and the Job that prepares it
    assert allowed[("", "persistentvolumeclaims")] == ({"create", "get", "patch", "delete"}, set())
    assert allowed[("batch", "jobs")] == ({"create", "delete"}, set())
    assert allowed[("batch", "jobs/status")] == ({"get"}, set())
    assert set(allowed) == {("", "configmaps"), ("", "secrets"), ("trainer.kubeflow.org", "trainjobs"),
                            ("", "persistentvolumeclaims"), ("batch", "jobs"), ("batch", "jobs/status")}
    cleanup = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"])
               for r in objs[("Role", "rerec-checkpoint-cleanup")]["rules"]}
    assert cleanup == {("", "persistentvolumeclaims"): {"list", "delete"},
                       ("trainer.kubeflow.org", "trainjobs"): {"list", "delete"}}
    binding = objs[("RoleBinding", "rerec-pipeline-runner")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default-editor", "namespace": "rerec"}]
    job = objs[("Job", "rerec-schedule")]["spec"]["template"]["spec"]
    assert job["serviceAccountName"] == "default-editor"
    token = next(v for v in job["volumes"] if v["name"] == "kfp-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"


def test_mlflow_server_stores_auth_and_allowed_hosts(objs):
    c = objs[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    for var in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_AUTH_ADMIN_USERNAME",
                "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "rerec-mlflow-server" and "value" not in env[var]
    assert "--app-name=basic-auth" in c["args"] and "--allowed-hosts=$(MLFLOW_ALLOWED_HOSTS)" in c["args"]
    hosts = env["MLFLOW_ALLOWED_HOSTS"]["value"].split(",")
    assert {"mlflow.rerec.svc.cluster.local:*", "mlflow.rerec.svc:*", "mlflow:*"} <= set(hosts)
    assert c["image"].startswith("ghcr.io/rerec/rerec-mlflow:")
    dockerfile = (ROOT / "images" / "mlflow-server" / "Dockerfile").read_text()
    from importlib.metadata import version

    assert f"mlflow=={version('mlflow')}" in dockerfile and "psycopg2" in dockerfile and "Flask-WTF" in dockerfile
    template = (MANIFESTS / "secrets" / "template.yaml").read_text()
    # the driver the image carries, named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3
    assert template.count("postgresql+psycopg2://") == 2 and "postgresql://" not in template
    assert "mlflow-db.rerec.svc.cluster.local" in template
    db = objs[("StatefulSet", "mlflow-db")]
    assert db["spec"]["template"]["spec"]["containers"][0]["image"].startswith("postgres:")
    assert "CREATE DATABASE mlflow_auth" in objs[("ConfigMap", "mlflow-db-init")]["data"]["init.sql"]


def test_network_policies_fence_mlflow_and_its_database(objs):
    mlflow = objs[("NetworkPolicy", "mlflow")]["spec"]
    assert mlflow["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mlflow"}
    assert mlflow["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5000}]
    sources = mlflow["ingress"][0]["from"]
    # the Istio ingress gateway that docs/cluster.md routes people through (Kubeflow's istio-system install)
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
            "podSelector": {"matchLabels": {"istio": "ingressgateway"}}} in sources
    db = objs[("NetworkPolicy", "mlflow-db")]["spec"]
    assert db["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}],
                              "ports": [{"protocol": "TCP", "port": 5432}]}]


def test_checkpoint_volume_parameters_and_cleanup(objs, tmp_path):
    from rerec.pipeline.volumes import SETTINGS_ENV, VolumeSpec

    assert not any(kind == "PersistentVolumeClaim" for kind, _ in objs)  # one per run, made by the pipeline
    settings = objs[("ConfigMap", "rerec-checkpoints")]["data"]
    assert set(settings) == set(SETTINGS_ENV.values())
    spec = VolumeSpec.from_env(settings, name="x", image="i")
    assert (spec.storage_class, spec.access_mode, spec.size) == ("standard", "ReadWriteOnce", "200Gi")
    assert not any(kind == "ConfigMap" and name == "rerec-params" for kind, name in objs)  # local config only
    # another cluster: other parameters, same overlay
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    overlay = tmp_path / "manifests" / "overlays" / "cluster"
    (overlay / "params.env").write_text((overlay / "params.env").read_text()
                                        .replace("CHECKPOINT_STORAGE_CLASS=standard", "CHECKPOINT_STORAGE_CLASS=nfs-rwx")
                                        .replace("CHECKPOINT_ACCESS_MODE=ReadWriteOnce", "CHECKPOINT_ACCESS_MODE=ReadWriteMany")
                                        .replace("CHECKPOINT_SIZE=200Gi", "CHECKPOINT_SIZE=1Ti")
                                        .replace("MLFLOW_ALLOWED_HOSTS=", "MLFLOW_ALLOWED_HOSTS=mlflow.example.com,"))
    other = {(d["kind"], d["metadata"]["name"]): d for d in render(overlay)}
    spec = VolumeSpec.from_env(other[("ConfigMap", "rerec-checkpoints")]["data"], name="x", image="i")
    assert (spec.storage_class, spec.access_mode, spec.size) == ("nfs-rwx", "ReadWriteMany", "1Ti")
    env = {e["name"]: e for e in other[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_ALLOWED_HOSTS"]["value"].startswith("mlflow.example.com,")
    cron = objs[("CronJob", "rerec-checkpoint-cleanup")]["spec"]
    container = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3", "-m", "rerec.pipeline.volumes", "prune"]
    assert container["args"] == ["--older-than-days=7"]
    from rerec.pipeline.volumes import main

    with pytest.raises(SystemExit) as exit_:  # the arguments parse (the API calls need a cluster)
        main(["prune", *container["args"], "--help"])
    assert exit_.value.code == 0


def test_recurring_run_job_calls_rerec_schedule(objs):
    c = objs[("Job", "rerec-schedule")]["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["rerec", "schedule"] and "--data-uri=$(DATA_URI)" in c["args"]
    cfg = objs[("ConfigMap", "rerec-schedule")]["data"]
    assert len(cfg["SCHEDULE_CRON"].split()) == 6 and cfg["KFP_HOST"].startswith("http")


def test_no_plaintext_credentials(objs):
    text = yaml.safe_dump_all(list(objs.values()))
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(?i)(secret_access_key|password|token)[ \t]*:[ \t]*['\"]?[A-Za-z0-9/+=]{8,}", text)
    assert "stringData" not in text and "kind: Secret" not in text
