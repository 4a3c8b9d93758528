"""Registry and promotion gate against a real `mlflow server` with a moto S3 artifact store."""

import json
import os
import threading
import time

import boto3
import pytest
from conftest import S3_BUCKET

from rerec import tracking
from rerec.errors import RerecError
from rerec.registry import register as registry
from rerec.registry.register import (
    RegisterConfig,
    gate,
    register,
    report_value,
    retention_interval,
    retention_records,
)


def _report(tmp_path, name, acc, retention=1.0, split="val", champion_hits=None, challenger_hits=None, mmlu=None):
    """A report.json; with ``champion_hits``/``challenger_hits`` (per-query Acc@1 of each model on the same
    queries, explicit and implicit in turn) it is a report folder with per_query.parquet, as evaluate writes;
    ``mmlu``: (the challenger's per-question MMLU hits, the base's), the retention block evaluate writes."""
    import pandas as pd

    body = {"split": split, "metrics": {}}
    if mmlu is not None:
        body["retention"] = {"base_model": "base", "models": {"rft": {"mmlu_correct": mmlu[0]},
                                                              "base": {"mmlu_correct": mmlu[1]}}}
    if acc is not None:
        body["metrics"]["rft/all/acc_at_1"] = acc
    if retention is not None:
        body["metrics"]["rft/retention/mmlu_ratio"] = retention
    if champion_hits is None:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        return path
    folder = tmp_path / name
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(body))
    rows = []
    for model, hits in (("champion", champion_hits), ("rft", challenger_hits)):
        rows += [{"model": model, "kind": "llm", "query_id": f"q{i}", "type": ("explicit", "implicit")[i % 2],
                  "acc@1": float(h)} for i, h in enumerate(hits)]
    pd.DataFrame(rows).to_parquet(folder / "per_query.parquet")
    return folder


def _aliases(name):
    from mlflow import MlflowClient

    return MlflowClient().get_registered_model(name).aliases


# --- the gate by hand -----------------------------------------------------------------------------

def _comparison(diff, low, high, n=100):
    return {"metric": "acc@1", "challenger": "rft", "champion": "champion", "alpha": 0.05,
            "all": {"diff": diff, "low": low, "high": high, "separated": low > 0 or high < 0, "n": n}, "by_type": {}}


def test_gate_by_hand():
    cfg = RegisterConfig(min_general_retention=0.9)
    ok = {"metric": 0.5, "retention": 0.95, "split": "val"}
    assert gate(ok, None, None, None, cfg).promote  # the first model
    assert not gate({**ok, "metric": 0.0}, None, None, None, cfg).promote  # a first model that never hits
    clear = gate(ok, "3", _comparison(0.06, 0.01, 0.11), "3", cfg)
    assert clear.promote and "[+0.0100, +0.1100] over 100 queries" in clear.reason
    noisy = gate(ok, "3", _comparison(0.06, -0.01, 0.13), "3", cfg)  # better on average, interval spans 0
    assert not noisy.promote and "does not clear the margin +0.0000" in noisy.reason
    assert not gate(ok, "3", _comparison(0.06, 0.01, 0.11), "3", RegisterConfig(margin=0.02,
                                                                                   min_general_retention=0.9)).promote
    assert gate(ok, "3", _comparison(-0.01, -0.03, 0.01), "3", RegisterConfig(margin=-0.05,
                                                                               min_general_retention=0.9)).promote
    # a tag the champion got long ago is no yardstick: without a comparison in this report, no promotion
    missing = gate(ok, "3", None, None, cfg)
    assert not missing.promote and "does not evaluate the champion (version 3)" in missing.reason
    stale = gate(ok, "4", _comparison(0.2, 0.1, 0.3), "3", cfg)
    assert not stale.promote and "compares with champion version 3, but the champion is now version 4" in stale.reason
    assert not gate({**ok, "retention": 0.5}, "3", _comparison(0.2, 0.1, 0.3), "3", cfg).promote  # forgot too much
    assert "acc_at_1" in gate({**ok, "metric": None}, None, None, None, cfg).reason
    assert "split 'test'" in gate({**ok, "split": "test"}, None, None, None, cfg).reason
    assert not gate({**ok, "retention": None}, None, None, None, cfg).promote
    lower = RegisterConfig(higher_is_better=False, min_general_retention=0.0)  # e.g. an error rate
    assert gate(ok, "3", _comparison(-0.06, -0.11, -0.01), "3", lower).promote
    assert not gate(ok, "3", _comparison(0.06, 0.01, 0.11), "3", lower).promote


