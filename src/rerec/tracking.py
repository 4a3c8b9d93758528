"""MLflow tracking at the edges: one nested run per stage under the pipeline's parent run.

    with stage_run("build-graphs", config) as tracker:
        tracker.log_metrics({"n_edges": 99_057})
        tracker.log_figure(fig, "plots/degree.png")

Where the run goes:
- ``MLFLOW_TRACKING_URI`` (MLflow's own variable) picks the server or store; ``MLFLOW_EXPERIMENT_NAME``
  the experiment (default ``rerec``).
- ``REREC_PARENT_RUN_ID`` makes the stage run a child of the pipeline run (set by ``rerec run`` and the
  KFP components).
- ``REREC_TRACKING=off`` disables tracking (the tracker's methods then do nothing), for unit tests and
  quick CLI use.

Metric names are made MLflow-safe (``ndcg@10`` -> ``ndcg_at_10``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def safe_metric_name(name: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10``; other characters MLflow refuses become ``_``."""
    return _UNSAFE.sub("_", name.replace("@", "_at_"))


def tracking_enabled() -> bool:
    return os.environ.get("REREC_TRACKING", "on").lower() not in ("off", "0", "false", "no")


def flatten_params(params: Any, prefix: str = "") -> dict[str, str]:
    """A config dataclass or nested dict -> flat ``{"a.b": "value"}`` of strings (MLflow params)."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    flat: dict[str, str] = {}
    for key, value in (params or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            text = json.dumps(value, default=str) if isinstance(value, list | tuple) else str(value)
            flat[name] = text[:6000]
    return flat


def git_commit() -> str | None:
    commit = os.environ.get("REREC_GIT_COMMIT")
    if commit:
        return commit
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class StageTracker:
    """Logs to the active MLflow run, or does nothing when tracking is disabled."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def log_params(self, params: Any) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_params(flatten_params(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        clean = {safe_metric_name(k): float(v) for k, v in metrics.items() if v is not None}
        mlflow.log_metrics(clean, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled:
            import mlflow

            mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        path = Path(path)
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_text(text, artifact_file)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_dict(obj, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_figure(figure, artifact_file)

    def log_table(self, data: Any, artifact_file: str) -> None:
        """A pandas DataFrame or dict of columns as an MLflow table (shown in the UI)."""
        if self.enabled:
            import mlflow

            mlflow.log_table(data, artifact_file)


@contextlib.contextmanager
def stage_run(stage: str, config: Any = None, *, tags: Mapping[str, Any] | None = None) -> Iterator[StageTracker]:
    """Open the stage's (nested) MLflow run, log its config as params, and close it on exit.

    The run ends FAILED when the body raises, so a broken stage is visible in the UI.
    """
    if not tracking_enabled():
        yield StageTracker(None)
        return
    import mlflow

    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "rerec"))
    parent = os.environ.get("REREC_PARENT_RUN_ID")
    all_tags = {
        "rerec.stage": stage,
        "rerec.git_commit": git_commit(),
        "rerec.kfp_run_id": os.environ.get("KFP_RUN_ID"),
        **(tags or {}),
    }
    with mlflow.start_run(run_name=stage, nested=bool(parent), parent_run_id=parent or None) as run:
        tracker = StageTracker(run.info.run_id)
        tracker.set_tags(all_tags)
        if config is not None:
            tracker.log_params(config)
        yield tracker


def log_figure_file(tracker: StageTracker, figure: Any, out_dir: str | os.PathLike, name: str) -> Path:
    """Save a matplotlib figure under ``out_dir`` (kept with the stage output) and log it."""
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    tracker.log_artifact(path, artifact_path=str(Path(name).parent) if Path(name).parent != Path(".") else None)
    return path


def temp_artifact_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="rerec-artifacts-")
