"""The compiled pipelines: no drift from the Python, the DAG, the parameters a person sees in the Kubeflow UI,
and the cluster settings of every step."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rerec.pipeline.params import TrainParams

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
GPU_STEPS = {"sft-warmup", "rft", "rft-plain-grpo", "evaluate-test", "evaluate-val"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    env = {k: v for k, v in os.environ.items() if k not in ("REREC_CPU_IMAGE", "REREC_GPU_IMAGE")}
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--out", str(out)], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=180)
    return out


@pytest.mark.parametrize("name", ["train.yaml", "retrain.yaml", "train_multinode.yaml"])
def test_checked_in_yaml_has_not_drifted(compiled, name):
    fresh = (compiled / name).read_text()
    assert (PIPELINES / name).exists(), f"pipelines/{name} is missing: run 'make compile' and commit it"
    assert (PIPELINES / name).read_text() == fresh, (
        f"pipelines/{name} drifted from the Python: run 'make compile' and commit the YAML")


def _load(name):
    docs = list(yaml.safe_load_all((PIPELINES / name).read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return docs[0], platform


def _tasks(spec) -> dict[str, dict]:
    """Every task of every DAG (root, exit handler, condition branches), by display name."""
    found = {}
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            if "componentRef" in task and not task["componentRef"]["name"].startswith(("comp-exit-handler",
                                                                                       "comp-condition")):
                found.setdefault(task["taskInfo"]["name"], []).append(task)
    return found


def _producer(artifact: dict) -> str:
    """The task an artifact input comes from, also inside a condition branch (where the branch's DAG passes it
    on as ``pipelinechannel--<task>-<output>``)."""
    if "taskOutputArtifact" in artifact:
        return artifact["taskOutputArtifact"]["producerTask"]
    return artifact["componentInputArtifact"].removeprefix("pipelinechannel--")


def _executor(spec, task):
    component = spec["components"][task["componentRef"]["name"]]
    return component["executorLabel"], spec["deploymentSpec"]["executors"][component["executorLabel"]]


def test_ui_parameters_are_typed_and_described():
    spec, _ = _load("train.yaml")
    params = spec["root"]["inputDefinitions"]["parameters"]
    expected = {"preset": "STRING", "data_uri": "STRING", "base_model": "STRING", "sft_steps": "NUMBER_INTEGER",
                "rft_steps": "NUMBER_INTEGER", "rft_lr": "NUMBER_DOUBLE", "reward_weights": "STRING",
                "ablation": "STRING", "plain_grpo_arm": "BOOLEAN", "model_name": "STRING",
                "gpu_node_selector": "STRUCT", "gpu_tolerations": "LIST", "config_overrides": "STRING"}
    assert {k: v["parameterType"] for k, v in params.items()} == expected
    assert all(len(v.get("description", "")) > 20 for v in params.values()), params
    defaults = TrainParams()
    assert params["preset"]["defaultValue"] == defaults.preset and params["plain_grpo_arm"]["defaultValue"] is False
    assert params["gpu_node_selector"]["defaultValue"] == {} and params["gpu_tolerations"]["defaultValue"] == []
    # no internal plumbing: neither the parent-run id, nor per-stage JSON, nor a tracking URI
    assert not any("parent" in k or k.endswith("_config") or "tracking" in k for k in params)
    retrain = _load("retrain.yaml")[0]["root"]["inputDefinitions"]["parameters"]
    assert "isOptional" not in retrain["data_uri"] and "plain_grpo_arm" not in retrain


def test_train_dag_and_the_optional_plain_grpo_arm():
    spec, _ = _load("train.yaml")
    tasks = _tasks(spec)
    assert set(tasks) == {"start-run", "finish-run", "prepare-data", "build-graphs", "train-reward-gnn", "sft-warmup",
                          "rft", "resolve-champion", "rft-plain-grpo", "evaluate-test", "evaluate-val", "register",
                          "size-gpu-steps", "checkpoint-volume", "release-checkpoint-volume",
                          "checkpoint-volume-plain-grpo", "release-checkpoint-volume-plain-grpo"}
    assert len(tasks["evaluate-val"]) == len(tasks["register"]) == 2  # one per branch; one branch runs
    (arm,) = tasks["rft-plain-grpo"]
    assert _producer(arm["inputs"]["artifacts"]["base_model"]) == "sft-warmup-model"
    assert _producer(arm["inputs"]["artifacts"]["same_budget_as"]) == "rft-model"
    assert arm["inputs"]["parameters"]["config_json"]["componentInputParameter"] == "pipelinechannel--start-run-plain_grpo"
    branches = {t["taskInfo"]["name"]: t for c in spec["components"].values()
                for t in c.get("dag", {}).get("tasks", {}).values() if "triggerPolicy" in t}
    condition = branches["with-plain-grpo-arm"]["triggerPolicy"]["condition"]
    assert "plain_grpo_arm" in condition and "true" in condition
    with_arm = [t for t in tasks["evaluate-test"] if "plain_grpo_model" in t["inputs"]["artifacts"]]
    assert len(with_arm) == 1 and _producer(with_arm[0]["inputs"]["artifacts"]["plain_grpo_model"]) == "rft-2"
    for val in tasks["evaluate-val"]:  # the gate ranks the challenger beside the champion, nothing it does not read
        assert set(val["inputs"]["artifacts"]) == {"data", "graphs", "reward", "rft_model", "champion_model"}
        assert _producer(val["inputs"]["artifacts"]["champion_model"]) == "resolve-champion-model"
    for test in tasks["evaluate-test"]:
        assert "sft_model" in test["inputs"]["artifacts"] and "champion_model" not in test["inputs"]["artifacts"]
    for register in tasks["register"]:
        assert register["inputs"]["parameters"]["champion_version"]["componentInputParameter"] == (
            "pipelinechannel--resolve-champion-Output")
        # the registered model carries the catalog of the prepared data (docs/serving.md)
        assert _producer(register["inputs"]["artifacts"]["data"]).startswith("prepare-data")
        report = register["inputs"]["artifacts"]["report"]["taskOutputArtifact"]["producerTask"]
        assert report.startswith("evaluate")
    # every stage takes its config and parent run from start-run; finish-run is the exit handler
    (rft,) = tasks["rft"]
    assert rft["inputs"]["parameters"]["mlflow_parent_run_id"]["taskOutputParameter"] == {
        "outputParameterKey": "parent_run_id", "producerTask": "start-run"}
    (finish,) = tasks["finish-run"]
    assert finish["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    outputs = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["report_html"]["artifactType"]["schemaTitle"] == "system.HTML"
    optional = spec["components"]["comp-evaluate"]["inputDefinitions"]["artifacts"]
    assert all(optional[k].get("isOptional") for k in ("sft_model", "plain_grpo_model", "champion_model"))


@pytest.mark.parametrize("name", ["train.yaml", "retrain.yaml", "train_multinode.yaml"])
def test_cluster_settings_of_every_step(name):
    spec, platform = _load(name)
    for display, instances in _tasks(spec).items():
        for task in instances:
            label, executor = _executor(spec, task)
            container, k8s = executor["container"], platform[label]
            gpu = display in GPU_STEPS and not (name == "train_multinode.yaml" and display.startswith("rft"))
            assert container["image"] == ("ghcr.io/rerec/rerec:0.1.0-cuda" if gpu else "ghcr.io/rerec/rerec:0.1.0-cpu"), display
            assert "pip install" not in " ".join(container["command"])  # install_kfp_package=False
            res = container["resources"]
            assert res["resourceCpuRequest"] and res["resourceCpuLimit"] and res["resourceMemoryRequest"] and (
                res["resourceMemoryLimit"]), display
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert ("accelerator" in res) == gpu and (env.get("REREC_REQUIRE_GPU") == "1") == gpu, display
            assert int(k8s["activeDeadlineSeconds"]) > 0, display
            assert "securityContext" not in k8s, display  # KFP 2.15 refuses it; the image's USER holds
            if gpu:
                assert k8s["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
                assert k8s["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("gpu_tolerations")
            else:
                assert "nodeSelector" not in k8s and "tolerations" not in k8s, display
            secrets = {}
            for s in k8s["secretAsEnv"]:
                secrets.setdefault(s["secretNameParameter"]["runtimeValue"]["constant"], set()).update(
                    k["envVar"] for k in s["keyToEnv"])
                if "MLFLOW_TRACKING_PASSWORD" in {k["envVar"] for k in s["keyToEnv"]}:
                    assert s["optional"] is True
            assert secrets["rerec-s3"] >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"}
            assert "MLFLOW_TRACKING_URI" in secrets["rerec-mlflow"], display
            resumes = display.startswith("rft")
            assert ("retryPolicy" in task) == resumes, display
            if resumes:
                assert task["retryPolicy"]["maxRetryCount"] == 2
                # the run's own volume for this arm (issue 27: no claim shared between runs)
                (mount,) = k8s["pvcMount"]
                assert mount["mountPath"] == "/mnt/checkpoints"
                assert mount["pvcNameParameter"]["taskOutputParameter"] == {
                    "producerTask": _task_ids(spec)["checkpoint-volume" + display[3:]], "outputParameterKey": "Output"}
            caching_off = display in ("start-run", "prepare-data", "resolve-champion", "register") or (
                "checkpoint-volume" in display)
            assert task["cachingOptions"].get("enableCache", False) is not caching_off, display


def _task_ids(spec) -> dict[str, str]:
    """display name -> the task's id in its DAG (what producerTask names)."""
    return {t["taskInfo"]["name"]: tid for c in [spec["root"], *spec["components"].values()]
            for tid, t in c.get("dag", {}).get("tasks", {}).items()}


