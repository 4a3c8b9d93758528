"""The MLflow parent run of one pipeline run: opened by the pipeline's first step, closed by its exit step.

Every stage of a pipeline run nests its own run under this parent (``REREC_PARENT_RUN_ID``, see
:mod:`rerec.tracking`). On a cluster the ``start-run`` step opens it, tagged with the KFP run id and the
git commit baked into the image (``REREC_GIT_COMMIT``), logs the typed pipeline parameters and every
stage's config as params, and the ``finish-run`` exit step marks it FINISHED or FAILED with the pipeline.
When the environment already names a parent run (``rerec run`` on a laptop opens one itself), the
steps use that run and leave closing it to its owner.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OPENED_BY_TAG = "rerec.parent_opened_by"
OPENER = "start-run"
KFP_RUN_TAG = "rerec.kfp_run_id"


def _client():
    from mlflow import MlflowClient

    from rerec.tracking import bound_mlflow_http_retries

    bound_mlflow_http_retries()
    return MlflowClient()


def open_pipeline_run(pipeline: str, kfp_run_id: str, params: dict[str, Any], configs: dict[str, dict]) -> str:
    """The parent run's id: the environment's ``REREC_PARENT_RUN_ID`` if set, else a new run. Tags it
    with the pipeline, KFP run id and git commit, and logs ``params`` and the stage configs."""
    import mlflow

    from rerec.security import redact_secrets
    from rerec.tracking import flatten_params, git_commit, with_retries

    client = _client()
    tags = {"rerec.pipeline": pipeline, KFP_RUN_TAG: kfp_run_id, "rerec.git_commit": git_commit() or "unknown"}
    run_id = os.environ.get("REREC_PARENT_RUN_ID", "")
    if not run_id:
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "rerec")
        exp = with_retries(lambda: mlflow.set_experiment(experiment), f"open the MLflow experiment '{experiment}'")
        run = with_retries(lambda: client.create_run(exp.experiment_id, run_name=f"{pipeline}-{kfp_run_id[:8]}",
                                                     tags={**tags, OPENED_BY_TAG: OPENER}),
                           "start the pipeline's parent run")
        run_id = run.info.run_id
    else:
        for key, value in tags.items():
            with_retries(lambda k=key, v=value: client.set_tag(run_id, k, v), "tag the pipeline's parent run")
    flat = {f"pipeline.{k}": v for k, v in flatten_params(params).items()}
    flat.update({f"config.{stage}": json.dumps(cfg, sort_keys=True)[:6000] for stage, cfg in configs.items()})
    existing = with_retries(lambda: client.get_run(run_id), "read the pipeline's parent run").data.params
    # a run keeps its params: a retried start-run, or rerec run's own params, must not be logged twice
    fresh = {k: v for k, v in redact_secrets(flat).items() if k not in existing}
    if fresh:
        from mlflow.entities import Param

        with_retries(lambda: client.log_batch(run_id, params=[Param(k, str(v)) for k, v in fresh.items()]),
                     "log the pipeline parameters")
    return run_id


def finish_pipeline_run(kfp_run_id: str, state: str, error: str = "") -> str | None:
    """Close the parent run that ``start-run`` opened for ``kfp_run_id``: FINISHED when the pipeline
    ``state`` is SUCCEEDED, else FAILED (with the error as a tag). Returns its id, or None when there is
    none to close (start-run never ran, or the parent belongs to ``rerec run``)."""
    from rerec.tracking import with_retries

    client = _client()
    query = f"tags.`{KFP_RUN_TAG}` = '{kfp_run_id}' and tags.`{OPENED_BY_TAG}` = '{OPENER}'"
    runs = with_retries(lambda: client.search_runs(_experiment_ids(client), filter_string=query, max_results=5),
                        "find the pipeline's parent run")
    if not runs:
        return None
    run = runs[0]
    status = "FINISHED" if state.upper() == "SUCCEEDED" else "FAILED"
    with_retries(lambda: client.set_tag(run.info.run_id, "rerec.pipeline_state", state), "tag the parent run")
    if error:
        with_retries(lambda: client.set_tag(run.info.run_id, "rerec.pipeline_error", error[:4000]), "tag the parent run")
    with_retries(lambda: client.set_terminated(run.info.run_id, status=status), "close the pipeline's parent run")
    return run.info.run_id


def _experiment_ids(client) -> list[str]:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "rerec")
    exp = client.get_experiment_by_name(name)
    return [exp.experiment_id] if exp is not None else []


def log_dataset_input(run_id: str, data_dir: str | os.PathLike, source: str, name: str = "rerec-dataset") -> dict:
    """Log the prepared dataset as an MLflow dataset input of ``run_id`` (context ``training``): its
    source (the ``s3://`` URI, a path, or the embedded MovieLens-100k), and as digest the content hash of
    the prepared folder, so runs on the same data share one dataset entry."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    from rerec.pipeline.component_glue import dataset_hash
    from rerec.tracking import with_retries

    digest = dataset_hash(data_dir) or "unknown"
    dataset = MetaDataset(resolve_dataset_source(source), name=name, digest=digest)
    entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])
    with_retries(lambda: _client().log_inputs(run_id, datasets=[entity]), "log the dataset input")
    return {"name": name, "digest": digest, "source": source}


def embedded_dataset_source() -> str:
    """Where the embedded MovieLens-100k lives in this environment (a local folder)."""
    from rerec.data.load import movielens_100k_dir

    return str(Path(movielens_100k_dir()).resolve())
