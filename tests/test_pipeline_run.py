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
from rerec.pipeline.component_glue import component_metrics, stage_config
from rerec.pipeline.presets import PRESETS, preset_configs, stage_config_classes

ROOT = Path(__file__).resolve().parents[1]


def test_every_preset_fits_the_stage_configs():
    classes = stage_config_classes()
    for name in PRESETS:
        configs = preset_configs(name)
        assert set(configs) == set(classes), name
        for stage, values in configs.items():
            dataclass_from_dict(classes[stage], values, where=f"{name}.{stage}")
        assert configs["gate_eval"]["split"] == "val" and configs["eval"]["split"] == "test"
    with pytest.raises(ConfigError, match="smoke"):
        preset_configs("nope")


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
    def first_stages(prepare_config: str, mlflow_parent_run_id: str):
        tracking = {"mlflow_parent_run_id": mlflow_parent_run_id, "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
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
                             mlflow_parent_run_id=parent.info.run_id)
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
@pytest.mark.parametrize("arm", [False, True], ids=["rerec-only", "with-plain-grpo-arm"])
def test_rerec_run_smoke_writes_report_and_mlflow(tmp_path, arm):
    env = {**os.environ, "REREC_TRACKING": "on"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "rerec.cli", "run", "--preset", "smoke", "--out", str(out),
                           *(["--plain-grpo-arm", "--config-overrides", '{"rft": {"seed": 3}}'] if arm else [])],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["table"]
    assert ("plain_grpo" in report["models"]) is arm and {"sft", "rft"} <= set(report["models"])
    assert (out / "report" / "report.html").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["preset"] == "smoke" and len(record["commit"]) == 40 and "rerec.cli run" in record["command"]
    assert {"prepare-data", "build-graphs", "register"} <= set(record["stage_seconds"]), record["stage_seconds"]
    assert record["stage_steps"]["sft-warmup"]["steps"] >= 1 and "rft" in record["stage_steps"], record["stage_steps"]
    # run.json keeps the configs the stages ran with: the overrides applied, the arm's only when it ran
    assert record["configs"]["rft"]["seed"] == (3 if arm else 0) and ("plain_grpo" in record["configs"]) is arm
    if arm:
        assert record["configs"]["plain_grpo"]["seed"] == 3 and record["configs"]["plain_grpo"]["ablation"] == "plain_grpo"
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
    assert parent[0].data.params["pipeline.plain_grpo_arm"] == str(arm)
    assert parent[0].inputs.dataset_inputs and parent[0].data.tags["rerec.kfp_run_id"]
    rft_runs = [r for r in runs if r.data.tags.get("rerec.stage") == "rft"]
    assert sorted(r.data.tags.get("rerec.ablation") for r in rft_runs) == (["none", "plain_grpo"] if arm else ["none"])
    versions = client.search_model_versions("name='rerec-recommender'")
    assert versions and client.get_registered_model("rerec-recommender").aliases.get("challenger")


def test_rft_step_resumes_on_the_checkpoint_volume_and_prunes_it(tmp_path, monkeypatch):
    """The component body with a stand-in stage: on the volume it works under the KFP run id and the arm, with
    resume; once the model is copied out the run's folder goes; an arm beside it trains the same steps."""
    import rerec.train.rft as rft_module
    from components.rft import rft as rft_component

    calls = []

    def fake_stage(data, graphs, reward, base, out, config: rft_module.RFTConfig, resume=False):
        calls.append((out, resume, config))
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        (out / "metrics.json").write_text(json.dumps({"steps": 7}))
        return {"steps": 7, "reward@mean": 0.5, "profile": "tiny"}

    monkeypatch.setattr(rft_module, "rft", fake_stage)
    monkeypatch.setenv("REREC_CHECKPOINT_DIR", str(tmp_path / "pvc"))
    monkeypatch.setenv("REREC_TRACKING", "off")
    monkeypatch.setenv("REREC_NPROC_PER_NODE", "1")
    (tmp_path / "pvc" / "run-42" / "other-arm").mkdir(parents=True)  # another arm of the run, still working

    def art(cls, name):
        a = cls(name=name, uri=str(tmp_path / name))
        a.path = str(tmp_path / name)  # local paths, as the executor gives them
        return a

    from kfp.dsl import Dataset, Metrics, Model

    model, metrics = art(Model, "model"), art(Metrics, "metrics")
    rft_component.python_func(data=art(Dataset, "data"), graphs=art(Dataset, "graphs"), reward=art(Model, "reward"),
                              base_model=art(Model, "base"), model=model, metrics=metrics,
                              config_json='{"profile": "tiny"}', kfp_run_id="run-42")
    out, resume, config = calls[0]
    assert out == tmp_path / "pvc" / "run-42" / "rft" / "model" and resume is True and config.stop_after_steps == 0
    assert (tmp_path / "model" / "config.json").exists() and model.metadata["arm"] == "rft"
    assert metrics.metadata == {"steps": 7.0, "reward_at_mean": 0.5}
    assert not (tmp_path / "pvc" / "run-42" / "rft").exists() and (tmp_path / "pvc" / "run-42" / "other-arm").is_dir()

    arm = art(Model, "arm")
    rft_component.python_func(data=art(Dataset, "data"), graphs=art(Dataset, "graphs"), reward=art(Model, "reward"),
                              base_model=art(Model, "base"), model=arm, metrics=art(Metrics, "m2"),
                              same_budget_as=model, arm="plain_grpo",
                              config_json='{"profile": "tiny", "ablation": "plain_grpo", "time_budget_s": 60}',
                              kfp_run_id="run-42")
    out, _, config = calls[1]
    assert out == tmp_path / "pvc" / "run-42" / "plain_grpo" / "model"
    assert (config.stop_after_steps, config.time_budget_s, config.ablation) == (7, 0.0, "plain_grpo")