@pytest.mark.parametrize("name", ["train.yaml", "retrain.yaml", "train_multinode.yaml"])
def test_each_rft_arm_gets_a_prepared_volume_of_its_own_released_after_it(name):
    spec, platform = _load(name)
    tasks, ids = _tasks(spec), _task_ids(spec)
    for arm in [d for d in tasks if d in ("rft", "rft-plain-grpo")]:
        suffix = arm[3:]
        (volume,) = tasks["checkpoint-volume" + suffix]
        (release,) = tasks["release-checkpoint-volume" + suffix]
        params = volume["inputs"]["parameters"]
        assert params["arm"]["runtimeValue"]["constant"] == ("rft" if arm == "rft" else "plain_grpo")
        assert params["node_selector"]["componentInputParameter"].endswith("gpu_node_selector")  # the GPU nodes' zone
        assert params["image"]["runtimeValue"]["constant"] == "ghcr.io/rerec/rerec:0.1.0-cpu"
        label, _ = _executor(spec, volume)
        settings = platform[label]["configMapAsEnv"][0]
        assert settings["configMapName"] == "rerec-checkpoints" and settings["optional"] is True
        assert {k["configMapKey"] for k in settings["keyToEnv"]} == {
            "CHECKPOINT_STORAGE_CLASS", "CHECKPOINT_ACCESS_MODE", "CHECKPOINT_SIZE"}
        assert release["inputs"]["parameters"]["pvc"]["taskOutputParameter"]["producerTask"] == ids[
            "checkpoint-volume" + suffix]
        assert ids[arm] in release["dependentTasks"]  # deleted only after the arm succeeded


