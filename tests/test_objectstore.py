"""Inputs from object storage against the moto S3 server: a folder downloaded atomically, clear errors, and
the prepare-data step reading its dataset from s3:// and logging it as an MLflow dataset input."""

import json
from pathlib import Path

import boto3
import pytest

from rerec.errors import InputError, RerecError
from rerec.objectstore import download_prefix, localise, localise_config, split_s3_uri

BUCKET = "rerec-inputs"


@pytest.fixture
def s3(s3_server, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_S3_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return client


def test_split_s3_uri():
    assert split_s3_uri("s3://b/a/b") == ("b", "a/b/")
    assert split_s3_uri("s3://b/a/b/") == ("b", "a/b/")
    assert split_s3_uri("s3://b") == ("b", "")
    with pytest.raises(InputError, match="names no bucket"):
        split_s3_uri("s3:///x")


def test_download_prefix_copies_the_folder_and_nothing_beside_it(s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="model/config.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="model/sub/weights.bin", Body=b"12345")
    s3.put_object(Bucket=BUCKET, Key="model2/other.json", Body=b"{}")  # a sibling with a common prefix
    info = download_prefix(f"s3://{BUCKET}/model", tmp_path / "m")
    assert info["files"] == 2 and info["bytes"] == 7
    assert sorted(str(p.relative_to(tmp_path / "m")) for p in (tmp_path / "m").rglob("*") if p.is_file()) == [
        "config.json", "sub/weights.bin"]
    assert localise("smollm2", tmp_path) == "smollm2"  # not a URI: unchanged
    local = json.loads(localise_config(json.dumps({"model": f"s3://{BUCKET}/model/", "steps": 3}), tmp_path / "c"))
    assert local["steps"] == 3 and (Path(local["model"]) / "config.json").is_file()


def test_errors_name_the_uri_and_the_fix(s3, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="holds no files"):
        download_prefix(f"s3://{BUCKET}/nothing-here/", tmp_path / "a")
    with pytest.raises(RerecError, match="the bucket does not exist"):
        download_prefix("s3://no-such-bucket-here/x/", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    s3.put_object(Bucket=BUCKET, Key="evil/../../escape.txt", Body=b"x")
    with pytest.raises(InputError, match="leaves the folder"):
        download_prefix(f"s3://{BUCKET}/evil/", tmp_path / "c")
    assert not (tmp_path / "c").exists() and not (tmp_path.parent / "escape.txt").exists()


def _artifact(cls, root: Path, name: str):
    artifact = cls(name=name, uri=str(root / name))
    artifact.path = str(root / name)
    return artifact


@pytest.mark.slow
def test_prepare_data_step_reads_s3_and_logs_the_dataset(s3, mlflow_env, tmp_path):
    """The component body as a pipeline step runs it: MovieLens-100k as parquet tables in a bucket becomes the
    prepared dataset, logged as an input of the pipeline's parent run."""
    import mlflow
    from kfp.dsl import Dataset, Metrics

    from components.prepare_data import prepare_data
    from rerec.data.load import load_catalog, save_catalog

    catalog = load_catalog(None)
    catalog.queries = None
    for path in save_catalog(catalog, tmp_path / "tables").values():
        s3.upload_file(str(path), BUCKET, f"datasets/ml-100k/{path.name}")
    parent = mlflow.start_run(run_name="pipeline")
    mlflow.end_run()
    data, metrics = _artifact(Dataset, tmp_path, "data"), _artifact(Metrics, tmp_path, "metrics")
    config = {"seed": 0, "n_explicit": 20, "n_implicit": 10, "n_misinformed": 5, "n_interest": 5}
    prepare_data.python_func(data=data, metrics=metrics, config_json=json.dumps(config),
                             data_uri=f"s3://{BUCKET}/datasets/ml-100k/", mlflow_parent_run_id=parent.info.run_id,
                             kfp_run_id="run-1")
    assert (tmp_path / "data" / "queries.parquet").is_file() and metrics.metadata["stats_n_queries"] > 0
    assert data.metadata["source"] == f"s3://{BUCKET}/datasets/ml-100k/" and data.metadata["digest"]
    run = mlflow.get_run(parent.info.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == data.metadata["digest"]
    assert json.loads(dataset_input.dataset.source)["uri"] == f"s3://{BUCKET}/datasets/ml-100k/"
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