def test_same_budget_needs_the_reference_steps():
    from rerec.errors import RerecError
    from rerec.train.distributed import same_budget

    assert json.loads(same_budget('{"steps": 30}', {"steps": 12})) == {
        "steps": 30, "stop_after_steps": 12, "time_budget_s": 0.0}
    with pytest.raises(RerecError, match="no step count"):
        same_budget("{}", {})


def test_start_and_finish_run_steps_open_and_close_one_parent_run(mlflow_env):
    """start-run on a cluster (no parent in the environment): one parent run tagged with the KFP run id and the
    image's git commit, the typed parameters and every stage config as params; finish-run closes it with the
    pipeline's state. A typo in the overrides fails start-run before any stage."""
    import mlflow
    from kfp.dsl import PipelineTaskFinalStatus

    from components.finish_run import finish_run
    from components.start_run import start_run
    from rerec.errors import ConfigError

    os.environ["REREC_GIT_COMMIT"] = "abc1234"
    try:
        out = start_run.python_func(pipeline="train", preset="smoke", rft_steps=5, kfp_run_id="kfp-run-7")
    finally:
        os.environ.pop("REREC_GIT_COMMIT")
    parent_id, *configs = out
    assert json.loads(configs[4])["steps"] == 5 and json.loads(configs[5])["ablation"] == "plain_grpo"
    run = mlflow.get_run(parent_id)
    assert run.info.status == "RUNNING" and run.data.tags["rerec.kfp_run_id"] == "kfp-run-7"
    assert run.data.tags["rerec.git_commit"] == "abc1234" and run.data.params["pipeline.rft_steps"] == "5"
    assert json.loads(run.data.params["config.rft"])["steps"] == 5

    def status(state):
        return PipelineTaskFinalStatus(state=state, pipeline_job_resource_name="", pipeline_task_name="",
                                       error_code=None, error_message="boom" if state == "FAILED" else None)

    finish_run.python_func(status=status("FAILED"), kfp_run_id="kfp-run-7")
    run = mlflow.get_run(parent_id)
    assert run.info.status == "FAILED" and run.data.tags["rerec.pipeline_error"] == "boom"
    finish_run.python_func(status=status("SUCCEEDED"), kfp_run_id="no-such-run")  # nothing to close: no error
    with pytest.raises(ConfigError, match="unknown option"):
        start_run.python_func(pipeline="train", preset="smoke", config_overrides='{"rft": {"stesp": 1}}',
                              kfp_run_id="kfp-run-8")


def test_run_record_names_every_stage_under_the_parent_run(mlflow_env, tmp_path):
    """run.json: the stages' wall seconds come from the parent run's nested MLflow runs, in start order."""
    import mlflow

    from rerec.pipeline.run import stage_seconds, stage_steps, write_run_record

    with mlflow.start_run(run_name="train-smoke") as parent:
        for name in ("prepare-data", "build-graphs"):
            with mlflow.start_run(run_name=name, nested=True):
                pass
        with mlflow.start_run(run_name="sft-warmup", nested=True):  # cut short by its time budget
            mlflow.log_metrics({"steps": 108, "stopped_by_time_budget": 1})
        with mlflow.start_run(run_name="rft", nested=True):
            mlflow.log_metrics({"steps": 4, "stopped_by_time_budget": 0})
        for split in ("val", "test"):
            with mlflow.start_run(run_name="evaluate", nested=True):
                mlflow.log_param("split", split)
    stages = stage_seconds(parent.info.run_id)
    assert list(stages) == ["prepare-data", "build-graphs", "sft-warmup", "rft", "evaluate (val)", "evaluate (test)"]
    assert all(s >= 0 for s in stages.values())
    steps = stage_steps(parent.info.run_id)
    assert steps == {"sft-warmup": {"steps": 108, "stopped_by_time_budget": True},
                     "rft": {"steps": 4, "stopped_by_time_budget": False}}
    result = {"preset": "smoke", "seconds": 12.5, "run_id": parent.info.run_id}
    record = json.loads(write_run_record(tmp_path, result, {"sft": {"steps": 3}}, stages, steps).read_text())
    assert record["stage_seconds"] == stages and record["configs"] == {"sft": {"steps": 3}}
    assert record["stage_steps"] == steps
    assert record["seconds"] == 12.5 and record["commit"] and record["machine"]["cores_visible"] >= 1
    assert "at_end" not in record
    # the provenance of the run's start is what run.json keeps; a checkout that moved meanwhile is said so
    start = {**record, "commit": "0" * 40, "started": "2026-01-01T00:00:00+00:00"}
    start = {k: start[k] for k in ("command", "commit", "uncommitted_changes", "machine", "started")}
    moved = json.loads(write_run_record(tmp_path, result, {}, stages, steps, origin=start).read_text())
    assert moved["commit"] == "0" * 40 and moved["started"] == "2026-01-01T00:00:00+00:00"
    assert moved["at_end"] == {"commit": record["commit"], "uncommitted_changes": record["uncommitted_changes"]}
