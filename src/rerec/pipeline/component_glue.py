"""The KFP components' side of a stage (``components/``): the run context a step gets from the pipeline, its
config as the stage's dataclass, and its summary as KFP/MLflow metrics.

    use_pipeline_run("", mlflow_parent_run_id, kfp_run_id, data_dir=data.path)
    summary = stage(Path(data.path), Path(graphs.path), stage_config(stage, config_json))
    for name, value in component_metrics(summary).items():
        metrics.log_metric(name, value)

:func:`use_pipeline_run` sets the environment :mod:`rerec.tracking` reads (``REREC_PARENT_RUN_ID``, the lineage
tags), so the stage's own ``stage_run`` nests under the pipeline's MLflow run.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rerec.tracking import bound_mlflow_http_retries, safe_metric_name


def dataset_hash(data_dir: str | os.PathLike) -> str | None:
    """Content hash of a prepared data folder: its manifest when it has one, else its parquet files."""
    from rerec.io import file_sha256

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return None
    manifest = data_dir / "manifest.json"
    files = [manifest] if manifest.exists() else sorted(data_dir.glob("*.parquet"))
    if not files:
        return None
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:16]


def use_pipeline_run(tracking_uri: str, parent_run_id: str, kfp_run_id: str, *,
                     data_dir: str | os.PathLike | None = None, parent_model_version: str = "") -> None:
    """Make this process's stage run a child of the pipeline's MLflow run, with lineage tags.

    Empty values keep what the environment already says (on a cluster MLFLOW_TRACKING_URI comes from a
    Kubernetes secret)."""
    values = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "REREC_PARENT_RUN_ID": parent_run_id,
        "KFP_RUN_ID": kfp_run_id,
        "REREC_PARENT_MODEL_VERSION": parent_model_version,
        "REREC_DATASET_HASH": (dataset_hash(data_dir) or "") if data_dir else "",
    }
    for key, value in values.items():
        if value:
            os.environ[key] = value
    bound_mlflow_http_retries()


def stage_config(stage: Callable[..., Any], config_json: str, cls: type | None = None) -> Any:
    """Parse a stage's JSON config into the dataclass its ``config`` parameter is annotated with."""
    from rerec.config import dataclass_from_dict, json_object

    if cls is None:
        cls = typing.get_type_hints(stage)["config"]
        options = [a for a in typing.get_args(cls) if a is not type(None)]
        if options:  # ``Config | None`` -> Config
            cls = options[0]
    values = json_object(config_json, f"{stage.__name__}: the config", "a JSON object",
                         'pass a JSON object such as {"seed": 0}.')
    return dataclass_from_dict(cls, values, where=f"{stage.__name__} config")


def component_metrics(summary: Any, prefix: str = "") -> dict[str, float]:
    """The numbers in a stage's summary dict (nested keys joined by ``_``), MLflow/KFP-safe names."""
    out: dict[str, float] = {}
    if not isinstance(summary, Mapping):
        return out
    for key, value in summary.items():
        name = safe_metric_name(f"{prefix}{key}")
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(component_metrics(value, prefix=f"{name}_"))
    return out