def test_gpu_steps_are_sized_by_the_runs_preset():
    from pipelines.options import GPU_POD_BY_PRESET, Resources
    from rerec.pipeline.presets import PRESETS

    spec, _ = _load("train.yaml")
    tasks = _tasks(spec)
    (sizes,) = tasks["size-gpu-steps"]
    assert sizes["inputs"]["parameters"]["preset"]["componentInputParameter"].endswith("preset")
    table = sizes["inputs"]["parameters"]["table"]["runtimeValue"]["constant"]
    assert set(table) == set(PRESETS) and set(GPU_POD_BY_PRESET) == set(PRESETS)
    for display in GPU_STEPS - {"rft-plain-grpo"}:
        for task in tasks[display]:
            res = _executor(spec, task)[1]["container"]["resources"]
            assert res["resourceCpuRequest"] == "{{$.inputs.parameters['pipelinechannel--size-gpu-steps-cpu']}}"
            assert res["resourceMemoryLimit"] == (
                "{{$.inputs.parameters['pipelinechannel--size-gpu-steps-memory_limit']}}"), display
    # requests fit common one-GPU nodes: 8 vCPU / 32 GiB for SmolLM2, 16 vCPU / 64 GiB for the paper's 3B model
    def fits(r: Resources, cpu: float, gib: float) -> bool:
        return float(r.cpu) <= cpu - 0.5 and float(r.memory.removesuffix("Gi")) <= gib - 4

    assert fits(GPU_POD_BY_PRESET["smollm2"], 8, 32) and fits(GPU_POD_BY_PRESET["default"], 8, 32)
    assert fits(GPU_POD_BY_PRESET["paper"], 16, 64)


