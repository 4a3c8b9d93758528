"""``rerec schedule``: create or update the recurring ``retrain`` run on Kubeflow Pipelines.

    rerec schedule --host https://kfp.example/pipeline --cron "0 0 3 * * *" --input-dir s3://bucket/new/

Uploads ``pipelines/retrain.yaml`` as a pipeline version named after its content hash (reused when it
is already there), then makes sure exactly one recurring run named ``--name`` exists with that version,
the cron and the parameters, at most one run at a time (``max_concurrency=1``) and no catch-up. KFP has
no in-place update for recurring runs, so a changed schedule is created first and the old one deleted
after, so that there is never a window without one. Unchanged: nothing is touched.

KFP cron has six fields (seconds first): ``0 0 3 * * *`` is every day at 03:00.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rerec.errors import ConfigError, RerecError

DEFAULT_PACKAGE = Path(__file__).resolve().parents[2] / "pipelines" / "retrain.yaml"


def _name_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"key": key, "operation": "EQUALS", "string_value": value}]})


def validate_cron(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 6:
        raise ConfigError(f"--cron '{cron}' has {len(fields)} fields; KFP cron has 6, seconds first. "
                          "Fix: e.g. '0 0 3 * * *' for every day at 03:00.")
    return cron


def _attr(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def ensure_pipeline_version(client: Any, package: Path, pipeline_name: str) -> tuple[str, str]:
    """(pipeline id, version id) of ``package``, uploading it when this content is new."""
    text = package.read_bytes()
    version_name = f"{pipeline_name}-{hashlib.sha256(text).hexdigest()[:12]}"
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=pipeline_name,
                                          description="rerec scheduled retraining")
        pipeline_id = _attr(pipeline, "pipeline_id")
    versions = client.list_pipeline_versions(pipeline_id, page_size=100,
                                             filter=_name_filter("display_name", version_name))
    for version in _attr(versions, "pipeline_versions") or []:
        if _attr(version, "display_name") == version_name:
            return pipeline_id, _attr(version, "pipeline_version_id")
    version = client.upload_pipeline_version(str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id)
    return pipeline_id, _attr(version, "pipeline_version_id")


def _same(run: Any, version_id: str, cron: str, params: dict) -> bool:
    trigger = _attr(run, "trigger")
    cron_schedule = _attr(trigger, "cron_schedule") if trigger is not None else None
    ref = _attr(run, "pipeline_version_reference")
    runtime = _attr(run, "runtime_config")
    current = _attr(runtime, "parameters") if runtime is not None else None
    return (_attr(cron_schedule, "cron") == cron and _attr(ref, "pipeline_version_id") == version_id
            and (current or {}) == params and str(_attr(run, "max_concurrency")) == "1")


def schedule(client: Any, *, name: str, cron: str, params: dict[str, Any], package: Path = DEFAULT_PACKAGE,
             experiment: str = "rerec", pipeline_name: str = "rerec-retrain",
             service_account: str | None = "rerec-pipeline-runner") -> dict:
    """Create or update the recurring run; returns {"action": created|updated|unchanged, ids...}."""
    validate_cron(cron)
    if not Path(package).is_file():
        raise RerecError(f"{package} does not exist. Fix: run 'make compile' to write the pipeline YAML.")
    try:
        exp = client.get_experiment(experiment_name=experiment)
    except Exception:  # noqa: BLE001 - KFP raises ApiException/ValueError for a missing experiment
        exp = client.create_experiment(experiment)
    experiment_id = _attr(exp, "experiment_id")
    pipeline_id, version_id = ensure_pipeline_version(client, Path(package), pipeline_name)
    existing = client.list_recurring_runs(experiment_id=experiment_id, page_size=100,
                                          filter=_name_filter("display_name", name))
    old = [r for r in (_attr(existing, "recurring_runs") or []) if _attr(r, "display_name") == name]
    if len(old) == 1 and _same(old[0], version_id, cron, params):
        return {"action": "unchanged", "recurring_run_id": _attr(old[0], "recurring_run_id"),
                "pipeline_version_id": version_id}
    created = client.create_recurring_run(
        experiment_id=experiment_id, job_name=name, description="rerec: retrain from the champion on new interactions",
        cron_expression=cron, max_concurrency=1, no_catchup=True, params=params, pipeline_id=pipeline_id,
        version_id=version_id, enabled=True, service_account=service_account,
    )
    for run in old:
        client.delete_recurring_run(_attr(run, "recurring_run_id"))
    return {"action": "updated" if old else "created", "recurring_run_id": _attr(created, "recurring_run_id"),
            "replaced": [_attr(r, "recurring_run_id") for r in old], "pipeline_version_id": version_id}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API endpoint (default: $KFP_HOST)")
    parser.add_argument("--namespace", default=os.environ.get("KFP_NAMESPACE"), help="Kubeflow namespace")
    parser.add_argument("--name", default="rerec-retrain-nightly", help="recurring run name (default: %(default)s)")
    parser.add_argument("--cron", default="0 0 3 * * *", help="6-field KFP cron (default: %(default)s)")
    parser.add_argument("--experiment", default="rerec", help="KFP experiment (default: %(default)s)")
    parser.add_argument("--package", type=Path, default=DEFAULT_PACKAGE, help="compiled retrain pipeline YAML")
    parser.add_argument("--input-dir", required=True, help="where the new interactions land (folder or s3:// URI)")
    parser.add_argument("--model-name", default="rerec-recommender", help="registered model to retrain")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra pipeline parameter (e.g. rft_config='{\"profile\": \"paper\"}'); repeatable")
    parser.add_argument("--service-account", default="rerec-pipeline-runner", help="ServiceAccount the runs use")


def cli_main(args: argparse.Namespace, client: Any = None) -> int:
    params: dict[str, Any] = {"input_dir": args.input_dir, "model_name": args.model_name}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param '{item}' is not KEY=VALUE. Fix: e.g. --param rft_config='{{}}'.")
        params[key] = value
    if client is None:
        if not args.host:
            raise ConfigError("No KFP endpoint. Fix: pass --host or set KFP_HOST.")
        import kfp

        client = kfp.Client(host=args.host, namespace=args.namespace)
    result = schedule(client, name=args.name, cron=args.cron, params=params, package=args.package,
                      experiment=args.experiment, service_account=args.service_account)
    print(json.dumps(result, indent=2))
    return 0
