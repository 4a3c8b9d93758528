"""register's model upload on a cluster: ``mlflow.pyfunc.log_model`` with an input example would load the
model and predict on the example inside the register step (a CPU pod sized for an upload: a 3B model is
OOM-killed there), and MLflow's 30 s HTTP timeout would cut a multi-GB file's upload. The example is still
stored with the model; serving tries it where the model is served."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    from rerec.data.prepare import PrepareConfig, prepare_data

    out = tmp_path_factory.mktemp("register-data") / "data"
    prepare_data(None, out, PrepareConfig(seed=0, n_explicit=4, n_implicit=4, n_misinformed=4, n_interest=4),
                 progress=False)
    return out


def test_log_model_keeps_the_example_without_loading_the_model(tiny_hf_model, small_data, tmp_path, monkeypatch):
    import mlflow
    import mlflow.pyfunc

    from rerec.registry.register import ARTIFACT_UPLOAD_TIMEOUT_S, _log_model
    from rerec.serving.pyfunc import RecommenderModel

    loaded, timeouts = [], []
    monkeypatch.setattr(RecommenderModel, "load_context", lambda self, context: loaded.append(context))
    save = mlflow.pyfunc.save_model
    monkeypatch.setattr(mlflow.pyfunc, "save_model", lambda *a, **k: (
        timeouts.append(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")), save(*a, **k))[1])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")  # what rerec.tracking sets for every other call
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("register", artifact_location=str(tmp_path / "artifacts"))
        with mlflow.start_run(experiment_id=experiment):
            info = _log_model(tiny_hf_model, "m", small_data)
        local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl"))
    finally:
        mlflow.set_tracking_uri(None)
    assert loaded == [], "the model was loaded in the register step to try its input example"
    assert timeouts == [str(ARTIFACT_UPLOAD_TIMEOUT_S)] and ARTIFACT_UPLOAD_TIMEOUT_S >= 3600
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"  # restored after the upload
    # logged as mlflow.pyfunc.log_model would: models from code, the example stored (docs/serving.md)
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert info.saved_input_example_info is not None and info.signature is not None
    assert mlflow.models.Model.load(local).load_input_example(local) is not None