def test_multinode_runs_rft_as_a_trainjob_with_the_gpu_image():
    spec, platform = _load("train_multinode.yaml")
    tasks = _tasks(spec)
    (rft,) = tasks["rft"]
    assert rft["componentRef"]["name"] == "comp-rft-trainjob"
    params = rft["inputs"]["parameters"]
    assert params["num_nodes"]["runtimeValue"]["constant"] == 2
    assert params["image"]["runtimeValue"]["constant"] == "ghcr.io/rerec/rerec:0.1.0-cuda"
    assert params["node_selector"]["componentInputParameter"] == "pipelinechannel--gpu_node_selector"
    (arm,) = tasks["rft-plain-grpo"]
    assert arm["componentRef"]["name"].startswith("comp-rft-trainjob") and "same_budget_as" in arm["inputs"]["artifacts"]
    # the Trainer that Kubeflow 1.11 and 26.03 ship; the waiting step outlives the job's own deadline
    assert params["trainer_api"]["runtimeValue"]["constant"] == "v2.1"
    job_timeout = params["timeout_s"]["runtimeValue"]["constant"]
    label, _ = _executor(spec, rft)
    assert int(platform[label]["activeDeadlineSeconds"]) >= job_timeout + 3600
    assert params["pvc"]["taskOutputParameter"]["producerTask"] == _task_ids(spec)["checkpoint-volume"]


def test_retrain_starts_from_the_champion_and_compares_with_it():
    spec, _ = _load("retrain.yaml")
    tasks = _tasks(spec)
    assert "sft-warmup" not in tasks and "rft-plain-grpo" not in tasks
    (rft,) = tasks["rft"]
    assert rft["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]["producerTask"] == "resolve-champion"
    (champion,) = tasks["resolve-champion"]
    assert champion["inputs"]["parameters"]["required"]["runtimeValue"]["constant"] is True
    (val,) = tasks["evaluate-val"]
    assert val["inputs"]["artifacts"]["champion_model"]["taskOutputArtifact"]["producerTask"] == "resolve-champion"
    (prep,) = tasks["prepare-data"]
    assert prep["cachingOptions"] == {}  # the data behind a fixed URI changes between runs


def test_no_credentials_in_compiled_yaml():
    import re

    for path in PIPELINES.glob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text)
        assert not re.search(r"(?i)(secret_access_key|password)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}", text), path


def test_image_overrides(tmp_path):
    env = {**os.environ, "REREC_CPU_IMAGE": "registry.example/rerec@sha256:" + "a" * 64,
           "REREC_GPU_IMAGE": "registry.example/rerec:9.9.9-cuda"}
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--out", str(tmp_path)], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=180)
    text = (tmp_path / "train.yaml").read_text()
    assert "registry.example/rerec:9.9.9-cuda" in text and "registry.example/rerec@sha256:" in text
    assert "ghcr.io/rerec" not in text
