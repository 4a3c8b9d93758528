"""The CPU image runs pipeline stages as a cluster would: the compiled components' own commands
(``pipelines/train.yaml``: ``python3 -m kfp.dsl.executor_main`` with an executor input) for
prepare-data and build-graphs, inside the image built by ``make image-cpu``, as its non-root user,
tracking to a real MLflow server on loopback. Their outputs must validate and match the same stages
run in the development environment, byte for byte.

Needs buildah and the built image (``make image-cpu``); skips only when either is absent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ghcr.io/rerec/rerec:{VERSION}-cpu"
BUILDAH = ["buildah", "--storage-driver", "vfs"]
IMAGE_UID = 10001
HOW_TO_BUILD = "apt-get install -y buildah debootstrap && make image-cpu (about 10 minutes on 2 cores)"


def _buildah(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(BUILDAH + list(args), capture_output=True, text=True, timeout=timeout, check=check)


def inspect_image_or_skip() -> dict:
    """buildah's record of the built CPU image; skips the test when buildah or the image is missing, and
    fails when buildah itself fails."""
    if shutil.which("buildah") is None:
        pytest.skip(f"buildah is not installed; to run this test: {HOW_TO_BUILD}")
    found = _buildah("inspect", "--type", "image", IMAGE, check=False)
    if found.returncode != 0:
        if "not known" in found.stderr or "no such image" in found.stderr.lower():
            pytest.skip(f"{IMAGE} is not in buildah's vfs storage; build it: {HOW_TO_BUILD}")
        raise RuntimeError(f"buildah inspect {IMAGE} failed: {found.stderr}")
    return json.loads(found.stdout)


@pytest.fixture(scope="module")
def image_config() -> dict:
    return inspect_image_or_skip()["OCIv1"]["config"]


@pytest.fixture(scope="module")
def container(image_config):
    """A working container of the image (vfs copies the image's files once for the module)."""
    # shown with a failure: an image older than the compiled pipeline may lack what its tasks import
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"{IMAGE} was built from {image_config['Labels'].get('org.opencontainers.image.revision')}; "
          f"HEAD is {head} (rebuild: make image-cpu)")
    name = f"rerec-image-test-{uuid.uuid4().hex[:8]}"
    _buildah("from", "--pull=never", "--name", name, IMAGE)
    try:
        yield name
    finally:
        _buildah("rm", name, check=False)


