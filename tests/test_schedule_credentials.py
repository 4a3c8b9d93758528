"""`rerec schedule` from inside the cluster (the rerec-schedule Job): multi-user KFP only accepts calls that
carry the profile ServiceAccount's projected token, and kfp.Client sends it only when it picks the
in-cluster host itself; the Job names its host (KFP_HOST). A stand-in KFP API on loopback records what
arrives."""

import http.server
import json
import threading
from argparse import Namespace
from pathlib import Path

import pytest

from rerec.errors import RerecError

ROOT = Path(__file__).resolve().parents[1]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        healthz = self.path.startswith("/apis/v2beta1/healthz")
        body = json.dumps({"multi_user": True} if healthz else {"error": "stand-in", "code": 16}).encode()
        self.send_response(200 if healthz else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_stand_in():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _args(host: str) -> Namespace:
    return Namespace(host=host, namespace="rerec", name="nightly", cron="0 0 3 * * *", data_uri="s3://b/new/",
                     model_name="rerec-recommender", param=[], package=ROOT / "pipelines" / "retrain.yaml",
                     experiment="rerec", service_account="")


def test_the_projected_token_goes_with_every_call(kfp_stand_in, tmp_path, monkeypatch):
    from rerec.pipeline.schedule import cli_main

    token = tmp_path / "token"
    token.write_text("projected-sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with pytest.raises(RerecError, match="401"):
        cli_main(_args(kfp_stand_in))
    calls = [(p, auth) for p, auth in _Recorder.seen if not p.startswith("/apis/v2beta1/healthz")]
    assert calls, _Recorder.seen
    assert all(auth == "Bearer projected-sa-token" for _, auth in calls), calls


def test_without_a_mounted_token_nothing_is_invented(kfp_stand_in, tmp_path, monkeypatch):
    from rerec.pipeline.schedule import cli_main

    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "absent"))
    with pytest.raises(RerecError, match="401"):
        cli_main(_args(kfp_stand_in))
    assert all(auth == "" for _, auth in _Recorder.seen), _Recorder.seen
