"""The MLflow server exactly as manifests/base/mlflow.yaml starts it (its command, arguments and environment
taken from the rendered Deployment), on loopback: basic-auth with the admin from the Secret's keys, the
in-cluster Host names allowed and any other refused with 403 (while /health still answers), and a client
with the pipeline Secret's variables logging a run; then the same server on a real PostgreSQL backend store
(psycopg2), as the Secret template's URI says. Both slow (a minute each on 2 shared cores)."""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml
from conftest import free_port, loopback_server

ROOT = Path(__file__).resolve().parents[1]
ADMIN, PASSWORD = "admin", "testing" * 2  # basic-auth wants 12 characters or more


def deployment_container() -> dict:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / "cluster")], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment" and
                      d["metadata"]["name"] == "mlflow")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def server_command(container: dict, secrets: dict[str, str], port: int) -> tuple[list[str], dict[str, str]]:
    """The container's command and environment, with Secret references filled from ``secrets`` (by key)
    and $(VAR) expanded as the kubelet does; the port moved to a free one."""
    env = {}
    for item in container["env"]:
        env[item["name"]] = item["value"] if "value" in item else secrets[item["valueFrom"]["secretKeyRef"]["key"]]
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    args = [f"--port={port}" if a.startswith("--port=") else a for a in args]
    args = ["--host=127.0.0.1" if a.startswith("--host=") else a for a in args]
    command = [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:], *args]
    return command, env


def get(url: str, host: str | None = None, auth: bool = True) -> int:
    request = urllib.request.Request(url)
    if host:
        request.add_header("Host", host)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def deployed_server(tmp_path: Path, backend: str, auth_db: str):
    """The server as the Deployment starts it, on loopback (conftest.loopback_server); yields its port."""
    port = free_port()
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {auth_db}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    secrets = {"MLFLOW_BACKEND_STORE_URI": backend, "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
               "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN, "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
               "MLFLOW_FLASK_SERVER_SECRET_KEY": "testing",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "MLFLOW_S3_ENDPOINT_URL": ""}
    command, env = server_command(deployment_container(), secrets, port)
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)  # the Secret's basic_auth.ini, mounted
    with loopback_server(command, {**os.environ, **env}, tmp_path / "server.log",
                         f"http://127.0.0.1:{port}/health", cwd=tmp_path):
        yield port


def check_server(port: int, monkeypatch) -> None:
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
    assert get(f"{base}/health", host="attacker.example") == 200  # the probe passes whatever the Host
    assert get(api, host="mlflow.rerec.svc.cluster.local:5000") == 200
    assert get(api, host="mlflow.rerec:5000") == 200
    assert get(api, host="attacker.example:5000") == 403  # DNS rebinding guard: --allowed-hosts
    assert get(api, host="mlflow.rerec.svc.cluster.local:5000", auth=False) == 401  # basic-auth
    # a client with the pipeline Secret's variables logs a run (a client of its own: the fluent API's global
    # tracking state stays with the other tests)
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    client = MlflowClient(tracking_uri=base)
    run = client.create_run(client.create_experiment("manifest-check"))
    client.log_metric(run.info.run_id, "x", 1.0)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"x": 1.0}


@pytest.mark.slow
def test_server_as_deployed_allows_its_service_names_only_and_requires_a_login(tmp_path, monkeypatch):
    with deployed_server(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'auth.db'}") as port:
        check_server(port, monkeypatch)


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server on a free port (Debian's postgresql package), with the databases mlflow and
    mlflow_auth as the StatefulSet's init script makes them. initdb refuses root: run as postgres then."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    import tempfile

    bindir = Path(initdb).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="rerec-pg-"))  # not under pytest's 0700 folders: postgres must reach it
    data, port = root / "pg", free_port()
    data.mkdir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        os.chmod(root, 0o755)
        shutil.chown(data, "postgres")
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust"], check=True,
                   capture_output=True, timeout=120)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", f"-p {port} -k {data} -h 127.0.0.1",
                    "-l", str(data / "log"), "-w", "start"], check=True, capture_output=True, timeout=120)
    try:
        for db in ("mlflow", "mlflow_auth"):
            subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow",
                            db], check=True, capture_output=True, timeout=60)
        yield f"mlflow@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_server_as_deployed_on_postgresql(postgres, tmp_path, monkeypatch):
    import psycopg2  # the driver the server image carries for postgresql://

    # the driver named as in manifests/secrets/template.yaml (SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3)
    with deployed_server(tmp_path, f"postgresql+psycopg2://{postgres}/mlflow",
                         f"postgresql+psycopg2://{postgres}/mlflow_auth") as port:
        check_server(port, monkeypatch)
    with psycopg2.connect(f"postgresql://{postgres}/mlflow") as conn, conn.cursor() as cur:
        cur.execute("select count(*) from runs")
        assert cur.fetchone()[0] == 1
    with psycopg2.connect(f"postgresql://{postgres}/mlflow_auth") as conn, conn.cursor() as cur:
        cur.execute("select username from users")
        assert [r[0] for r in cur.fetchall()] == [ADMIN]
