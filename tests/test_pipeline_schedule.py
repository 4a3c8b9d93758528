"""`rerec schedule` against a fake kfp.Client that records what it is asked (no cluster here), and its
checks before connecting: the cron, the package, an unreachable or wrong endpoint."""

import argparse
from types import SimpleNamespace as NS

import pytest

from rerec.errors import ConfigError
from rerec.pipeline import schedule as sched


class FakeKFP:
    """Just enough of kfp.Client's v2 API, with state, so create/update/unchanged can be told apart."""

    def __init__(self):
        self.calls, self.versions, self.runs, self.pipeline_id = [], [], {}, None

    def _log(self, call, **kw):
        self.calls.append((call, kw))

    def get_experiment(self, experiment_name=None, **_):
        self._log("get_experiment", experiment_name=experiment_name)
        raise ValueError("no such experiment")

    def create_experiment(self, name, **_):
        self._log("create_experiment", name=name)
        return NS(experiment_id="exp-1")

    def get_pipeline_id(self, name):
        return self.pipeline_id

    def upload_pipeline(self, path, pipeline_name=None, description=None):
        self._log("upload_pipeline", path=path, pipeline_name=pipeline_name)
        self.pipeline_id = "pipe-1"
        return NS(pipeline_id="pipe-1")

    def list_pipeline_versions(self, pipeline_id, page_size=10, filter=None, **_):
        return NS(pipeline_versions=list(self.versions))

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id=None):
        self._log("upload_pipeline_version", name=pipeline_version_name)
        v = NS(display_name=pipeline_version_name, pipeline_version_id=f"ver-{len(self.versions) + 1}")
        self.versions.append(v)
        return v

    def list_recurring_runs(self, experiment_id=None, page_size=10, filter=None, **_):
        return NS(recurring_runs=list(self.runs.values()))

    def create_recurring_run(self, **kw):
        self._log("create_recurring_run", **kw)
        rid = f"rr-{len(self.calls)}"
        self.runs[rid] = NS(recurring_run_id=rid, display_name=kw["job_name"], max_concurrency=kw["max_concurrency"],
                            trigger=NS(cron_schedule=NS(cron=kw["cron_expression"])),
                            pipeline_version_reference=NS(pipeline_version_id=kw["version_id"]),
                            runtime_config=NS(parameters=kw["params"]))
        return self.runs[rid]

    def delete_recurring_run(self, rid):
        self._log("delete_recurring_run", rid=rid)
        del self.runs[rid]


def _args(**kw):
    base = dict(host=None, namespace=None, name="nightly", cron="0 0 3 * * *", experiment="rerec",
                package=sched.DEFAULT_PACKAGE, data_uri="s3://bucket/new", model_name="rerec-recommender",
                param=[], service_account="default-editor")
    return argparse.Namespace(**{**base, **kw})


def test_create_then_unchanged_then_update(capsys):
    client = FakeKFP()
    assert sched.cli_main(_args(), client=client) == 0
    names = [c[0] for c in client.calls]
    assert names == ["get_experiment", "create_experiment", "upload_pipeline", "upload_pipeline_version",
                     "create_recurring_run"]
    create = client.calls[-1][1]
    assert create["max_concurrency"] == 1 and create["cron_expression"] == "0 0 3 * * *"
    assert create["no_catchup"] is True and create["version_id"] == "ver-1"
    assert create["params"] == {"data_uri": "s3://bucket/new", "model_name": "rerec-recommender"}
    assert create["service_account"] == "default-editor"
    assert '"created"' in capsys.readouterr().out

    client.calls.clear()
    sched.cli_main(_args(), client=client)
    assert [c[0] for c in client.calls] == ["get_experiment", "create_experiment"]  # same version, same run
    assert '"unchanged"' in capsys.readouterr().out

    client.calls.clear()
    sched.cli_main(_args(cron="0 30 2 * * 1"), client=client)
    names = [c[0] for c in client.calls]
    assert names[-2:] == ["create_recurring_run", "delete_recurring_run"]  # new one first, then the old
    assert len(client.runs) == 1 and next(iter(client.runs.values())).trigger.cron_schedule.cron == "0 30 2 * * 1"


def test_bad_inputs_are_clear():
    with pytest.raises(ConfigError, match="6, seconds first"):
        sched.cli_main(_args(cron="0 3 * * *"), client=FakeKFP())
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        sched.cli_main(_args(param=["oops"]), client=FakeKFP())
    with pytest.raises(ConfigError, match="KFP_HOST"):
        sched.cli_main(_args())


def test_cli_prints_error_without_traceback(capsys, monkeypatch):
    from rerec.cli import main

    monkeypatch.delenv("KFP_HOST", raising=False)
    assert main(["schedule", "--input-dir", "s3://x/"]) == 2
    err = capsys.readouterr().err
    assert "KFP_HOST" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- checked before connecting
@pytest.mark.parametrize("cron", ["0 0 3 * * *", "0 */30 * * * MON-FRI", "0 0 9 ? * 2-6", "0 0/10 * * * ?",
                                  "5/15 * * * * *", "0 0 0 1 jan-mar *", "0 0 1,13 * * SUN", "@daily",
                                  "@hourly", "@every 1h30m", "@every 90s"])
def test_cron_accepts_what_kfp_accepts(cron):
    assert sched.validate_cron(cron) == cron