def test_paired_comparison_by_hand():
    import pandas as pd

    rows = []
    for model, hits in (("champion", [1, 0, 0, 1, 0, 1]), ("rft", [1, 1, 0, 1, 1, 0]), ("sft", [0] * 6)):
        rows += [{"model": model, "query_id": f"q{i}", "type": ("explicit", "implicit")[i % 2], "acc@1": float(h)}
                 for i, h in enumerate(hits)]
    rows = rows[:-1]  # sft missed q5: not a model of the comparison anyway
    table = pd.DataFrame(rows + [{"model": "rft", "query_id": "q9", "type": "explicit", "acc@1": 1.0}])
    out = registry.paired_comparison(table, "rft", "champion", "acc@1", n_boot=500)
    # q9 has no champion row: only the six shared queries count; rft wins q1 (implicit) and q4 (explicit) and
    # loses q5 (implicit)
    assert out["all"]["n"] == 6 and out["all"]["diff"] == pytest.approx(1 / 6)
    assert out["by_type"]["implicit"]["diff"] == pytest.approx(0.0) and out["by_type"]["explicit"]["diff"] == (
        pytest.approx(1 / 3))
    # six queries cannot separate the two: the interval (within the per-query differences' range) spans 0
    assert -1 <= out["all"]["low"] < 0 < out["all"]["diff"] < out["all"]["high"] <= 1 and not out["all"]["separated"]
    assert registry.paired_comparison(table, "rft", "nobody", "acc@1") is None
    assert registry.paired_comparison(None, "rft", "champion", "acc@1") is None
    assert registry.paired_comparison(table, "rft", "champion", "ndcg@99") is None


def test_the_gate_and_the_report_share_one_paired_statistic():
    """By hand: a - b is +1, 0 on two explicit queries and -1 on one implicit one (q4: b never answered it;
    q5: a's NaN). Stratified by type, a draw sums the explicit pair to 0, 1 or 2 (1/4, 1/2, 1/4) and adds -1,
    so the mean over 3 queries is -1/3, 0 or +1/3 and the 95% interval is [-1/3, +1/3]. Unstratified, all
    three draws are the -1 with probability 1/27 > 2.5%, so its low end would be -1: this fails if either side
    stops stratifying. The gate (registry.paired_comparison) and the report (evaluate.paired_differences)
    give the same cells, with the same default draw count."""
    import math

    import pandas as pd

    from rerec.eval.evaluate import EvalConfig, paired_differences
    from rerec.eval.metrics import PAIRED_N_BOOT, paired_by_type

    df = pd.DataFrame([("a", "q1", "explicit", 1.0), ("a", "q2", "explicit", 1.0), ("a", "q3", "implicit", 0.0),
                       ("a", "q4", "implicit", 1.0), ("a", "q5", "explicit", math.nan),
                       ("b", "q1", "explicit", 0.0), ("b", "q2", "explicit", 1.0), ("b", "q3", "implicit", 1.0),
                       ("b", "q5", "explicit", 1.0)], columns=["model", "query_id", "type", "acc@1"])
    cells = paired_by_type(df, "a", "b", "acc@1")
    assert list(cells) == ["all", "explicit", "implicit"]
    assert cells["all"] == {"diff": 0.0, "low": pytest.approx(-1 / 3), "high": pytest.approx(1 / 3), "n": 3,
                            "separated": False, "model_score": pytest.approx(2 / 3),
                            "reference_score": pytest.approx(2 / 3)}
    assert (cells["explicit"]["diff"], cells["explicit"]["n"]) == (0.5, 2)
    assert (cells["implicit"]["low"], cells["implicit"]["high"], cells["implicit"]["separated"]) == (-1.0, -1.0, True)

    gate_view = registry.paired_comparison(df, "a", "b", "acc@1")
    (report_view,) = paired_differences(df, [("a", "b")])
    assert {"all": gate_view["all"], **gate_view["by_type"]} == cells == report_view["by_type"]
    assert RegisterConfig().n_boot == EvalConfig().n_boot == PAIRED_N_BOOT
    assert (RegisterConfig().seed, RegisterConfig().alpha) == (EvalConfig().seed, 0.05)
    # the interval is the one the verdict and the gate print
    assert "[-0.333, +0.333]: not separated" in report_view["verdict"]


