"""The orchestration run for real: components through the KFP local runner (SubprocessRunner in this
environment), stage runs nested under an MLflow parent run on a real server, and `rerec run`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rerec.config import dataclass_from_dict
from rerec.errors import ConfigError
from rerec.run_profiles import PROFILES, profile_configs, stage_config_classes
from rerec.tracking import component_metrics, stage_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_profile_fits_the_stage_configs():
    classes = stage_config_classes()
    for name in PROFILES:
        configs = profile_configs(name)
        assert set(configs) == set(classes), name
        for stage, values in configs.items():
            dataclass_from_dict(classes[stage], values, where=f"{name}.{stage}")
        assert configs["gate_eval"]["split"] == "val" and configs["eval"]["split"] == "test"
    with pytest.raises(ConfigError, match="smoke"):
        profile_configs("nope")


def test_stage_config_from_json_and_errors():
    from rerec.graphs.build import GraphConfig, build_graphs

    assert isinstance(stage_config(build_graphs, "{}"), GraphConfig)  # ``GraphConfig | None`` hint
    with pytest.raises(ConfigError, match="not valid JSON"):
        stage_config(build_graphs, "{seed: 1")
    with pytest.raises(ConfigError, match="JSON object"):
        stage_config(build_graphs, "[1]")
    with pytest.raises(ConfigError, match="unknown option"):
        stage_config(build_graphs, '{"no_such_field": 1}')


def test_component_metrics_are_numeric_and_safe():
    summary = {"ndcg@10": 0.5, "n": 3, "ok": True, "name": "x", "nested": {"recall@20": 0.25}, "none": None}
    assert component_metrics(summary) == {"ndcg_at_10": 0.5, "n": 3.0, "ok": 1.0, "nested_recall_at_20": 0.25}


def _mini_pipeline():
    from kfp import dsl

    import components as c

    @dsl.pipeline(name="rerec-first-stages")
    def first_stages(prepare_config: str, mlflow_tracking_uri: str, mlflow_parent_run_id: str):
        tracking = {"mlflow_tracking_uri": mlflow_tracking_uri, "mlflow_parent_run_id": mlflow_parent_run_id,
                    "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
        prep = c.prepare_data(config_json=prepare_config, **tracking)
        c.build_graphs(data=prep.outputs["data"], **tracking)

    return first_stages


@pytest.mark.slow
def test_first_stages_through_kfp_local_nest_under_parent_run(mlflow_env, tmp_path):
    import warnings

    import kfp.local
    import mlflow
    from mlflow import MlflowClient

    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with mlflow.start_run(run_name="pipeline") as parent:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _mini_pipeline()(prepare_config=json.dumps({"seed": 0, "n_explicit": 40, "n_implicit": 20,
                                                        "n_misinformed": 10, "n_interest": 10}),
                             mlflow_tracking_uri=mlflow_env, mlflow_parent_run_id=parent.info.run_id)
    runs = MlflowClient().search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_stage = {r.data.tags.get("rerec.stage"): r for r in runs}
    assert {"prepare-data", "build-graphs"} <= set(by_stage), [r.data.tags for r in runs]
    graphs = by_stage["build-graphs"]
    assert graphs.info.status == "FINISHED"
    assert graphs.data.tags.get("rerec.dataset_hash") and graphs.data.tags.get("rerec.kfp_run_id")
    assert graphs.data.tags.get("rerec.git_commit")
    out = list((tmp_path / "root").glob("rerec-first-stages-*/build-graphs/graphs/manifest.json"))
    assert out, list((tmp_path / "root").rglob("*"))[:20]
    metrics = list((tmp_path / "root").glob("rerec-first-stages-*/build-graphs/executor_output.json"))
    assert metrics


@pytest.mark.slow
def test_rerec_run_smoke_writes_report_and_mlflow(tmp_path):
    env = {**os.environ, "REREC_TRACKING": "on"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "rerec.cli", "run", "--profile", "smoke", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["table"]
    assert (out / "report" / "report.html").exists()
    assert "mlflow ui --backend-store-uri sqlite:///" in proc.stdout and str(out / "report.json") in proc.stdout

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name("rerec")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("rerec.pipeline") == "train"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    stages = {r.data.tags.get("rerec.stage") for r in runs
              if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert {"prepare-data", "build-graphs", "register"} <= stages, stages
    versions = client.search_model_versions("name='rerec-recommender'")
    assert versions and client.get_registered_model("rerec-recommender").aliases.get("challenger")


def test_rft_component_resumes_on_the_checkpoint_volume(tmp_path, monkeypatch):
    """The component body with a stand-in stage: on the PVC it works under the KFP run id with resume."""
    from kfp.dsl import Dataset, Metrics, Model

    import rerec.train.rft as rft_module
    from components.rft import rft as rft_component

    calls = []

    def fake_stage(data, graphs, reward, base, out, config: rft_module.RFTConfig, resume=False):
        calls.append((out, resume, type(config).__name__))
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        return {"steps": 2, "reward@mean": 0.5, "profile": "tiny"}

    monkeypatch.setattr(rft_module, "rft", fake_stage)
    monkeypatch.setenv("REREC_CHECKPOINT_DIR", str(tmp_path / "pvc"))
    monkeypatch.setenv("REREC_TRACKING", "off")

    def art(cls, name):
        a = cls(name=name, uri=str(tmp_path / name))
        a.path = str(tmp_path / name)  # local paths, as the executor gives them
        return a

    model, metrics = art(Model, "model"), art(Metrics, "metrics")
    rft_component.python_func(data=art(Dataset, "data"), graphs=art(Dataset, "graphs"), reward=art(Model, "reward"),
                              base_model=art(Model, "base"), model=model, metrics=metrics,
                              config_json='{"profile": "tiny"}', kfp_run_id="run-42")
    out, resume, cfg_name = calls[0]
    assert out == tmp_path / "pvc" / "run-42" / "rft" / "model" and resume is True and cfg_name == "RFTConfig"
    assert (tmp_path / "model" / "config.json").exists()
    assert metrics.metadata == {"steps": 2.0, "reward_at_mean": 0.5}