@pytest.mark.parametrize("cron, expected", [
    ("bogus", "has 1 fields"),
    ("0 3 * * *", "seconds field in front: '0 0 3 * * *'"),  # a crontab line would run hourly at :03 on KFP
    ("61 * * * * *", "seconds field '61'"),
    ("0 0 3 * * 7", "day-of-week field '7'"),
    ("0 0 3 * 13 *", "month field '13'"),
    ("0 */0 * * * *", "step '0'"),
    ("0 0 5-3 * * *", "runs backwards"),
    ("? * * * * *", "only allowed for day-of-month and day-of-week"),
    ("0 0 3 * FOO *", "not a number or one of JAN"),
    ("@every", "unknown descriptor or duration"),
    ("@every 5 minutes", "unknown descriptor or duration"),
    ("@fortnightly", "unknown descriptor or duration"),
])
def test_cron_refusals_explain_the_format(cron, expected):
    with pytest.raises(ConfigError) as info:
        sched.validate_cron(cron)
    message = str(info.value)
    assert expected in message and "Fix: write SECONDS MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK" in message


def test_flags_are_checked_before_any_connection(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("connected before the flags were checked")

    monkeypatch.setattr(sched.socket, "create_connection", no_network)
    with pytest.raises(ConfigError, match="cron"):
        sched.cli_main(_args(host="http://127.0.0.1:9", cron="bogus"))
    with pytest.raises(ConfigError, match="does_not_exist.yaml does not exist"):
        sched.cli_main(_args(host="http://127.0.0.1:9", package=tmp_path / "does_not_exist.yaml"))
    with pytest.raises(ConfigError, match="is a folder"):
        sched.cli_main(_args(host="http://127.0.0.1:9", package=tmp_path))


def test_unreachable_host_is_one_clear_error_quickly():
    import time

    start = time.monotonic()
    with pytest.raises(sched.RerecError) as info:
        sched.cli_main(_args(host="http://127.0.0.1:9"))  # the discard port: connection refused
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message.startswith("could not reach KFP at http://127.0.0.1:9 (") and "Fix:" in message
    assert "nothing was scheduled" in message


def test_a_host_that_never_answers_is_given_up_after_the_timeout(monkeypatch):
    seen = {}

    def hangs(address, timeout=None):
        seen["timeout"] = timeout
        raise TimeoutError("timed out")

    monkeypatch.setattr(sched.socket, "create_connection", hangs)
    with pytest.raises(sched.RerecError, match=r"could not reach KFP at https://kfp.example/pipeline "
                                               r"\(no answer within 5 s\)"):
        sched.cli_main(_args(host="https://kfp.example/pipeline"))
    assert seen["timeout"] == sched.CONNECT_TIMEOUT_S <= 10


@pytest.fixture
def http_server():
    """A local HTTP server answering every GET with the status in ``state['status']``."""
    import http.server
    import threading

    state = {"status": 404, "paths": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            state["paths"].append(self.path)
            self.send_response(state["status"])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_a_host_that_is_not_kfp_or_unhealthy_is_refused_without_kfp_retries(http_server, monkeypatch):
    import kfp

    monkeypatch.setattr(kfp, "Client", lambda **kw: pytest.fail("kfp.Client would retry healthz for 25 s"))
    with pytest.raises(sched.RerecError, match="not as the KFP API: GET /apis/v2beta1/healthz gave HTTP 404"):
        sched.cli_main(_args(host=http_server["url"]))
    http_server["status"] = 503
    with pytest.raises(sched.RerecError, match="is not healthy: .* HTTP 503"):
        sched.cli_main(_args(host=http_server["url"] + "/"))
    assert http_server["paths"] == ["/apis/v2beta1/healthz"] * 2


def test_connection_lost_midway_is_one_clear_error():
    import urllib3

    class GoneAfterUpload(FakeKFP):
        def list_pipeline_versions(self, *a, **k):
            raise urllib3.exceptions.MaxRetryError(None, "/apis/v2beta1/pipelines",
                                                   urllib3.exceptions.NewConnectionError(None, "Connection refused"))

    with pytest.raises(sched.RerecError) as info:
        sched.cli_main(_args(host="http://kfp:8080"), client=GoneAfterUpload())
    message = str(info.value)
    assert message.startswith("could not reach KFP at http://kfp:8080 (NewConnectionError")
    assert "Fix:" in message and "idempotent" in message


def test_server_refusal_midway_names_the_status():
    from kfp_server_api.exceptions import ApiException

    class Refuses(FakeKFP):
        def upload_pipeline(self, *a, **k):
            raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(sched.RerecError, match="refused the request: HTTP 403 Forbidden.*Fix:"):
        sched.cli_main(_args(host="http://kfp:8080"), client=Refuses())


def test_renamed_parameter_is_passed_under_its_new_name(capsys):
    """``--param profile=paper`` (the parameter's old name) reaches the pipeline as ``preset``, with a note."""
    client = FakeKFP()
    assert sched.cli_main(_args(param=["profile=paper", "rft_steps=200"]), client=client) == 0
    assert client.calls[-1][1]["params"] == {"data_uri": "s3://bucket/new", "model_name": "rerec-recommender",
                                             "preset": "paper", "rft_steps": 200}
    assert "'profile' is now 'preset'" in capsys.readouterr().err
