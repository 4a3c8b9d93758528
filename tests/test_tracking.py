"""Tracking helpers: bounded retries with backoff (and which S3 failures are transient, rerec.objectstore), lineage
tags on nested stage runs (real server; the run context comes from rerec.pipeline.component_glue)."""

import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from rerec import tracking
from rerec.errors import RerecError
from rerec.objectstore import s3_failure
from rerec.pipeline.component_glue import dataset_hash, use_pipeline_run
from rerec.tracking import stage_run, with_retries


def test_retries_transient_then_succeeds(monkeypatch):
    sleeps = []
    monkeypatch.setattr(tracking.time, "sleep", sleeps.append)
    calls = iter([ConnectionError("refused"), MlflowException("boom", error_code=TEMPORARILY_UNAVAILABLE), 42])

    def flaky():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert with_retries(flaky, "do a thing", attempts=4, base_delay_s=1.0) == 42
    assert len(sleeps) == 2 and 1.0 <= sleeps[0] <= 1.25 and 2.0 <= sleeps[1] <= 2.5  # doubling backoff


def test_retries_are_bounded_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    count = []

    def down():
        count.append(1)
        raise MlflowException("API request failed: Max retries exceeded (Connection refused)")

    with pytest.raises(RerecError, match="did not answer after 3 attempts") as info:
        with_retries(down, "log the model", attempts=3)
    assert len(count) == 3 and "Fix:" in str(info.value)


def test_client_errors_are_not_retried():
    count = []

    def bad():
        count.append(1)
        raise MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE)

    with pytest.raises(MlflowException):
        with_retries(bad, "x", attempts=5)
    assert count == [1]
    count.clear()

    def local_bug():
        count.append(1)
        raise MlflowException("a local error defaults to INTERNAL_ERROR")

    with pytest.raises(MlflowException):
        with_retries(local_bug, "x", attempts=5)
    assert count == [1]


def test_stage_runs_carry_lineage_and_nest(mlflow_env, monkeypatch, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text('{"n": 1}')
    for var in ("KFP_RUN_ID", "REREC_DATASET_HASH", "REREC_PARENT_MODEL_VERSION", "REREC_PARENT_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    with mlflow.start_run(run_name="pipeline") as parent:
        pass
    use_pipeline_run(mlflow_env, parent.info.run_id, "kfp-123", data_dir=data, parent_model_version="7")
    start = time.monotonic()
    with stage_run("build-graphs", {"seed": 1}) as tracker:
        tracker.log_metrics({"ndcg@10": 0.5})
    assert time.monotonic() - start < 60
    run = MlflowClient().get_run(tracker.run_id)
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert tags["rerec.kfp_run_id"] == "kfp-123" and tags["rerec.parent_model_version"] == "7"
    assert tags["rerec.dataset_hash"] == dataset_hash(data) and len(tags["rerec.dataset_hash"]) == 16
    assert run.data.params == {"seed": "1"} and run.data.metrics == {"ndcg_at_10": 0.5}
    for var in ("KFP_RUN_ID", "REREC_DATASET_HASH", "REREC_PARENT_MODEL_VERSION", "REREC_PARENT_RUN_ID"):
        monkeypatch.delenv(var, raising=False)


def test_s3_errors_of_the_artifact_store_are_classified_and_explained(monkeypatch):
    """Direct-to-S3 artifact uploads fail with botocore/boto3 errors, not MlflowException: a dropped
    connection or a 5xx/SlowDown is retried, a 403 is not, and both end in one message about S3."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, ConnectionClosedError

    def client_error(status, code):
        return ClientError({"Error": {"Code": code, "Message": "msg"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                           "PutObject")

    def upload_failed(status, code):  # boto3's upload_file re-raises a ClientError like this
        try:
            try:
                raise client_error(status, code)
            except ClientError as exc:
                raise S3UploadFailedError(f"Failed to upload f to b/k: {exc}")  # noqa: B904 - as boto3 does
        except S3UploadFailedError as exc:
            return exc

    assert s3_failure(ConnectionClosedError(endpoint_url="http://s3/b/k"))[0] is True
    assert s3_failure(upload_failed(503, "SlowDown"))[0] is True
    assert s3_failure(upload_failed(500, "InternalError")) == (True, "S3 answered 500 InternalError: msg")
    assert s3_failure(upload_failed(403, "AccessDenied"))[0] is False
    assert s3_failure(ValueError("not S3")) is None

    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://minio:9000")
    count = []

    def slow_down():
        count.append(1)
        raise upload_failed(503, "SlowDown")

    with pytest.raises(RerecError, match=r"Could not log the model: the artifact store \(http://minio:9000\) failed "
                                         r"3 times \(S3 answered 503 SlowDown: msg\)\. Fix: check the S3") as info:
        with_retries(slow_down, "log the model", attempts=3)
    assert len(count) == 3 and "Traceback" not in str(info.value)

    count.clear()

    def denied():
        count.append(1)
        raise upload_failed(403, "AccessDenied")

    with pytest.raises(RerecError, match=r"the artifact store \(http://minio:9000\) refused the request \(S3 "
                                         r"answered 403 AccessDenied"):
        with_retries(denied, "log the model", attempts=3)
    assert count == [1]


def test_a_stage_without_a_tracking_uri_says_where_its_run_goes(monkeypatch, tmp_path, caplog):
    """A stand-alone stage with no MLFLOW_TRACKING_URI used to write ./mlflow.db without a word."""
    import logging

    import mlflow

    from rerec.tracking import default_store_notice, stage_run

    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "REREC_PARENT_RUN_ID", "REREC_TRACKING"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
    notice = default_store_notice("prepare-data")
    assert notice and "prepare-data" in notice and "mlflow.db" in notice and str(tmp_path) in notice
    assert "REREC_TRACKING=off" in notice and "MLFLOW_TRACKING_URI" in notice
    with caplog.at_level(logging.WARNING, logger="rerec.tracking"), stage_run("prepare-data"):
        pass
    assert any("mlflow.db" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "mlflow.db").exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    try:
        assert default_store_notice("prepare-data") is None
    finally:
        mlflow.set_tracking_uri(None)