def run_in_image(container: str, command: list[str], *, mounts: dict[Path, str] | None = None,
                 env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``command`` in the container as the image's user (``rerec``), host folders bind-mounted."""
    args = ["run", "--isolation", "chroot", "--user", "rerec"]
    for host, target in (mounts or {}).items():
        args += ["-v", f"{host}:{target}"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    return _buildah(*args, container, "--", *command, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _component_command(executor: str, executor_input: dict) -> list[str]:
    """The container command of a task in the compiled train pipeline, its executor input filled in."""
    spec = next(yaml.safe_load_all((ROOT / "pipelines" / "train.yaml").read_text()))
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    return container["command"] + args


def _executor_input(component: str, arguments: dict, task_root: str) -> dict:
    """What a KFP launcher hands the component (built by KFP's own local-runner code). Arguments the
    component does not declare are left out; the others take their defaults."""
    from google.protobuf import json_format
    from kfp.local import executor_input_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = next(yaml.safe_load_all((ROOT / "pipelines" / "train.yaml").read_text()))
    inputs = spec["components"][component].get("inputDefinitions", {})
    declared = set(inputs.get("parameters", {})) | set(inputs.get("artifacts", {}))
    arguments = {k: v for k, v in arguments.items() if k in declared}
    comp = json_format.ParseDict(spec["components"][component], pipeline_spec_pb2.ComponentSpec())
    message = executor_input_utils.construct_executor_input(comp, arguments, task_root, block_input_artifact=False)
    return json.loads(json_format.MessageToJson(message))


@pytest.fixture(scope="module")
def stage_runs(container, image_config, mlflow_server, tmp_path_factory):
    """prepare-data, then build-graphs on its output, in the image; and both again here."""
    import mlflow
    from kfp import dsl

    work = tmp_path_factory.mktemp("in-image")
    work.chmod(0o777)  # the image's user writes here through the bind mount
    experiment = f"image-test-{uuid.uuid4().hex[:8]}"
    client = mlflow.MlflowClient(mlflow_server)
    experiment_id = client.create_experiment(experiment)
    parent = client.create_run(experiment_id, run_name="pipeline").info.run_id
    # on a cluster the tracking URI comes from the environment (a secret); some versions of the
    # components also take it as a parameter
    tracking = {"mlflow_tracking_uri": mlflow_server, "mlflow_parent_run_id": parent, "kfp_run_id": "image-test"}
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": experiment,
           "MLFLOW_DISABLE_TELEMETRY": "true"}

    prepare_input = _executor_input("comp-prepare-data", {**tracking, "config_json": "{}"},
                                    "/work/prepare-data")
    prepare = run_in_image(container, _component_command("exec-prepare-data", prepare_input),
                           mounts={work: "/work"}, env=env)
    _ok(prepare, "prepare-data in the image")
    data = dsl.Dataset(name="data", uri="/work/prepare-data/data", metadata={})
    graphs_input = _executor_input("comp-build-graphs", {**tracking, "config_json": "{}", "data": data},
                                   "/work/build-graphs")
    graphs = run_in_image(container, _component_command("exec-build-graphs", graphs_input),
                          mounts={work: "/work"}, env=env)
    _ok(graphs, "build-graphs in the image")
    client.set_terminated(parent)

    from rerec.data.prepare import PrepareConfig, prepare_data
    from rerec.graphs.build import GraphConfig, build_graphs

    host = tmp_path_factory.mktemp("on-host")
    prepare_data(None, host / "data", PrepareConfig(), progress=False)
    build_graphs(host / "data", host / "graphs", GraphConfig())
    return {"work": work, "host": host, "client": client, "experiment_id": experiment_id, "parent": parent}


def test_image_user_is_numeric_non_root(container, image_config):
    assert image_config["User"].split(":")[0] == str(IMAGE_UID)
    out = _ok(run_in_image(container, ["sh", "-c", "id -u; echo $HOME; touch /opt/venv/x 2>&1 || true"]), "id")
    uid, home, touch = out.splitlines()[:3]
    assert uid == str(IMAGE_UID) and home == "/tmp/home"
    assert "Permission denied" in touch, "the image's files must not be writable by its user"


def test_every_rerec_module_imports_in_the_image(container):
    """The runtime lock is enough for all of the package (no test or lint tool is needed)."""
    code = ("import importlib, pkgutil, rerec\n"
            "names = [m.name for m in pkgutil.walk_packages(rerec.__path__, 'rerec.')\n"
            "         if m.name != 'rerec.__main__']  # that one runs the CLI\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names))\n")
    out = _ok(run_in_image(container, ["python", "-c", code], timeout=900), "importing every rerec module")
    assert int(out.split()[-1]) > 30
    missing = run_in_image(container, ["python", "-c", "import pytest"])
    assert missing.returncode != 0 and "No module named 'pytest'" in missing.stderr


def test_embedded_assets_are_in_the_image(container):
    code = ("from rerec import paths\n"
            "for p in (paths.movielens_100k_dir(), paths.smollm2_gguf(), paths.minilm_dir(), paths.lm_eval_dir()):\n"
            "    assert p.exists(), p\n"
            "print(paths.cache_dir())\n")
    out = _ok(run_in_image(container, ["python", "-c", code]), "asset paths")
    assert out.strip().startswith("/var/cache/rerec")


def test_prepare_data_output_validates(stage_runs, container):
    data = stage_runs["work"] / "prepare-data" / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["stage"] == "prepare-data" and manifest["files"]
    for name, entry in manifest["files"].items():
        assert _sha256(data / name) == entry["sha256"], name
    assert "queries.parquet" in manifest["files"] and manifest["files"]["queries.parquet"]["rows"] > 1000
    assert (data / "manifest.json").stat().st_uid == IMAGE_UID, "written by the image's user"
    out = _ok(run_in_image(container, ["rerec", "validate-data", "/work/prepare-data/data"],
                           mounts={stage_runs["work"]: "/work"}), "rerec validate-data in the image")
    assert "valid" in out and "queries" in out


def test_build_graphs_output_validates(stage_runs):
    from rerec.graphs.build import verify_manifest

    graphs = stage_runs["work"] / "build-graphs" / "graphs"
    manifest = verify_manifest(graphs)
    assert manifest["counts"]
    assert (graphs / "manifest.json").stat().st_uid == IMAGE_UID


def test_stage_outputs_match_the_development_environment(stage_runs):
    work, host = stage_runs["work"], stage_runs["host"]
    in_image = json.loads((work / "prepare-data" / "data" / "manifest.json").read_text())["files"]
    here = json.loads((host / "data" / "manifest.json").read_text())["files"]
    assert in_image == here
    in_image = json.loads((work / "build-graphs" / "graphs" / "manifest.json").read_text())["outputs"]
    here = json.loads((host / "graphs" / "manifest.json").read_text())["outputs"]
    assert in_image == here


def test_component_outputs_reach_kfp_and_mlflow(stage_runs, image_config):
    work = stage_runs["work"]
    n_queries = json.loads((work / "prepare-data" / "data" / "manifest.json").read_text())["files"][
        "queries.parquet"]["rows"]
    for task in ("prepare-data", "build-graphs"):
        output = json.loads((work / task / "executor_output.json").read_text())
        metrics = output["artifacts"]["metrics"]["artifacts"][0]["metadata"]
        assert metrics, f"{task} logged no KFP metrics"
        if task == "prepare-data":
            assert metrics["stats_n_queries"] == n_queries

    client = stage_runs["client"]
    runs = {r.info.run_name: r for r in client.search_runs([stage_runs["experiment_id"]])}
    commit = image_config["Labels"]["org.opencontainers.image.revision"]
    assert commit, "the image carries no git commit"
    for stage in ("prepare-data", "build-graphs"):
        run = runs[stage]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == stage_runs["parent"]
        assert run.data.tags["rerec.git_commit"] == commit
        assert run.data.tags["rerec.kfp_run_id"] == "image-test"
    assert runs["prepare-data"].data.metrics["n_queries"] == n_queries


def test_rerec_cli_in_the_image(container):
    assert _ok(run_in_image(container, ["rerec", "--version"]), "rerec --version").strip() == VERSION
    bad = run_in_image(container, ["rerec", "prepare-data", "--input", "/nonexistent", "--out", "/tmp/x"])
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "/nonexistent" in bad.stderr
