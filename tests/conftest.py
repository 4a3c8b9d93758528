"""Shared test setup. Unit tests run with tracking off and one torch thread (2 shared cores)."""

import os

os.environ.setdefault("REREC_TRACKING", "off")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# MLflow's telemetry client sets _MLFLOW_TELEMETRY_SESSION_ID from a background thread; a request
# iterating os.environ at that moment (requests' proxy lookup) raised KeyError in a registry test on CI.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402

torch.set_num_threads(1)


# --- Real servers for the tracking and registry tests: a moto S3 server and an `mlflow server` whose
# artifact store is a bucket on it. Both listen on 127.0.0.1 with free ports, start once per session
# with bounded waits, and stop at the end.

import contextlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

S3_BUCKET = "rerec-test-artifacts"
_S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def loopback_server(command: list[str], env: dict[str, str], log_path: Path, health_url: str, *,
                    cwd: Path | None = None, timeout_s: float = 120, stop_timeout_s: float = 20):
    """The one launcher of the tests' loopback servers (``mlflow server`` here and in test_mlflow_server.py):
    starts ``command`` in its own session with stdout and stderr in ``log_path``, waits (bounded) until
    ``health_url`` answers 200, yields the process, and stops it at the end (terminate, then kill). A server
    that does not come up raises with the tail of its log."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    try:
        try:
            _wait_http(health_url, timeout_s, proc)
        except RuntimeError:
            log.flush()
            raise RuntimeError(Path(log_path).read_text(errors="replace")[-3000:]) from None
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=stop_timeout_s)
        log.close()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on loopback with the artifact bucket; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_http(endpoint + "/moto-api/", 20)
        boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in _S3_ENV.items()
                                                   if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(s3_server, tmp_path_factory):
    """A real `mlflow server` (sqlite backend, artifacts proxied to the moto bucket); yields its URI."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, **_S3_ENV, "MLFLOW_S3_ENDPOINT_URL": s3_server}
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", f"s3://{S3_BUCKET}/", "--workers", "1"]
    uri = f"http://127.0.0.1:{port}"
    with loopback_server(command, env, root / "server.log", uri + "/health", stop_timeout_s=15):
        yield uri


@pytest.fixture
def mlflow_env(mlflow_server, monkeypatch, request):
    """Tracking on, pointed at the session server, one fresh experiment per test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("REREC_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"test-{request.node.name}"[:200])
    monkeypatch.delenv("REREC_PARENT_RUN_ID", raising=False)
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    yield mlflow_server
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory) -> Path:
    """A real (random) Llama causal LM with a word-level tokenizer, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "</s>", "Request:", "Candidates:", "Heat", "Fargo", "1.", "2.", "\\boxed{1}",
             "comedy", "the", "a", "best"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=1, eos_token_id=2, bos_token_id=2)
    import torch

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-hf") / "model"
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_script(path: Path, name: str):
    """The module of a script that is not in a package (``bench/*.py``, ``experiments/*.py``), loaded from
    its file under the module name ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
