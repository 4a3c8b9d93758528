"""``rerec run``: the whole train pipeline through the KFP local runner, on this machine.

    rerec run --preset smoke --out runs/smoke

Runs ``pipelines.train`` with ``kfp.local.SubprocessRunner`` (each component in a subprocess of this
Python environment, the same code the cluster runs in the project image), under one MLflow parent run
with a nested run per stage. MLflow goes to ``MLFLOW_TRACKING_URI`` when set, else to a sqlite database
in the output folder. Writes:

    OUT/run.json       command, commit, machine, the stage configs it ran with, each stage's seconds
    OUT/report.json    the evaluation table per model and query type, parse rates, retention
    OUT/report/        report.md, report.html and plots/
    OUT/kfp/           the pipeline root: every stage's artifacts
    OUT/mlflow.db, OUT/mlartifacts/   the local MLflow store (when no tracking server is set)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from rerec.errors import RerecError
from rerec.pipeline.params import ARM_STAGE, parse_overrides
from rerec.pipeline.presets import PRESETS, STAGES, preset_configs
from rerec.tracking import bound_mlflow_http_retries, git_commit, with_retries

EXPERIMENT = "rerec"


def _import_pipelines() -> None:
    """``pipelines/`` lives next to ``src/`` in the repository (it is not part of the installed package)."""
    import importlib.util
    import sys

    if importlib.util.find_spec("pipelines") is None:
        root = Path(__file__).resolve().parents[3]
        if not (root / "pipelines" / "train.py").is_file():
            raise RerecError("rerec run needs the repository's pipelines/ folder. Fix: run it from a checkout "
                             "of the repository (make run), not from an installed wheel.")
        sys.path.insert(0, str(root))


def _local_tracking(out: Path) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    return f"sqlite:///{out / 'mlflow.db'}", (out / "mlartifacts").as_uri()


def test_report_dir(pipeline_root: Path, since: float = 0.0) -> Path:
    """The test-split evaluation of the newest local run under ``pipeline_root`` (one evaluate step of a
    run reports on test; the other, for the gate, on validation)."""
    found = []
    for path in Path(pipeline_root).glob("*/*/report/report.json"):
        if path.stat().st_mtime < since:
            continue
        try:
            split = json.loads(path.read_text(encoding="utf-8")).get("split")
        except (OSError, ValueError):
            continue
        if split == "test":
            found.append((path.stat().st_mtime, path.parent))
    if not found:
        raise RerecError(f"The evaluate stage wrote no test report under {pipeline_root}. Fix: rerun; if it "
                         "persists, run 'rerec evaluate' on the stage outputs to see why.")
    return max(found)[1]


def run_pipeline(preset: str, out: Path, *, input_dir: Path | None = None, plain_grpo_arm: bool = False,
                 config_overrides: str = "{}") -> dict:
    """Run the train pipeline locally; returns {"report", "run_id", "tracking_uri", "seconds", ...}.

    ``config_overrides`` is the pipeline's parameter of that name: JSON ``{"<stage>": {field: value}}``,
    e.g. ``{"prepare": {"n_implicit": 0}}``; refused before anything runs when malformed."""
    import kfp.local
    import mlflow

    _import_pipelines()
    from pipelines.options import ClusterOptions
    from pipelines.train import make_train_pipeline

    preset_configs(preset)  # an unknown preset is refused before anything is written
    parse_overrides(config_overrides, (*STAGES, ARM_STAGE))  # and so are malformed overrides
    if input_dir is not None and not Path(input_dir).is_dir():  # before OUT exists: a refusal leaves nothing
        raise RerecError(f"--input {input_dir} is not a folder. Fix: pass a dataset folder (parquet tables or "
                         "RecBole atomic files), or leave --input out for the embedded MovieLens-100k.")
    from rerec.experiments.provenance import provenance

    origin = provenance()  # the code the run starts from: run.json records it, not what HEAD is at the end
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    uri, artifact_location = _local_tracking(out)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    os.environ.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment, "REREC_TRACKING": "on"})
    bound_mlflow_http_retries()
    mlflow.set_tracking_uri(uri)

    def open_experiment():
        if artifact_location and mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=artifact_location)
        return mlflow.set_experiment(experiment)

    with_retries(open_experiment, f"open the MLflow experiment '{experiment}'")
    parent = with_retries(lambda: mlflow.start_run(run_name=f"train-{preset}"), "start the pipeline run")
    os.environ["REREC_PARENT_RUN_ID"] = parent.info.run_id
    started = time.monotonic()
    status = "FAILED"
    try:
        mlflow.set_tags({"rerec.pipeline": "train", "rerec.preset": preset, "rerec.git_commit": git_commit(),
                         "rerec.runner": "kfp.local.SubprocessRunner"})
        kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(out / "kfp"))
        pipeline = make_train_pipeline(ClusterOptions.local())
        started_at = time.time()
        with warnings.catch_warnings():
            # The components name the project images; locally they run in this environment instead.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            try:
                # start-run finds REREC_PARENT_RUN_ID in its environment and nests the stages under this run
                pipeline(preset=preset, data_uri=str(Path(input_dir).resolve()) if input_dir else "",
                         plain_grpo_arm=plain_grpo_arm, config_overrides=config_overrides)
            except RuntimeError as exc:
                raise RerecError(f"The train pipeline failed: {exc}. Fix: read the failing stage's log above "
                                 f"(its artifacts are under {out / 'kfp'}), fix the cause and rerun.") from exc
        report_dir = test_report_dir(out / "kfp", since=started_at)
        shutil.copytree(report_dir, out / "report", dirs_exist_ok=True)
        shutil.copyfile(report_dir / "report.json", out / "report.json")
        mlflow.log_artifact(str(out / "report.json"))
        status = "FINISHED"
    finally:
        seconds = time.monotonic() - started
        try:
            mlflow.log_metric("pipeline_seconds", seconds)
        finally:
            mlflow.end_run(status=status)
            os.environ.pop("REREC_PARENT_RUN_ID", None)
    result = {"report": str(out / "report.json"), "report_html": str(out / "report" / "report.html"),
              "run_id": parent.info.run_id, "tracking_uri": uri, "seconds": round(seconds, 1), "preset": preset}
    result["stage_steps"] = stage_steps(parent.info.run_id)
    write_run_record(out, result, run_configs(preset, plain_grpo_arm, config_overrides),
                     stage_seconds(parent.info.run_id), result["stage_steps"], origin=origin)
    return result


def run_configs(preset: str, plain_grpo_arm: bool, config_overrides: str) -> dict[str, dict]:
    """The stage configs the run used: the preset's, with ``config_overrides`` applied (what run.json records;
    the preset alone would misstate a run given, say, another seed). The plain-GRPO arm's only when it ran."""
    from rerec.pipeline.params import ARM_STAGE, TrainParams, stage_configs

    configs = stage_configs(TrainParams(preset=preset, plain_grpo_arm=plain_grpo_arm,
                                        config_overrides=config_overrides))
    if not plain_grpo_arm:
        configs.pop(ARM_STAGE)
    return configs


