"""Security checks: no credential in the repository (code, compiled pipelines, images, manifests) or
in logged params; torch.load only with weights_only=True; no unpickling of foreign data; non-root
images. The scanner is first shown to catch planted credentials, so that a clean scan means something."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from rerec.security import REDACTED, find_secrets, is_placeholder, is_secret_key, redact_secrets
from rerec.tracking import flatten_params

ROOT = Path(__file__).resolve().parents[1]

# Planted credentials are assembled at run time, so that this file itself scans clean.
AWS_KEY_ID = "AKIA" + "Q3EXAMPLEKEY7ABC"
FAKE_S3_VALUE = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzEXAMPLEKEY"
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----"
GH_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


# ---------------------------------------------------------------------------- the scanner itself
@pytest.mark.parametrize("text, kind", [
    (f"aws_access_key_id = {AWS_KEY_ID}", "AWS access key id"),
    (f"aws_secret_access_key: {FAKE_S3_VALUE}", "literal value for 'aws_secret_access_key'"),
    (f'FAKE_S3_VALUE_ACCESS_KEY="{FAKE_S3_VALUE}"', "literal value for 'FAKE_S3_VALUE_ACCESS_KEY'"),
    (f"ENV MLFLOW_TRACKING_PASSWORD={'hunter2' + 'hunter2'}", "literal value for 'MLFLOW_TRACKING_PASSWORD'"),
    ("        password: " + "s3cr3t-" + "Pa55", "literal value for 'password'"),
    (PEM, "private key"),
    (f"token = '{GH_TOKEN}'", "GitHub token"),
    ("MLFLOW_TRACKING_URI=https://admin:" + "Tr0ub4dor" + "@mlflow.example.com", "password in a URL"),
    ("hf_token: hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFG", "Hugging Face token"),
    ("mlflow server --db-password " + "Xk29dLq0z", "literal value for 'db-password'"),
])
def test_scanner_finds_planted_credentials(text, kind):
    kinds = [f.kind for f in find_secrets(text)]
    assert kind in kinds, kinds
    assert all(FAKE_S3_VALUE not in str(f) and "hunter2hunter2" not in str(f) for f in find_secrets(text))


@pytest.mark.parametrize("text", [
    "max_new_tokens: 256",
    "def token_char_spans(tokenizer, token_ids: Sequence[int]) -> list:",
    '"FAKE_S3_VALUE_ACCESS_KEY": "FAKE_S3_VALUE_ACCESS_KEY",  # env var name <- secret key',
    "password: ${MLFLOW_TRACKING_PASSWORD}",
    "aws_secret_access_key: testing",
    "valueFrom: {secretKeyRef: {name: rerec-storage, key: password}}",
    "token = os.environ['HF_TOKEN']",
    "secret_name: rerec-storage",
    "the tracking URI looks like https://user:password@host",
    "  AWS_SECRET_ACCESS_KEY: CHANGE_ME",
    "kubectl create secret generic rerec-s3 --from-literal=AWS_ACCESS_KEY_ID=...",
])
def test_scanner_ignores_names_placeholders_and_references(text):
    assert find_secrets(text, code=text.startswith("def ") or "os.environ" in text) == []


def test_secret_key_names():
    for key in ("password", "aws_secret_access_key", "AWS_SESSION_TOKEN", "s3.secretKey", "hf_token",
                "apiKey", "MLFLOW_TRACKING_PASSWORD", "client_secret", "private_key"):
        assert is_secret_key(key), key
    for key in ("max_new_tokens", "token_ids", "tokenizer", "secret_name", "pad_token_id", "seed",
                "password_file", "n_candidates"):
        assert not is_secret_key(key), key


def test_redact_secrets_masks_keys_and_values_and_keeps_the_rest():
    params = {"lr": 0.1, "s3": {"aws_secret_access_key": FAKE_S3_VALUE, "endpoint": "http://minio:9000"},
              "tracking_uri": "https://admin:" + "Tr0ub4dor" + "@mlflow.local", "notes": [f"key {AWS_KEY_ID}"],
              "max_new_tokens": 128, "password": ""}
    clean = redact_secrets(params)
    flat = flatten_params(clean)
    text = repr(flat)
    assert FAKE_S3_VALUE not in text and "Tr0ub4dor" not in text and AWS_KEY_ID not in text
    assert flat["s3.aws_secret_access_key"] == REDACTED
    assert flat["tracking_uri"] == f"https://admin:{REDACTED}@mlflow.local"
    assert flat["lr"] == "0.1" and flat["max_new_tokens"] == "128" and flat["s3.endpoint"] == "http://minio:9000"
    assert params["s3"]["aws_secret_access_key"] == FAKE_S3_VALUE  # the input is not modified


# ---------------------------------------------------------------------------- the repository
def repository_files() -> list[Path]:
    """Tracked files plus untracked ones that git does not ignore (what the next commit may hold)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return sorted({ROOT / f for f in out if f and (ROOT / f).is_file()})