def test_report_value_paths():
    report = {"metrics": {"rft/all/acc_at_1": 0.3, "sft/all/acc_at_1": 0.2}, "bad": float("nan")}
    assert report_value(report, "metrics.rft/all/acc_at_1") == 0.3
    assert report_value(report, "rft/all/acc_at_1") == 0.3
    assert report_value(report, "acc_at_1") is None  # ambiguous
    assert report_value(report, "bad") is None
    assert report_value(report, "missing") is None


def test_pip_requirements_are_pinned():
    reqs = registry.pip_requirements()
    assert any(r.startswith("torch==") for r in reqs) and any(r.startswith("mlflow==") for r in reqs)
    assert all("==" in r for r in reqs)


# --- against the real server ------------------------------------------------------------------------

WIN = [1] * 60 + [0] * 40  # challenger hits on 100 queries
LOSE = [0] * 100


@pytest.mark.slow
def test_register_gate_sequence_review_promote_and_roll_back(mlflow_env, s3_server, tiny_hf_model, tmp_path, capsys):
    cfg = RegisterConfig(model_name="seq-model", min_general_retention=0.9)
    first = register(tiny_hf_model, _report(tmp_path, "a", 0.30), cfg)
    assert first["promoted"] and first["version"] == "1"
    assert _aliases("seq-model") == {"champion": "1", "challenger": "1"}

    # a better summary number alone does not promote: the report never ranked the champion
    unpaired = register(tiny_hf_model, _report(tmp_path, "b", 0.90), cfg)
    assert not unpaired["promoted"] and "does not evaluate the champion (version 1)" in unpaired["reason"]
    worse = register(tiny_hf_model, _report(tmp_path, "c", 0.20, champion_hits=WIN, challenger_hits=LOSE), cfg,
                     compared_version="1")
    assert not worse["promoted"] and "does not clear the margin" in worse["reason"]
    forgetful = register(tiny_hf_model, _report(tmp_path, "d", 0.9, retention=0.5, champion_hits=LOSE,
                                                challenger_hits=WIN, mmlu=([1] * 25 + [0] * 75, [1] * 50 + [0] * 50)),
                         cfg, compared_version="1")
    assert not forgetful["promoted"] and "retention 0.5000 < 0.9000 with confidence" in forgetful["reason"]
    on_test = register(tiny_hf_model, _report(tmp_path, "t", 0.99, split="test"), cfg)
    assert not on_test["promoted"] and "split 'test'" in on_test["reason"]
    assert _aliases("seq-model")["champion"] == "1"

    # 2 of 32 questions against the base's 5: a ratio of 0.4 that 32 questions cannot tell from chance
    better = register(tiny_hf_model, _report(tmp_path, "e", 0.60, retention=0.4, champion_hits=LOSE, challenger_hits=WIN,
                                             mmlu=([1] * 2 + [0] * 30, [0] * 2 + [1] * 5 + [0] * 25)), cfg,
                      compared_version="1")
    assert better["promoted"] and better["champion_version"] == "1" and better["comparison"]["all"]["n"] == 100
    assert "below 0.9000 but within noise" in better["reason"]
    assert better["comparison"]["by_type"]["explicit"]["diff"] == pytest.approx(0.6)
    assert _aliases("seq-model")["champion"] == better["version"]

    from mlflow import MlflowClient

    v = MlflowClient().get_model_version("seq-model", better["version"])
    assert v.tags["rerec.metric.gate"] == "0.6" and v.tags["rerec.gate"].startswith("promoted")
    assert v.tags["rerec.compared.version"] == "1" and v.tags["rerec.previous_champion"] == "1"
    assert float(v.tags["rerec.compared.low"]) > 0 and "rerec.git_commit" in v.tags
    keys = [o["Key"] for o in boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1").list_objects_v2(Bucket=S3_BUCKET).get("Contents", [])]
    assert any("/artifacts/artifacts/" in k and k.endswith("/config.json") for k in keys), keys[:10]
    assert any(k.endswith("MLmodel") for k in keys) and any(k.endswith("evaluation/per_query.parquet") for k in keys)

    # the review: the champion and the challenger, the paired difference per query type, the report, the commands
    from rerec.cli import main

    assert main(["champion", "review", "--name", "seq-model"]) == 0
    text = capsys.readouterr().out
    assert f"champion (v{better['version']})" in text and "explicit" in text and "implicit" in text
    assert "+0.6000" in text and "evaluation/report.html" in text
    assert "rerec champion rollback --name seq-model" in text
    # roll back to the champion it replaced (through the deprecated spelling), then promote it again by hand
    assert main(["registry", "rollback", "--name", "seq-model"]) == 0
    assert "'registry' is deprecated" in capsys.readouterr().err
    assert _aliases("seq-model")["champion"] == "1"
    assert main(["champion", "promote", "--name", "seq-model", "--version", better["version"]]) == 0
    assert _aliases("seq-model")["champion"] == better["version"]
    capsys.readouterr()
    assert main(["registry", "promote", "--name", "seq-model", "--version", "99"]) == 2
    assert "no version 99" in capsys.readouterr().err


def test_broken_model_folder_is_not_registered(mlflow_env, tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(RerecError, match="config.json"):
        register(tmp_path / "m", _report(tmp_path, "r", 0.9), RegisterConfig(model_name="never"))
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(RerecError, match="weights"):
        register(tmp_path / "m", _report(tmp_path, "r", 0.9), RegisterConfig(model_name="never"))


def test_failure_mid_registration_leaves_no_version(mlflow_env, tiny_hf_model, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    def refuse(self, name, alias, version):
        raise RuntimeError("injected: alias write lost")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", refuse)
    with pytest.raises(RuntimeError, match="injected"):
        register(tiny_hf_model, _report(tmp_path, "r", 0.9), RegisterConfig(model_name="half"))
    monkeypatch.undo()
    assert MlflowClient().search_model_versions("name='half'") == []


def test_server_down_bounded_retries_clear_error(monkeypatch, tiny_hf_model, tmp_path):
    import mlflow
    from conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setattr(tracking, "RETRY_ATTEMPTS", 3)
    monkeypatch.setattr(tracking, "RETRY_BASE_DELAY_S", 0.1)
    mlflow.set_tracking_uri(dead)
    start = time.monotonic()
    with pytest.raises(RerecError, match="did not answer after 3 attempts") as info:
        register(tiny_hf_model, _report(tmp_path, "r", 0.9), RegisterConfig(model_name="down"))
    assert time.monotonic() - start < 30
    assert dead in str(info.value) and "Fix:" in str(info.value)


def test_two_runs_finishing_at_once_never_displace_a_champion_they_were_not_compared_with(
        mlflow_env, tiny_hf_model, tmp_path):
    cfg = RegisterConfig(model_name="race", min_general_retention=0.0)
    register(tiny_hf_model, _report(tmp_path, "base", 0.10), cfg)
    results, errors = {}, []

    def run(label):
        try:
            report = _report(tmp_path, label, 0.6, champion_hits=LOSE, challenger_hits=WIN)
            results[label] = register(tiny_hf_model, report, cfg, compared_version="1")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(label,)) for label in ("good", "best")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    champion = _aliases("race")["champion"]
    winners = [r for r in results.values() if r["promoted"]]
    # both beat version 1; whichever moved the alias first is champion, and the other was not promoted over it
    assert [r["version"] for r in winners] == [champion], [(r["version"], r["reason"]) for r in results.values()]
    loser = next(r for r in results.values() if not r["promoted"])
    assert "champion" in loser["reason"] and loser["version"] != champion


# --- S3 faults: artifacts written straight to S3 (an experiment whose artifact location is s3://) ------

class S3Faults:
    """A botocore ``before-send`` hook on the artifact store's S3 client. Every PutObject/UploadPart
    request (botocore's own retries included) is numbered from 1; ``fail(n)`` says whether request n is
    answered with ``error`` instead of reaching the moto server: a dropped connection or an S3 error."""

    EVENTS = ("before-send.s3.PutObject", "before-send.s3.UploadPart")

    def __init__(self):
        self.fail = lambda n: False
        self.error = "SlowDown"
        self.sent, self.failed, self.clients = 0, [], []

    def before_send(self, request, **_):
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import ConnectionClosedError

        self.sent += 1
        if not self.fail(self.sent):
            return None
        self.failed.append(request.url.split("?")[0])
        if self.error == "connection":
            raise ConnectionClosedError(endpoint_url=request.url)
        body = (f"<Error><Code>{self.error}</Code><Message>injected by the test</Message></Error>").encode()

        class Raw:
            def stream(self, **_):
                yield body

        return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, Raw())


@pytest.fixture
def s3_faults(mlflow_env, s3_server, monkeypatch):
    """The experiment of the test writes its artifacts straight to the moto bucket (the client's boto3),
    with botocore and rerec retrying quickly; yields the fault switch and the experiment id."""
    import mlflow
    from mlflow.store.artifact import s3_artifact_repo

    for key, value in {"MLFLOW_S3_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tracking, "RETRY_ATTEMPTS", 2)
    monkeypatch.setattr(tracking, "RETRY_BASE_DELAY_S", 0.1)
    name = os.environ["MLFLOW_EXPERIMENT_NAME"]  # one per test (mlflow_env)
    experiment_id = mlflow.create_experiment(name, artifact_location=f"s3://{S3_BUCKET}/direct/{name}")
    faults = S3Faults()
    real = s3_artifact_repo._cached_get_s3_client
    real.cache_clear()  # a client made before the environment above would not see it

    def client_with_faults(*args, **kwargs):
        client = real(*args, **kwargs)
        for event in S3Faults.EVENTS:
            client.meta.events.register(event, faults.before_send, unique_id=f"rerec-test-{event}")
        faults.clients.append(client)
        return client

    monkeypatch.setattr(s3_artifact_repo, "_cached_get_s3_client", client_with_faults)
    yield faults, experiment_id
    for client in faults.clients:
        for event in S3Faults.EVENTS:
            client.meta.events.unregister(event, unique_id=f"rerec-test-{event}")
    real.cache_clear()


def _s3_keys(s3_server, prefix):
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return {o["Key"][len(prefix):]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _logged_models(experiment_id):
    import mlflow

    return mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")


def _model_prefix(model):
    assert model.artifact_location.startswith(f"s3://{S3_BUCKET}/"), model.artifact_location
    return model.artifact_location[len(f"s3://{S3_BUCKET}/"):].rstrip("/") + "/"


def test_s3_failing_mid_upload_registers_nothing_then_a_retry_registers_a_complete_model(
        s3_faults, s3_server, tiny_hf_model, tmp_path):
    """S3 answers 503 SlowDown from the third object on (every retry too): a clear error, no version, only
    FAILED logged models. Then S3 drops the connection of the third object twice (both of botocore's
    attempts), so the first log_model fails midway and rerec's retry uploads everything again: one version,
    pointing at a READY model whose every file is in the bucket with its size."""
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus

    faults, experiment_id = s3_faults
    report = _report(tmp_path, "r", 0.5)
    faults.fail = lambda n: n >= 3
    start = time.monotonic()
    with pytest.raises(RerecError) as info:
        register(tiny_hf_model, report, RegisterConfig(model_name="s3-flaky"))
    assert time.monotonic() - start < 60
    message = str(info.value)
    assert message.startswith(f"Could not log the model: the artifact store ({s3_server}) failed 2 times (S3 answered "
                              "503 SlowDown: injected by the test")
    assert "Fix: check the S3 endpoint, bucket and credentials" in message
    assert len(faults.failed) >= 4  # botocore retried each failing object, rerec retried log_model
    assert MlflowClient().search_model_versions("name='s3-flaky'") == []
    failed = _logged_models(experiment_id)
    assert len(failed) == 2 and {m.status for m in failed} == {LoggedModelStatus.FAILED}
    assert any(_s3_keys(s3_server, _model_prefix(m)) for m in failed)  # partial uploads exist, unregistered

    faults.failed.clear()
    faults.sent, faults.error = 0, "connection"
    faults.fail = lambda n: n in (3, 4)
    result = register(tiny_hf_model, report, RegisterConfig(model_name="s3-flaky"))
    assert len(faults.failed) == 2 and faults.failed[0] == faults.failed[1]  # one object, both boto attempts
    versions = MlflowClient().search_model_versions("name='s3-flaky'")
    assert [v.version for v in versions] == [result["version"]] == ["1"]
    version = MlflowClient().get_model_version("s3-flaky", "1")
    model_id = version.model_id or version.source.removeprefix("models:/")
    model = MlflowClient().get_logged_model(model_id)
    assert model.status == LoggedModelStatus.READY
    uploaded = _s3_keys(s3_server, _model_prefix(model))
    local = {f"artifacts/{tiny_hf_model.name}/{p.relative_to(tiny_hf_model).as_posix()}": p.stat().st_size
             for p in tiny_hf_model.rglob("*") if p.is_file()}
    assert local and all(uploaded.get(k) == size for k, size in local.items()), (sorted(local), sorted(uploaded))
    assert "MLmodel" in uploaded
    others = [m for m in _logged_models(experiment_id) if m.model_id != model.model_id]
    assert len(others) == 3 and {m.status for m in others} == {LoggedModelStatus.FAILED}


def test_a_file_lost_without_an_error_is_not_registered(s3_faults, tiny_hf_model, tmp_path, monkeypatch):
    """An upload that silently drops a file (no exception): the check before the version refuses it."""
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    _, experiment_id = s3_faults
    real_upload = S3ArtifactRepository._upload_file

    def loses_the_tokenizer(self, s3_client, local_file, bucket, key):
        if not key.endswith("/tokenizer.json"):
            real_upload(self, s3_client, local_file, bucket, key)

    monkeypatch.setattr(S3ArtifactRepository, "_upload_file", loses_the_tokenizer)
    with pytest.raises(RerecError, match=r"upload of .* is incomplete .*tokenizer.json.*no model version was "
                                         r"created. Fix: rerun register"):
        register(tiny_hf_model, _report(tmp_path, "r", 0.5), RegisterConfig(model_name="s3-lossy"))
    assert MlflowClient().search_model_versions("name='s3-lossy'") == []
    assert [m.status for m in _logged_models(experiment_id)] == [LoggedModelStatus.FAILED]


def test_retention_below_the_floor_refuses_only_when_the_questions_show_it():
    cfg = RegisterConfig(min_general_retention=0.95)
    ok = {"metric": 0.85, "split": "val"}
    # make run at 873d936: 2 of 32 MMLU questions against the base's 5 of 32 (ratio 0.4), both near chance
    mine, base = [1.0] * 2 + [0.0] * 30, [0.0] * 2 + [1.0] * 5 + [0.0] * 25
    noisy = retention_interval(mine, base, 0.95)
    assert noisy["n"] == 32 and noisy["diff"] == pytest.approx(2 / 32 - 0.95 * 5 / 32)
    assert noisy["low"] < 0 < noisy["high"]
    within = gate({**ok, "retention": 0.4, "retention_interval": noisy}, None, None, None, cfg)
    assert within.promote and "below 0.9500 but within noise" in within.reason and "over 32 questions" in within.reason
    assert not gate({**ok, "retention": 0.4, "retention_interval": noisy}, None, None, None,
                    RegisterConfig(retention_test="point")).promote  # the strict reading
    assert not gate({**ok, "retention": 0.4}, None, None, None, cfg).promote  # no records: the ratio decides
    # the same ratio over 400 questions is no accident
    clear = retention_interval(mine * 12 + [0.0] * 16, base * 12 + [0.0] * 16, 0.95)
    refused = gate({**ok, "retention": 0.4, "retention_interval": clear}, None, None, None, cfg)
    assert clear["high"] < 0 and not refused.promote and "with confidence" in refused.reason
    # within noise on retention still needs the champion comparison to pass
    assert not gate({**ok, "retention": 0.4, "retention_interval": noisy}, "3", _comparison(0.06, -0.01, 0.13), "3",
                    cfg).promote


def test_retention_records_are_read_from_the_report():
    report = {"retention": {"base_model": "base", "models": {
        "base": {"mmlu_correct": [True, False, True], "ifeval_followed": [True]},
        "rft": {"mmlu_correct": [False, False, True], "ifeval_followed": [False]}}}}
    assert retention_records(report, "rft", "metrics.rft/retention/mmlu_ratio") == ([0.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert retention_records(report, "rft", "rft/retention/ifeval_ratio") == ([0.0], [1.0])
    assert retention_records(report, "sft", "metrics.rft/retention/mmlu_ratio") is None
    assert retention_records({}, "rft", "metrics.rft/retention/mmlu_ratio") is None
    assert retention_records(report, "rft", "metrics.rft/all/acc_at_1") is None