def _stage_runs(parent_run_id: str) -> list[tuple[str, Any]]:
    """``(name, run)`` of each finished stage run under the pipeline's parent run, in start order; the name
    is the run name, with the split for stages that have one and a ' for each repeat."""
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs(
        [MlflowClient().get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=100)
    named: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for r in sorted(runs, key=lambda r: r.info.start_time):
        if not r.info.end_time:
            continue
        split = r.data.params.get("split")  # evaluate runs twice: the gate on val, the report on test
        name = f"{r.info.run_name} ({split})" if split else r.info.run_name
        while name in seen:
            name += "'"
        seen.add(name)
        named.append((name, r))
    return named


def stage_seconds(parent_run_id: str) -> dict[str, float]:
    """Wall seconds of each stage's MLflow run under the pipeline's parent run, by run name (with the split
    for stages that have one), in start order."""
    return {name: round((r.info.end_time - r.info.start_time) / 1000, 1) for name, r in _stage_runs(parent_run_id)}


def stage_steps(parent_run_id: str) -> dict[str, dict[str, int | bool]]:
    """The training stages' optimiser steps (the ``steps`` metric SFT and RFT log) and whether their time budget
    ended them early (``stopped_by_time_budget``): a wall-clock cap trains fewer steps on a slower machine,
    and a run's record should say how many it got."""
    out: dict[str, dict[str, int | bool]] = {}
    for name, r in _stage_runs(parent_run_id):
        if "steps" in r.data.metrics:
            out[name] = {"steps": int(r.data.metrics["steps"]),
                         "stopped_by_time_budget": bool(r.data.metrics.get("stopped_by_time_budget", 0))}
    return out


def write_run_record(out: Path, result: dict, configs: dict, stages: dict[str, float],
                     steps: dict[str, dict] | None = None, origin: dict | None = None) -> Path:
    """``OUT/run.json``: where the run came from (command, commit, machine: ``origin``, the
    :func:`rerec.experiments.provenance.provenance` taken when the run started; now when not given), the
    stage configs it ran with (:func:`run_configs`), the stages' wall seconds and the whole run's, and the
    training stages' steps (:func:`stage_steps`). When the checkout's commit or its uncommitted code changed while the run went on
    (a later stage may have imported the new code), ``at_end`` records both as they were at the end."""
    from rerec.experiments.provenance import provenance

    now = provenance()
    origin = origin or now
    record = {**origin, "preset": result["preset"], "seconds": result["seconds"], "stage_seconds": stages,
              "stage_steps": steps or {}, "configs": configs, "mlflow_run_id": result["run_id"],
              "report": "report.json"}
    if (now["commit"], now["uncommitted_changes"]) != (origin["commit"], origin["uncommitted_changes"]):
        record["at_end"] = {"commit": now["commit"], "uncommitted_changes": now["uncommitted_changes"]}
    (out / "run.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return out / "run.json"


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default", choices=list(PRESETS),
                        help="run preset: every stage's model and budgets (rerec.pipeline.presets; default: %(default)s; "
                             "smoke: a few minutes, for tests)")
    parser.add_argument("--profile", dest="deprecated_profile", default=None, choices=list(PRESETS),
                        help="deprecated spelling of --preset")
    parser.add_argument("--out", type=Path, default=Path("runs/latest"), help="output folder (default: %(default)s)")
    parser.add_argument("--input", type=Path, default=None,
                        help="dataset folder (default: the embedded MovieLens-100k)")
    parser.add_argument("--plain-grpo-arm", action="store_true",
                        help="also train a plain-GRPO arm beside ReRec and evaluate both")
    parser.add_argument("--config-overrides", default="{}", metavar="JSON",
                        help='per-stage config fields, as the pipeline\'s config_overrides parameter: e.g. '
                             '\'{"prepare": {"n_implicit": 0}, "rft": {"beta": 0.04}}\'')


def cli_main(args: argparse.Namespace) -> int:
    if args.deprecated_profile is not None:
        print("rerec run: --profile is deprecated and will be removed; use --preset (same values).", file=sys.stderr)
        args.preset = args.deprecated_profile
    result = run_pipeline(args.preset, args.out, input_dir=args.input, plain_grpo_arm=args.plain_grpo_arm,
                          config_overrides=args.config_overrides)
    uri = result["tracking_uri"]
    print(f"\nrerec run ({result['preset']}) finished in {result['seconds']:.0f} s.")
    print(f"Report: {result['report']}  (page: {result['report_html']})")
    for stage, done in result.get("stage_steps", {}).items():
        if done["stopped_by_time_budget"]:
            print(f"Note: {stage} stopped at its time budget after {done['steps']} steps (the machine ran slower "
                  f"than the preset assumes); run.json records it. To train every planned step, pass "
                  '--config-overrides \'{"sft": {"time_budget_s": 0}, "rft": {"time_budget_s": 0}}\'.')
    if uri.startswith("sqlite:"):
        print(f"MLflow: mlflow ui --backend-store-uri {uri}   then open http://127.0.0.1:5000 "
              f"(run {result['run_id']})")
    else:
        print(f"MLflow: {uri} (run {result['run_id']})")
    return 0