def text_of(path: Path) -> str | None:
    if path.stat().st_size > 5_000_000:
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def test_no_credentials_in_repository_files():
    files = repository_files()
    assert any(f.suffix == ".py" for f in files) and len(files) > 50
    leaks = []
    for path in files:
        text = text_of(path)
        if text is not None:
            leaks += [f"{path.relative_to(ROOT)} {f}" for f in find_secrets(text, code=path.suffix == ".py")]
    assert leaks == [], "credentials in the repository:\n" + "\n".join(leaks)


def test_no_credentials_in_compiled_pipelines_images_and_manifests():
    paths = [*ROOT.glob("pipelines/*.yaml"), *ROOT.glob("images/**/*"), *ROOT.glob("manifests/**/*")]
    compiled = [p for p in paths if p.suffix == ".yaml" and p.parent.name == "pipelines"]
    assert compiled, "no compiled pipeline YAML to scan"
    leaks = []
    for path in paths:
        if path.is_file() and (text := text_of(path)) is not None:
            leaks += [f"{path.relative_to(ROOT)} {f}" for f in find_secrets(text)]
            if path.suffix not in (".yaml", ".yml"):
                continue
            # Kubernetes Secrets in the repo are templates: every secret-looking value a placeholder.
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "Secret":
                    for key, value in {**(doc.get("data") or {}), **(doc.get("stringData") or {})}.items():
                        if is_secret_key(key) and not is_placeholder(value):
                            leaks.append(f"{path.relative_to(ROOT)}: Secret {doc['metadata']['name']} has a "
                                         f"value for {key}")
    assert leaks == [], "\n".join(leaks)


def test_stage_configs_log_no_secret_params():
    """Every stage config's flattened params (what MLflow gets) has no secret-looking key."""
    configs = [("rerec.data.prepare", "PrepareConfig"), ("rerec.graphs.build", "GraphConfig"),
               ("rerec.reward.lightgcn", "LightGCNConfig"), ("rerec.train.sft", "SFTConfig"),
               ("rerec.train.rft", "RFTConfig"), ("rerec.eval.evaluate", "EvalConfig"),
               ("rerec.registry.register", "RegisterConfig")]
    checked = 0
    for module_name, cls_name in configs:
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError):
            continue
        flat = flatten_params(cls())
        assert [k for k in flat if is_secret_key(k.rsplit(".", 1)[-1])] == [], cls_name
        assert redact_secrets(flat) == flat, cls_name
        checked += 1
    assert checked >= 3


def test_tracker_redacts_secret_params(monkeypatch):
    import mlflow

    from rerec.tracking import StageTracker

    logged = {}
    monkeypatch.setattr(mlflow, "log_params", lambda params, **kw: logged.update(params))
    StageTracker("run-id").log_params({"lr": 0.1, "storage": {"aws_secret_access_key": FAKE_S3_VALUE}})
    assert logged["lr"] == "0.1"
    assert FAKE_S3_VALUE not in repr(logged)


# ---------------------------------------------------------------------------- unsafe loading
def python_sources() -> list[Path]:
    return sorted(p for d in ("src", "components", "pipelines") for p in (ROOT / d).rglob("*.py"))


