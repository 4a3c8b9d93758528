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

Metric names are made MLflow-safe (``ndcg@10`` -> ``ndcg_at_10``). Calls to the tracking server go through
:func:`with_retries` (bounded, with backoff; which S3 failures of the artifact store are transient is
:func:`rerec.objectstore.s3_failure`). What a KFP component does around its stage (the pipeline's run context,
its config, its metrics) is :mod:`rerec.pipeline.component_glue`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from rerec.errors import RerecError

log = logging.getLogger(__name__)
T = TypeVar("T")

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

            from rerec.security import redact_secrets

            mlflow.log_params(redact_secrets(flatten_params(params)))

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

    notice = default_store_notice(stage)
    if notice:
        log.warning("%s", notice)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "rerec"))
    parent = os.environ.get("REREC_PARENT_RUN_ID")
    all_tags = {
        "rerec.stage": stage,
        "rerec.git_commit": git_commit(),
        "rerec.kfp_run_id": os.environ.get("KFP_RUN_ID"),
        "rerec.dataset_hash": os.environ.get("REREC_DATASET_HASH"),
        "rerec.parent_model_version": os.environ.get("REREC_PARENT_MODEL_VERSION"),
        **(tags or {}),
    }
    with mlflow.start_run(run_name=stage, nested=bool(parent), parent_run_id=parent or None) as run:
        tracker = StageTracker(run.info.run_id)
        tracker.set_tags(all_tags)
        if config is not None:
            tracker.log_params(config)
        yield tracker


def default_store_notice(stage: str) -> str | None:
    """What to tell a user whose stage records into MLflow's default store: with no tracking URI set
    (``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``), MLflow writes ``mlflow.db`` (and
    ``mlruns/``) into the working directory, which a stand-alone ``rerec prepare-data`` would otherwise
    do without a word. None when a URI is set."""
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if is_tracking_uri_set():
        return None
    import mlflow

    return (f"no MLFLOW_TRACKING_URI is set, so the {stage} run is recorded in MLflow's default store "
            f"{mlflow.get_tracking_uri()} (in the working directory {os.getcwd()}); set MLFLOW_TRACKING_URI to "
            "your server or store, or REREC_TRACKING=off to record nothing")


def log_figure_file(tracker: StageTracker, figure: Any, out_dir: str | os.PathLike, name: str) -> Path:
    """Save a matplotlib figure under ``out_dir`` (kept with the stage output) and log it."""
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    tracker.log_artifact(path, artifact_path=str(Path(name).parent) if Path(name).parent != Path(".") else None)
    return path


def temp_artifact_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="rerec-artifacts-")


# --- Retries: a down or slow tracking server gets a few bounded attempts, then a clear error. ---------

RETRY_ATTEMPTS = int(os.environ.get("REREC_MLFLOW_RETRIES", "4"))
RETRY_BASE_DELAY_S = float(os.environ.get("REREC_MLFLOW_RETRY_DELAY_S", "0.5"))


def bound_mlflow_http_retries() -> None:
    """MLflow's own HTTP client retries 7 times with a doubling backoff (minutes on a down server);
    cap it so that :func:`with_retries` is the one bounded retry loop. Explicit settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _is_transient(exc: BaseException) -> bool:
    """Connection problems and 5xx/429 answers of the tracking server are worth another try; a 4xx answer
    is not. (S3 failures of the artifact store are classified by :func:`rerec.objectstore.s3_failure`.)"""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, MlflowException):
        code = getattr(exc, "error_code", "")
        if code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
            return True
        if code == "INTERNAL_ERROR" and isinstance(exc, RestException):
            return True  # the server answered 5xx; a local MlflowException defaults to INTERNAL_ERROR too
        text = str(exc)
        return any(s in text for s in ("Max retries exceeded", "Connection refused", "timed out",
                                       "ConnectionError", "status code 5", "too many 5"))
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def with_retries(action: Callable[[], T], what: str, *, attempts: int | None = None,
                 base_delay_s: float | None = None) -> T:
    """Run ``action``; retry transient MLflow failures with exponential backoff and jitter, then raise
    a :class:`RerecError` that says which server could not be reached and what to check."""
    attempts = RETRY_ATTEMPTS if attempts is None else attempts
    delay = RETRY_BASE_DELAY_S if base_delay_s is None else base_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - classified below
            from rerec.objectstore import s3_failure
            from rerec.security import redact_value

            s3 = s3_failure(exc)
            transient = s3[0] if s3 is not None else _is_transient(exc)
            if s3 is not None and (not transient or attempt == attempts):
                raise _artifact_store_error(what, s3[1], attempt if transient else None) from exc
            if not transient:
                raise
            if attempt == attempts:
                import mlflow

                raise RerecError(
                    f"Could not {what}: the MLflow tracking server at {redact_value(mlflow.get_tracking_uri())} "
                    f"did not answer after {attempts} attempts "
                    f"({type(exc).__name__}: {redact_value(str(exc)[:300])}). "
                    "Fix: check that the server is up and MLFLOW_TRACKING_URI points at it, then rerun."
                ) from exc
            sleep = delay * 2 ** (attempt - 1) * (1 + random.random() / 4)
            log.warning("MLflow: could not %s (attempt %d/%d), retrying in %.1f s: %s",
                        what, attempt, attempts, sleep, redact_value(str(exc)))
            time.sleep(sleep)
    raise AssertionError("unreachable")


def _artifact_store_error(what: str, description: str, attempts: int | None) -> RerecError:
    from rerec.security import redact_value

    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or "AWS S3"
    how = f"failed {attempts} times" if attempts else "refused the request"
    return RerecError(
        f"Could not {what}: the artifact store ({redact_value(endpoint)}) {how} "
        f"({redact_value(description[:300])}). "
        "Fix: check the S3 endpoint, bucket and credentials (MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY; in a cluster the rerec-s3 secret) and that S3 is up, then rerun."
    )
