"""What a first install does with the CPU image, inside the image built by ``make image-cpu`` (buildah,
chroot isolation), as its non-root user:

- the ``rerec-schedule`` Job of ``manifests/base/recurring-run.yaml`` runs its own command and arguments
  (from the manifest, ``$(VAR)`` filled from its ConfigMap) against a stand-in KFP API on loopback, and gets
  as far as calling that API with the projected token (the package it uploads is in the image);
- the RFT checkpoint folder: on a fresh volume's root (root-owned, 0755) uid 10001 cannot create its run
  folder; on the root the volume-preparing Job leaves (fsGroup 10001: group 10001, setgid, group-writable,
  what the kubelet does for fsGroup) the image's own code creates it.

Needs buildah and the built image; skips only when either is absent (like tests/test_image_stages.py).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import yaml
from test_image_stages import IMAGE, _buildah, inspect_image_or_skip

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def container():
    inspect_image_or_skip()
    name = f"rerec-cluster-test-{uuid.uuid4().hex[:8]}"
    _buildah("from", "--pull=never", "--name", name, IMAGE)
    try:
        yield name
    finally:
        _buildah("rm", name, check=False)


def run_in_image(container: str, command: list[str], *, user: str = "rerec", mounts: dict | None = None,
                 env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    args = ["run", "--isolation", "chroot", "--user", user]
    for host, target in (mounts or {}).items():
        args += ["-v", f"{host}:{target}"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    return _buildah(*args, container, "--", *command, timeout=timeout, check=False)


class _FakeKfp(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def _answer(self):
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        healthz = self.path.startswith("/apis/v2beta1/healthz")  # kfp.Client asks first: a multi-user backend
        body = json.dumps({"multi_user": True} if healthz else {"error": "stand-in KFP API", "code": 14}).encode()
        self.send_response(200 if healthz else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


def _schedule_job() -> tuple[dict, dict]:
    docs = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "manifests/base/recurring-run.yaml").read_text())}
    return docs["ConfigMap"]["data"], docs["Job"]["spec"]["template"]["spec"]


def test_schedule_job_reaches_the_kfp_api_from_the_image(container, tmp_path):
    config, pod = _schedule_job()
    (job,) = pod["containers"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _FakeKfp.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _FakeKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**config, "KFP_HOST": f"http://127.0.0.1:{port}"}
    env.update({e["name"]: e["value"] for e in job.get("env", []) if "value" in e})
    token_dir = tmp_path / "token"
    token_dir.mkdir()
    (token_dir / "token").write_text("projected-sa-token")
    os.chmod(token_dir, 0o755)
    mount = next(m["mountPath"] for m in job["volumeMounts"] if m["name"] == "kfp-token")
    assert env["KF_PIPELINES_SA_TOKEN_PATH"] == f"{mount}/token"
    # buildah keeps /run/secrets (and /var/run/secrets) for its own mounts, so the token goes elsewhere here
    mount = "/kfp-token"
    env["KF_PIPELINES_SA_TOKEN_PATH"] = f"{mount}/token"

    def expand(arg: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)

    command = [expand(a) for a in job["command"] + job["args"]]
    try:
        proc = run_in_image(container, command, env=env, mounts={token_dir: mount})
    finally:
        server.shutdown()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output  # the stand-in answers 503
    assert "--package" not in output and "does not exist" not in output, output
    # past the health check, the first real call (the experiment lookup) carries the projected token
    calls = [(m, p, auth) for m, p, auth in _FakeKfp.seen if not p.startswith("/apis/v2beta1/healthz")]
    assert calls, f"no KFP API call reached the stand-in ({_FakeKfp.seen}):\n{output}"
    assert all(auth == "Bearer projected-sa-token" for _, _, auth in calls), calls
    assert "503" in output or "stand-in KFP API" in output, output  # the server's answer is reported
    assert "Traceback" not in output, output


def test_pipelines_in_the_image_are_the_checked_in_ones(container):
    for name in ("train.yaml", "retrain.yaml", "train_multinode.yaml"):
        proc = run_in_image(container, ["cat", f"/opt/rerec/pipelines/{name}"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (ROOT / "pipelines" / name).read_text(), f"{name}: rebuild the image (make image-cpu)"


RFT_FOLDER = "/mnt/checkpoints/run-1/rft/model"  # rerec.train.distributed.run_rft_step: volume/<run>/<arm>/model


def _volume_root(tmp_path, *, fs_group: bool) -> str:
    """A host folder standing for a fresh volume's root: root-owned 0755, or as the kubelet leaves it for a pod
    with ``fsGroup: 10001`` (group 10001, group-writable, setgid)."""
    root = tmp_path / ("prepared" if fs_group else "fresh")
    root.mkdir()
    os.chown(root, 0, 10001 if fs_group else 0)
    os.chmod(root, 0o2775 if fs_group else 0o755)
    return str(root)


def _as_root_on_the_host():
    if os.geteuid() != 0:
        pytest.skip("needs root on the host to make root-owned folders (the CI image job runs as root)")


def test_a_fresh_volume_root_refuses_the_steps_user(container, tmp_path):
    _as_root_on_the_host()
    root = _volume_root(tmp_path, fs_group=False)
    probe = run_in_image(container, ["python3", "-m", "rerec.pipeline.volumes", "probe", "/mnt/checkpoints"],
                         mounts={root: "/mnt/checkpoints"})
    assert probe.returncode == 2 and "not writable for uid 10001" in probe.stderr, probe.stderr
    mkdir = run_in_image(container, ["python3", "-c", f"import pathlib; pathlib.Path('{RFT_FOLDER}').mkdir(parents=True)"],
                         mounts={root: "/mnt/checkpoints"})
    assert mkdir.returncode != 0 and "PermissionError" in mkdir.stderr, mkdir.stderr


def test_a_volume_prepared_with_fs_group_takes_the_rft_folder(container, tmp_path):
    _as_root_on_the_host()
    root = _volume_root(tmp_path, fs_group=True)
    probe = run_in_image(container, ["python3", "-m", "rerec.pipeline.volumes", "probe", "/mnt/checkpoints"],
                         mounts={root: "/mnt/checkpoints"})
    assert probe.returncode == 0, probe.stderr
    mkdir = run_in_image(container, ["python3", "-c", f"import pathlib; p = pathlib.Path('{RFT_FOLDER}'); "
                                     "p.mkdir(parents=True); (p / 'checkpoint.pt').write_bytes(b'x')"],
                         mounts={root: "/mnt/checkpoints"})
    assert mkdir.returncode == 0, mkdir.stderr
    written = Path(root) / "run-1" / "rft" / "model" / "checkpoint.pt"
    assert written.stat().st_uid == 10001 and written.stat().st_gid == 10001