def _call_name(node: ast.Call) -> str:
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def unsafe_calls(source: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name == "torch.load" or name.endswith(".torch.load"):
            wo = _keyword(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                problems.append(f"line {node.lineno}: torch.load without weights_only=True")
        elif name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "dill.loads", "joblib.load",
                      "cloudpickle.load", "cloudpickle.loads", "pd.read_pickle", "pandas.read_pickle",
                      "yaml.unsafe_load", "marshal.loads"):
            problems.append(f"line {node.lineno}: {name} (unpickling can run code)")
        elif name == "yaml.load":
            loader = _keyword(node, "Loader")
            if loader is None or "Safe" not in ast.unparse(loader):
                problems.append(f"line {node.lineno}: yaml.load without SafeLoader")
        elif name in ("np.load", "numpy.load"):
            ap = _keyword(node, "allow_pickle")
            if isinstance(ap, ast.Constant) and ap.value is True:
                problems.append(f"line {node.lineno}: np.load(allow_pickle=True)")
        trc = _keyword(node, "trust_remote_code")
        if isinstance(trc, ast.Constant) and trc.value is True:
            problems.append(f"line {node.lineno}: {name}(trust_remote_code=True) runs a model repo's code")
        shell = _keyword(node, "shell")
        if name.startswith("subprocess.") and isinstance(shell, ast.Constant) and shell.value is True:
            problems.append(f"line {node.lineno}: {name}(shell=True)")
    return problems


def test_checker_catches_unsafe_loading():
    bad = ("import torch, pickle, yaml\n"
           "torch.load('x.pt')\n"
           "torch.load('x.pt', weights_only=False)\n"
           "pickle.loads(b'')\n"
           "yaml.load(open('a'))\n"
           "AutoModel.from_pretrained('m', trust_remote_code=True)\n"
           "subprocess.run('ls', shell=True)\n")
    assert len(unsafe_calls(bad)) == 6
    assert unsafe_calls("torch.load('x.pt', weights_only=True, map_location='cpu')\n"
                        "yaml.load(f, Loader=yaml.SafeLoader)\n") == []


def test_no_unsafe_loading_in_project_code():
    problems = []
    for path in python_sources():
        problems += [f"{path.relative_to(ROOT)} {p}" for p in unsafe_calls(path.read_text(encoding="utf-8"))]
    assert problems == [], "\n".join(problems)


def test_torch_loads_are_present_and_checked():
    """The AST check above is not vacuous: the project does load tensors, and the checker sees every one of
    those loads. With each file's ``weights_only=True`` turned to False it must report exactly one problem per
    ``torch.load(`` in the text; a call form it cannot see (an alias, a wrapper it does not resolve) fails."""
    import io
    import tokenize

    def code_loads(text: str) -> int:
        """``torch.load(`` in the code's tokens (not in strings or comments), counted apart from the AST."""
        toks = [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type in (tokenize.NAME, tokenize.OP)]
        return sum(toks[i:i + 4] == ["torch", ".", "load", "("] for i in range(len(toks)))

    loads = {p: p.read_text(encoding="utf-8") for p in python_sources()}
    loads = {p: text for p, text in loads.items() if code_loads(text)}
    assert len(loads) >= 2
    for path, text in loads.items():
        flipped = unsafe_calls(text.replace("weights_only=True", "weights_only=False"))
        seen = [problem for problem in flipped if "torch.load without weights_only" in problem]
        assert len(seen) == code_loads(text), (path.relative_to(ROOT), seen)
    aliased = "from torch import load as tl\ntl('x.pt')\n"
    assert "from torch import load" not in "".join(loads.values()), "an aliased torch.load escapes the checker"
    assert unsafe_calls(aliased) == []  # which is why the line above forbids the alias


# ---------------------------------------------------------------------------- images and manifests
def dockerfiles() -> list[Path]:
    return sorted(p for p in (ROOT / "images").rglob("*") if p.is_file() and "Dockerfile" in p.name)


def test_images_run_as_non_root():
    files = dockerfiles()
    assert files, "no Dockerfiles under images/"
    for path in files:
        users = re.findall(r"(?im)^\s*USER\s+(\S+)", path.read_text(encoding="utf-8"))
        assert users, f"{path.name}: no USER instruction (the image would run as root)"
        assert users[-1].split(":")[0] not in ("root", "0"), f"{path.name}: the final USER is root"


def test_kubernetes_workloads_are_non_root():
    manifests = list((ROOT / "manifests").rglob("*.yaml"))
    workloads = []
    for path in manifests:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") in ("Deployment", "StatefulSet", "Job", "CronJob", "Pod"):
                workloads.append((path, doc))
    assert workloads, "no Kubernetes workloads under manifests/"
    for path, doc in workloads:
        spec = doc["spec"]
        spec = spec.get("jobTemplate", {}).get("spec", spec)
        pod = spec.get("template", {}).get("spec", spec)
        pod_ctx = pod.get("securityContext") or {}
        for container in pod.get("containers", []):
            ctx = {**pod_ctx, **(container.get("securityContext") or {})}
            assert ctx.get("runAsNonRoot") is True or (ctx.get("runAsUser") not in (None, 0)), \
                f"{path.name}: {container.get('name')} may run as root"
            assert ctx.get("allowPrivilegeEscalation") is not True, f"{path.name}: privilege escalation allowed"


def test_configs_are_dataclasses_without_secret_defaults():
    """No config dataclass in src/ has a non-empty default for a secret-looking field."""
    bad = []
    for path in (ROOT / "src" / "rerec").rglob("*.py"):
        module = "rerec." + ".".join(path.relative_to(ROOT / "src" / "rerec").with_suffix("").parts)
        if module.endswith("__init__") or "def add_cli_arguments" not in path.read_text(encoding="utf-8"):
            continue
        mod = importlib.import_module(module)  # a stage module that does not import fails here
        for obj in vars(mod).values():
            if dataclasses.is_dataclass(obj) and isinstance(obj, type):
                for f in dataclasses.fields(obj):
                    if is_secret_key(f.name) and f.default not in (None, "", dataclasses.MISSING):
                        bad.append(f"{module}.{obj.__name__}.{f.name}")
    assert bad == []


def test_tracking_errors_do_not_print_the_password_of_the_tracking_uri(monkeypatch, caplog):
    import mlflow

    from rerec.errors import RerecError
    from rerec.tracking import with_retries

    password = "pw" + "Zq81xk"
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: f"https://rerec:{password}@mlflow.example:5000")

    def down():
        raise ConnectionError(f"Max retries exceeded with url https://rerec:{password}@mlflow.example:5000/api")

    with pytest.raises(RerecError) as info:
        with_retries(down, "log the model", attempts=2, base_delay_s=0.0)
    assert "mlflow.example" in str(info.value)
    assert password not in str(info.value)
    assert password not in caplog.text


def test_rbac_is_least_privilege():
    """Namespaced Roles only, no wildcards, Secrets only read one by one by name (the KFP launcher reads the
    object-store Secret of its namespace: get with resourceNames, never list or watch), no binding to
    cluster-wide roles."""
    docs = [(p, d) for p in sorted((ROOT / "manifests").rglob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if isinstance(d, dict)]
    roles = [(p, d) for p, d in docs if d.get("kind") in ("Role", "ClusterRole")]
    assert roles, "no RBAC roles under manifests/"
    for path, role in roles:
        assert role["kind"] == "Role", f"{path.name}: {role['metadata']['name']} is cluster-wide"
        for rule in role.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), f"{path.name}: wildcard in {key}"
            if "secrets" in rule.get("resources", []):
                assert rule.get("resourceNames") and set(rule["verbs"]) == {"get"}, (
                    f"{path.name}: the role can read Secrets beyond the named ones")
            assert not {"escalate", "bind", "impersonate"} & set(rule.get("verbs", [])), path.name
    for path, binding in docs:
        if binding.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            assert binding["kind"] == "RoleBinding", f"{path.name}: a ClusterRoleBinding"
            assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit"), path.name
