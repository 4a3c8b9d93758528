"""Registry and promotion gate against a real `mlflow server` with a moto S3 artifact store."""

import json
import threading
import time

import boto3
import pytest
from conftest import S3_BUCKET

from rerec import registry, tracking
from rerec.errors import RerecError
from rerec.registry import GateDecision, RegisterConfig, gate, register, report_value


def _report(tmp_path, name, acc, retention=1.0, split="val"):
    path = tmp_path / f"{name}.json"
    body = {"split": split, "metrics": {}}
    if acc is not None:
        body["metrics"]["rft/all/acc_at_1"] = acc
    if retention is not None:
        body["metrics"]["rft/retention/mmlu_ratio"] = retention
    path.write_text(json.dumps(body))
    return path


def _aliases(name):
    from mlflow import MlflowClient

    return MlflowClient().get_registered_model(name).aliases


# --- the gate by hand -----------------------------------------------------------------------------

def test_gate_by_hand():
    cfg = RegisterConfig(min_general_retention=0.9, min_improvement=0.01)
    assert gate({"metric": 0.5, "retention": 0.95}, None, cfg).promote
    assert not gate({"metric": 0.0, "retention": 1.0}, None, cfg).promote  # a first model that never hits
    assert gate({"metric": 0.5, "retention": 0.95}, {"metric": 0.4}, cfg).promote
    assert not gate({"metric": 0.405, "retention": 0.95}, {"metric": 0.4}, cfg).promote  # within margin
    assert not gate({"metric": 0.3, "retention": 0.95}, {"metric": 0.4}, cfg).promote
    assert not gate({"metric": 0.9, "retention": 0.5}, {"metric": 0.4}, cfg).promote  # forgot too much
    missing = gate({"metric": None, "retention": 0.95}, None, cfg)
    assert isinstance(missing, GateDecision) and not missing.promote and "acc_at_1" in missing.reason
    on_test = gate({"metric": 0.9, "retention": 1.0, "split": "test"}, None, cfg)
    assert not on_test.promote and "split 'test'" in on_test.reason
    assert not gate({"metric": 0.9, "retention": None}, None, cfg).promote
    lower = RegisterConfig(higher_is_better=False, min_general_retention=0.0)
    assert gate({"metric": 0.1, "retention": 1.0}, {"metric": 0.2}, lower).promote


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

@pytest.mark.slow
def test_register_gate_sequence_and_s3_artifacts(mlflow_env, s3_server, tiny_hf_model, tmp_path):
    cfg = RegisterConfig(model_name="seq-model", min_general_retention=0.9)
    first = register(tiny_hf_model, _report(tmp_path, "a", 0.30), cfg)
    assert first["promoted"] and first["version"] == "1"
    assert _aliases("seq-model") == {"champion": "1", "challenger": "1"}

    worse = register(tiny_hf_model, _report(tmp_path, "b", 0.20), cfg)
    assert not worse["promoted"] and "does not beat" in worse["reason"]
    assert _aliases("seq-model") == {"champion": "1", "challenger": "2"}

    forgetful = register(tiny_hf_model, _report(tmp_path, "c", 0.90, retention=0.5), cfg)
    assert not forgetful["promoted"] and "retention" in forgetful["reason"]

    broken = register(tiny_hf_model, _report(tmp_path, "d", None), cfg)
    assert not broken["promoted"] and "no finite" in broken["reason"]
    no_report = register(tiny_hf_model, tmp_path / "nope.json", cfg)
    assert not no_report["promoted"]
    on_test = register(tiny_hf_model, _report(tmp_path, "t", 0.99, split="test"), cfg)
    assert not on_test["promoted"] and "split 'test'" in on_test["reason"]

    better = register(tiny_hf_model, _report(tmp_path, "e", 0.40), cfg)
    assert better["promoted"] and better["champion_version"] == "1" and better["champion_metric"] == 0.30
    assert _aliases("seq-model")["champion"] == better["version"]

    from mlflow import MlflowClient

    v = MlflowClient().get_model_version("seq-model", better["version"])
    assert v.tags["rerec.metric.gate"] == "0.4" and v.tags["rerec.gate"].startswith("promoted")
    assert "rerec.git_commit" in v.tags
    keys = [o["Key"] for o in boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1").list_objects_v2(Bucket=S3_BUCKET).get("Contents", [])]
    assert any("/artifacts/artifacts/" in k and k.endswith("/config.json") for k in keys), keys[:10]
    assert any(k.endswith("MLmodel") for k in keys)

    from rerec.registry_review import format_table, review_rows

    table = format_table(review_rows("seq-model"))
    assert "champion" in table and "challenger" in table and "metric.gate" in table


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


def test_two_runs_finishing_at_once(mlflow_env, tiny_hf_model, tmp_path):
    cfg = RegisterConfig(model_name="race", min_general_retention=0.0)
    register(tiny_hf_model, _report(tmp_path, "base", 0.10), cfg)
    results, errors = {}, []

    def run(label, acc):
        try:
            results[label] = register(tiny_hf_model, _report(tmp_path, label, acc), cfg)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(label, acc)) for label, acc in (("good", 0.5), ("best", 0.7))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert _aliases("race")["champion"] == results["best"]["version"]


def test_rank_from_completion_by_title_number_and_fallback():
    from rerec.pyfunc import rank_from_completion

    cands = ["Heat (1995)", "Fargo (1996)", "Matrix, The (1999)"]
    ranked, named, reasoning = rank_from_completion("1. crime\n2. Coens\n\\boxed{fargo (1996); 1}", cands)
    assert named == ["Fargo (1996)", "Heat (1995)"] and ranked == [*named, "Matrix, The (1999)"]
    assert reasoning == "1. crime\n2. Coens"
    ranked, named, _ = rank_from_completion("no answer here", cands)
    assert named == [] and ranked == cands


def test_pyfunc_served_from_registry_and_champion_download(mlflow_env, tiny_hf_model, tmp_path):
    import mlflow
    import pandas as pd

    from rerec.registry import download_alias

    result = register(tiny_hf_model, _report(tmp_path, "r", 0.5), RegisterConfig(model_name="served"))
    model = mlflow.pyfunc.load_model("models:/served@champion")
    cands = ["Heat", "Fargo"]
    out = model.predict(pd.DataFrame([{"request": "a comedy", "history": ["Fargo"], "candidates": cands}]))
    assert list(out.columns) == ["ranked", "answer", "reasoning", "completion"]
    assert sorted(out.loc[0, "ranked"]) == sorted(cands)

    version = download_alias("served", "champion", tmp_path / "champion")
    assert version == result["version"] and (tmp_path / "champion" / "config.json").exists()
    with pytest.raises(RerecError, match="no 'champion' version"):
        download_alias("never-registered", "champion", tmp_path / "x")
