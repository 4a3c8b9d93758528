"""The compiled pipelines: no drift from the Python, the right DAG, and the cluster settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    env = {k: v for k, v in os.environ.items() if k != "REREC_IMAGE"}
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--out", str(out)], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    return out


@pytest.mark.parametrize("name", ["train.yaml", "retrain.yaml", "train_multinode.yaml"])
def test_checked_in_yaml_has_not_drifted(compiled, name):
    fresh = (compiled / name).read_text()
    assert (PIPELINES / name).exists(), f"pipelines/{name} is missing: run 'make compile' and commit it"
    assert (PIPELINES / name).read_text() == fresh, (
        f"pipelines/{name} drifted from the Python: run 'make compile' and commit the YAML")


def _docs(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return spec, platform


def _executors(spec):
    return spec["deploymentSpec"]["executors"]


def test_train_dag_order_and_components():
    spec, _ = _docs(PIPELINES / "train.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"prepare-data", "build-graphs", "train-reward-gnn", "sft-warmup", "rft", "evaluate",
                          "evaluate-2", "register"}
    assert tasks["evaluate-2"]["taskInfo"]["name"] == "evaluate-val"
    assert tasks["register"]["inputs"]["artifacts"]["report"]["taskOutputArtifact"]["producerTask"] == "evaluate-2"
    gate_default = spec["root"]["inputDefinitions"]["parameters"]["gate_eval_config"]["defaultValue"]
    assert '"split": "val"' in gate_default
    assert tasks["rft"]["dependentTasks"] == sorted(["build-graphs", "prepare-data", "sft-warmup",
                                                     "train-reward-gnn"])
    assert set(tasks["register"]["dependentTasks"]) == {"evaluate-2", "rft", "prepare-data"}
    # the registered model carries the catalog of the prepared data (docs/serving.md)
    assert tasks["register"]["inputs"]["artifacts"]["data"]["taskOutputArtifact"]["producerTask"] == "prepare-data"
    rft_inputs = tasks["rft"]["inputs"]["artifacts"]
    assert rft_inputs["base_model"]["taskOutputArtifact"] == {"outputArtifactKey": "model", "producerTask": "sft-warmup"}
    outputs = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["report_md"]["artifactType"]["schemaTitle"] == "system.Markdown"
    assert outputs["report_html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    for executor in _executors(spec).values():
        container = executor["container"]
        assert container["image"] == "ghcr.io/rerec/rerec:0.1.0-cpu"
        assert "pip install" not in " ".join(container["command"])  # install_kfp_package=False
    assert set(spec["root"]["inputDefinitions"]["parameters"]) >= {
        "input_dir", "rft_config", "register_config", "mlflow_tracking_uri", "mlflow_parent_run_id"}


def test_cluster_settings_in_compiled_yaml():
    spec, platform = _docs(PIPELINES / "train.yaml")
    resources = {name: ex["container"].get("resources", {}) for name, ex in _executors(spec).items()}
    for stage in ("exec-rft", "exec-sft-warmup"):
        assert resources[stage]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources[stage]["accelerator"]["resourceCount"] == "1"
        assert platform[stage]["nodeSelector"]["labels"] == {"rerec.io/pool": "gpu"}
        assert platform[stage]["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu",
                                                   "operator": "Exists"}]
    assert "accelerator" not in resources["exec-prepare-data"]
    assert platform["exec-rft"]["pvcMount"][0]["mountPath"] == "/mnt/checkpoints"
    assert platform["exec-rft"]["pvcMount"][0]["pvcNameParameter"]["runtimeValue"]["constant"] == "rerec-rft-checkpoints"
    assert {"name": "REREC_CHECKPOINT_DIR", "value": "/mnt/checkpoints"} in _executors(spec)["exec-rft"]["container"]["env"]
    for name, executor in platform.items():
        secrets = {}
        for s in executor["secretAsEnv"]:
            secret = s["secretNameParameter"]["runtimeValue"]["constant"]
            secrets.setdefault(secret, set()).update(k["envVar"] for k in s["keyToEnv"])
            if "MLFLOW_TRACKING_PASSWORD" in {k["envVar"] for k in s["keyToEnv"]}:
                assert s["optional"] is True
        assert secrets["rerec-s3"] >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"}, name
        assert "MLFLOW_TRACKING_URI" in secrets["rerec-mlflow"], name


def test_multinode_runs_rft_as_trainjob():
    spec, platform = _docs(PIPELINES / "train_multinode.yaml")
    rft = spec["root"]["dag"]["tasks"]["rft-trainjob"]
    assert "rft" not in spec["root"]["dag"]["tasks"]
    assert rft["componentRef"]["name"] == "comp-rft-trainjob"
    params = rft["inputs"]["parameters"]
    assert params["num_nodes"]["runtimeValue"]["constant"] == 2
    assert "TrainJob" in " ".join(_executors(spec)["exec-rft-trainjob"]["container"]["command"])
    assert "pvcMount" in platform["exec-rft-trainjob"]


def test_retrain_starts_from_the_champion():
    spec, _ = _docs(PIPELINES / "retrain.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert "sft-warmup" not in tasks
    assert tasks["rft"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]["producerTask"] == "resolve-champion"
    assert tasks["resolve-champion"]["cachingOptions"] == {}
    assert tasks["resolve-champion"]["inputs"]["parameters"]["alias"]["runtimeValue"]["constant"] == "champion"
    assert "register" in tasks


def test_no_credentials_in_compiled_yaml():
    import re

    for path in PIPELINES.glob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text)
        assert not re.search(r"(?i)(secret_access_key|password)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}", text), path


def test_image_override(tmp_path):
    env = {**os.environ, "REREC_IMAGE": "registry.example/rerec:9.9.9-cuda"}
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--out", str(tmp_path)], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    text = (tmp_path / "train.yaml").read_text()
    assert "registry.example/rerec:9.9.9-cuda" in text and "0.1.0-cpu" not in text
