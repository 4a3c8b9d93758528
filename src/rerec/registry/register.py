"""Register a trained model in the MLflow model registry and run the promotion gate.

``register(model_dir, report, config, data_dir=...)`` logs the model (the pyfunc recommender of
docs/serving.md: the Hugging Face folder, the catalog of the data folder, the prompt settings it was
evaluated with, explicit pip requirements from the project's pins), checks that every file of the folder
reached the artifact store (a version is the only mark of a complete model, so none points at a partial
upload), creates a model version, tags it with its evaluation numbers and lineage, and points the alias
``challenger`` at it. The gate then moves ``champion`` to it only if

- the evaluation report (on validation queries, never test) holds the challenger *and* the current
  champion, ranked on the same queries in the same run, and the paired bootstrap interval of
  ``challenger - champion`` on ``config.query_metric`` (per query; :func:`rerec.eval.metrics.paired_by_type`,
  the statistic of the evaluation report's paired differences: overall stratified by query type) lies above ``config.margin``: by default the challenger must be better with 95% confidence;
- it keeps at least ``config.min_general_retention`` of the zero-shot base model's general ability (the
  evaluation report's ``base`` row, :func:`rerec.eval.evaluate.retention_against_base`). With
  ``retention_test="interval"`` (the default) a ratio below it refuses only when the per-question records
  show it with confidence: the paired interval of ``challenger - min_general_retention x base`` over the
  same questions (:func:`retention_interval`) lies below 0. A few dozen questions on which a 135M model
  scores near chance would otherwise decide by luck; the reason then says the shortfall was within noise.

A champion's old score, recorded months ago on other data, is never the yardstick. With no champion yet,
the first model is promoted when its metric is above ``config.min_metric``. A report that does not
compare with the current champion (it was evaluated against another version, or without one) promotes
nothing; the reason is stored on the version (tag ``rerec.gate``), the comparison per query type in the
register run (``gate_decision.json``, beside the evaluation report). Two runs finishing at once: the
alias moves by compare-and-set, and a challenger never displaces a champion it was not compared with.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rerec.config import add_dataclass_arguments, dataclass_from_args
from rerec.errors import ConfigError, RerecError
from rerec.eval.metrics import PAIRED_N_BOOT, paired_by_type, paired_difference
from rerec.models.folder import check_model_folder
from rerec.tracking import bound_mlflow_http_retries, git_commit, safe_metric_name, with_retries

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_TAG = "rerec.metric."
PREVIOUS_TAG = "rerec.previous_champion"  # on a promoted version: the champion it replaced (for a roll-back)
GATE_FILE = "gate_decision.json"
REPORT_ARTIFACTS = "evaluation"
SERVING_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "jinja2", "tqdm", "pandas", "numpy",
                    "mlflow")


@dataclass
class RegisterConfig:
    model_name: str = field(default="rerec-recommender", metadata={"help": "Registered model name."})
    challenger: str = field(default="rft", metadata={"help": "The registered model's name in the report."})
    champion: str = field(default="champion", metadata={
        "help": "The current champion's name in the report (evaluated beside the challenger on the same queries)."})
    query_metric: str = field(default="acc@1", metadata={
        "help": "Per-query metric the gate compares pairwise (a column of the report's per_query.parquet)."})
    higher_is_better: bool = field(default=True, metadata={"help": "Whether a larger metric is better."})
    margin: float = field(default=0.0, metadata={
        "help": "The paired interval of challenger - champion must lie above this (0: better with confidence "
                "1 - alpha); negative values let a challenger that is not worse by more than |margin| through."})
    alpha: float = field(default=0.05, metadata={"help": "1 - confidence of the paired bootstrap interval."})
    n_boot: int = field(default=PAIRED_N_BOOT, metadata={
        "help": "Bootstrap resamples of the paired interval (the evaluation report's default too)."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    metric: str = field(default="metrics.rft/all/acc_at_1", metadata={
        "help": "The challenger's summary metric, recorded on the version and used for a first model: a dotted path "
                "into report.json ('metrics.<model>/<query type>/<metric>'), or a unique key ending."})
    min_metric: float = field(default=0.0, metadata={
        "help": "With no champion yet, promote only a model whose metric is above this (higher_is_better)."})
    retention_metric: str = field(default="metrics.rft/retention/mmlu_ratio", metadata={
        "help": "General-ability retention in report.json: the challenger's score over the zero-shot base "
                "model's (the evaluation report's 'base' row) on the same questions (1.0 = kept all)."})
    required_split: str = field(default="val", metadata={
        "help": "The split the report must be on: the gate selects models, so never on test."})
    min_general_retention: float = field(default=0.95, metadata={
        "help": "Promote only if at least this share of general ability is kept."})
    retention_test: str = field(default="interval", metadata={
        "help": "interval: refuse only when the report's per-question records put the retention below "
                "min_general_retention with confidence 1 - alpha (paired interval); point: refuse whenever "
                "the ratio itself is below it. Reports without per-question records use point.",
        "choices": ["interval", "point"]})
    promote: bool = field(default=True, metadata={"help": "Run the promotion gate (false: register only)."})
    experiment: str = field(default="", metadata={"help": "MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME or rerec)."})


# --- Reading the evaluation report ---------------------------------------------------------------


def _flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


def report_value(report: dict, name: str) -> float | None:
    """``name`` as a dotted path, else the one flattened key that ends with it; None when absent."""
    flat = _flatten(report)
    if name in flat:
        value = flat[name]
    else:
        hits = [k for k in flat if k.endswith("." + name) or safe_metric_name(k.replace(".", "_")) == name]
        if len(hits) != 1:
            return None
        value = flat[hits[0]]
    return value if math.isfinite(value) else None


def read_report(report_path: Path) -> dict:
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise RerecError(f"{report_path}: the evaluation report is not valid JSON ({exc}). "
                         "Fix: rerun the evaluate stage.") from exc
    return report if isinstance(report, dict) else {}


# --- The gate: pure, so that it can be checked by hand ------------------------------------------


@dataclass
class GateDecision:
    promote: bool
    reason: str


def paired_comparison(per_query, challenger: str, champion: str, metric: str, *, n_boot: int = PAIRED_N_BOOT,
                      alpha: float = 0.05, seed: int = 0) -> dict | None:
    """``challenger - champion`` on ``metric`` over the queries both models answered, overall (``all``,
    stratified by query type) and per query ``type``: ``{"diff", "low", "high", "separated", "n",
    "model_score", "reference_score"}`` each, from :func:`rerec.eval.metrics.paired_by_type`, the statistic
    of the evaluation report's paired differences (same defaults, so the same interval). ``per_query`` is the
    report's table of (model, query_id, type, metric...) rows. None when the two share no query."""
    if per_query is None or metric not in getattr(per_query, "columns", ()):
        return None
    cells = paired_by_type(per_query, challenger, champion, metric, n_boot=n_boot, alpha=alpha, seed=seed)
    overall = cells.pop("all")
    if not overall["n"]:
        return None
    return {"metric": metric, "challenger": challenger, "champion": champion, "alpha": alpha,
            "all": overall, "by_type": cells}


def _interval(comparison: dict, higher_is_better: bool) -> tuple[float, float, float]:
    """(improvement, low, high) of the overall paired difference, signed so that larger is better."""
    d = comparison["all"]
    return (d["diff"], d["low"], d["high"]) if higher_is_better else (-d["diff"], -d["high"], -d["low"])


#: the report's per-question records behind each retention ratio (rerec.eval.evaluate.retention_against_base)
RETENTION_RECORDS = {"mmlu_ratio": "mmlu_correct", "ifeval_ratio": "ifeval_followed"}


def retention_records(report: dict, challenger: str, retention_metric: str) -> tuple[list, list] | None:
    """(the challenger's per-question scores, the base's) behind ``retention_metric``
    ("metrics.rft/retention/mmlu_ratio") in ``report["retention"]``; None when the report has none."""
    key = RETENTION_RECORDS.get(retention_metric.replace(".", "/").rsplit("/", 1)[-1])
    retention = report.get("retention") or {}
    models = retention.get("models") or {}
    mine = (models.get(challenger) or {}).get(key) if key else None
    base = (models.get(retention.get("base_model")) or {}).get(key) if key else None
    if not mine or not base or len(mine) != len(base):
        return None
    return [float(x) for x in mine], [float(x) for x in base]


def retention_interval(mine: list[float], base: list[float], min_retention: float, *, n_boot: int = PAIRED_N_BOOT,
                       alpha: float = 0.05, seed: int = 0) -> dict:
    """``{"diff", "low", "high", "separated", "n"}``: the paired bootstrap interval of ``mine - min_retention x base``
    over the same questions. Its mean is below 0 exactly when ``mean(mine) / mean(base) < min_retention``, so an
    interval wholly below 0 says the challenger kept less than ``min_retention`` of the base's score with
    confidence ``1 - alpha``."""
    scaled = [min_retention * b for b in base]
    return {**paired_difference(mine, scaled, n_boot=n_boot, alpha=alpha, seed=seed), "n": len(mine)}


def gate(challenger: dict, champion_version: str | None, comparison: dict | None, compared_version: str | None,
         config: RegisterConfig) -> GateDecision:
    """Decide from the challenger's report.

    ``challenger``: {"metric", "retention", "split"} (None = missing) and optionally "retention_interval"
    (:func:`retention_interval`); ``champion_version``: the registry's current champion (None: there is none
    yet); ``comparison``: :func:`paired_comparison` on this report (None: the report holds no champion rows);
    ``compared_version``: the champion version the report evaluated.
    """
    retention, interval = challenger.get("retention"), challenger.get("retention_interval")
    note = ""
    if (retention is not None and retention < config.min_general_retention and interval is not None
            and config.retention_test == "interval"):
        bounds = f"paired interval of challenger - {config.min_general_retention:g} x base [{interval['low']:+.4f}, " \
                 f"{interval['high']:+.4f}] over {interval['n']} questions"
        if interval["high"] < 0:
            return GateDecision(False, f"not promoted: general retention {retention:.4f} < "
                                       f"{config.min_general_retention:.4f} with confidence ({bounds})")
        note = (f"; general retention {retention:.4f} is below {config.min_general_retention:.4f} but within "
                f"noise ({bounds})")
        challenger = {**challenger, "retention": config.min_general_retention}
    decision = _gate(challenger, champion_version, comparison, compared_version, config)
    return GateDecision(decision.promote, decision.reason + note) if note else decision


def _gate(challenger: dict, champion_version: str | None, comparison: dict | None, compared_version: str | None,
          config: RegisterConfig) -> GateDecision:
    metric, retention = challenger.get("metric"), challenger.get("retention")
    split = challenger.get("split")
    if config.required_split and split is not None and split != config.required_split:
        return GateDecision(False, f"not promoted: the report is on split '{split}', the gate decides on "
                                   f"'{config.required_split}'")
    if metric is None:
        return GateDecision(False, f"not promoted: the report has no finite '{config.metric}'")
    if retention is None:
        return GateDecision(False, f"not promoted: the report has no finite '{config.retention_metric}'")
    if retention < config.min_general_retention:
        return GateDecision(False, f"not promoted: general retention {retention:.4f} < "
                                   f"{config.min_general_retention:.4f}")
    if champion_version is None:
        if config.higher_is_better and metric <= config.min_metric:
            return GateDecision(False, f"not promoted: no champion yet and {config.metric} {metric:.4f} is not "
                                       f"above min_metric {config.min_metric}")
        return GateDecision(True, f"promoted: no champion yet ({config.metric} = {metric:.4f})")
    if comparison is None:
        return GateDecision(False, f"not promoted: the report does not evaluate the champion (version "
                                   f"{champion_version}) on the same queries, so there is no paired comparison; "
                                   "evaluate the challenger beside the champion")
    if str(compared_version or "") != str(champion_version):
        return GateDecision(False, f"not promoted: the report compares with champion version "
                                   f"{compared_version or '?'}, but the champion is now version {champion_version}")
    diff, low, high = _interval(comparison, config.higher_is_better)
    n = comparison["all"]["n"]
    what = (f"{comparison['metric']} {'+' if diff >= 0 else ''}{diff:.4f} vs champion v{champion_version}, "
            f"{100 * (1 - comparison['alpha']):.0f}% paired interval [{low:+.4f}, {high:+.4f}] over {n} queries")
    if low > config.margin:
        return GateDecision(True, f"promoted: {what} lies above the margin {config.margin:+.4f}")
    return GateDecision(False, f"not promoted: {what} does not clear the margin {config.margin:+.4f}")


# --- MLflow ---------------------------------------------------------------------------------------


def pip_requirements() -> list[str]:
    """What the served model imports (torch, transformers and the chat template's jinja2, the rerec code
    it carries), pinned: the project's own pin (pyproject) where it has one, else the installed version
    (which the lock file installed). Never unpinned."""
    pins = {}
    for req in metadata.requires("rerec") or []:
        if ";" in req or "==" not in req:
            continue
        name = req.split("==")[0].strip()
        pins[name.lower()] = req.replace(" ", "")
    out = []
    for package in SERVING_PACKAGES:
        if package in pins:
            out.append(pins[package])
            continue
        try:
            out.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def _client():
    from mlflow import MlflowClient

    bound_mlflow_http_retries()
    return MlflowClient()


def _version_by_alias(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    def get():
        try:
            return client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise

    return with_retries(get, f"read alias '{alias}' of '{name}'")


#: seconds one MLflow HTTP request may take while the model is uploaded (one request per file)
ARTIFACT_UPLOAD_TIMEOUT_S = 3600


class _PyfuncFlavor:
    """``mlflow.pyfunc`` as the flavor of ``mlflow.models.Model.log`` (any module with ``save_model``),
    taking the ``validate_serving_input`` switch that Model.log reads and pyfunc's save_model refuses."""

    @staticmethod
    def save_model(path, mlflow_model=None, validate_serving_input=True, **kwargs):
        import mlflow.pyfunc

        return mlflow.pyfunc.save_model(path=path, mlflow_model=mlflow_model, **kwargs)


@contextlib.contextmanager
def _http_timeout(seconds: int):
    """MLFLOW_HTTP_REQUEST_TIMEOUT raised to at least ``seconds`` inside the block (an upload), restored after."""
    before = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(seconds, int(before or 0)))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_TIMEOUT", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = before


def _taste_file(graphs_dir: Path | None, reward_dir: Path | None, folder: Path) -> Path:
    """``taste.npz`` in ``folder``: the :class:`rerec.taste.TasteIndex` of the run's training graph and
    LightGCN, built as the evaluate stage builds it (:func:`rerec.taste.attach_taste`)."""
    from rerec.graphs.interaction import InteractionGraph
    from rerec.taste import TasteIndex, taste_source

    if graphs_dir is None:
        raise ConfigError("the model was evaluated with taste evidence; its taste index is built from the "
                          "build-graphs folder. Fix: pass --graphs (and --reward).")
    return TasteIndex.build(InteractionGraph.load(graphs_dir), taste_source(True, reward_dir)).save(folder)


def _log_model(model_dir: Path, name: str, data_dir: Path | None = None, settings=None, notes=(),
               graphs_dir: Path | None = None, reward_dir: Path | None = None):
    """Log the pyfunc recommender (:mod:`rerec.serving.pyfunc`, :func:`rerec.serving.pyfunc.model_kwargs`): the HF folder
    and the catalog view of ``data_dir`` as artifacts, the serving settings as ``model_config``, the
    signature and an input example, the rerec package as the model's code (models from code, no
    pickle: what serves is the prompt and answer code the model was registered with). Without
    ``data_dir`` the model has no catalog and refuses to load (a warning says so). With
    ``settings.taste_evidence`` the taste index of ``graphs_dir`` and ``reward_dir`` goes with it
    (``taste.npz``)."""
    import mlflow

    from rerec.serving.pyfunc import model_kwargs
    from rerec.serving.recommender import ServingSettings, catalog_view_of_data, write_catalog_view

    settings = settings or ServingSettings()
    with tempfile.TemporaryDirectory(prefix="rerec-serving-") as tmp:
        view = catalog_file = None
        if data_dir is not None:
            view = catalog_view_of_data(data_dir)
            catalog_file = write_catalog_view(view, Path(tmp) / "catalog.json")
        else:
            log.warning("register: no --data given, so the model is logged without its catalog and cannot serve. "
                        "Fix: pass the prepared data folder.")
        taste_file = _taste_file(graphs_dir, reward_dir, Path(tmp)) if settings.taste_evidence else None
        # mlflow.pyfunc.log_model, less its check of the input example: that check loads the model and predicts
        # in this process (a CPU pod sized for an upload, where a 3B model does not fit). The example is
        # stored all the same; serving tries it where the model is served. Model.log is what log_model calls.
        # Each HTTP request gets ARTIFACT_UPLOAD_TIMEOUT_S rather than 30 s: a weights file is several GB.
        with _http_timeout(ARTIFACT_UPLOAD_TIMEOUT_S):
            info = mlflow.models.Model.log(artifact_path=None, name="model", flavor=_PyfuncFlavor,
                                           flavor_name="pyfunc.ModelFromCode",
                                           validate_serving_input=False, pip_requirements=pip_requirements(),
                                           **model_kwargs(model_dir, catalog_file, settings, view, taste_file))
        mlflow.log_dict({"settings": settings.to_dict(), "notes": list(notes), "catalog": data_dir is not None,
                         "taste": taste_file is not None}, "serving.json")
        return info


def _check_uploaded(client, info, model_dir: Path) -> None:
    """Refuse to register a model whose upload is incomplete: every file of the HF folder must be in the
    artifact store with its size, next to the MLmodel file. (A failed upload already raises and leaves
    the logged model FAILED; this also catches one that lost a file without an error.) A version is the
    only thing that marks a model complete, so it is created only after this check."""
    from mlflow.entities import LoggedModelStatus

    from rerec.serving.pyfunc import CATALOG_ARTIFACT, HF_ARTIFACT, TASTE_ARTIFACT

    model_id = info.model_id
    artifacts = (info.flavors or {}).get("python_function", {}).get("artifacts", {})
    saved = artifacts.get(HF_ARTIFACT, {}).get("path") or f"artifacts/{model_dir.name}"
    remote: dict[str, int | None] = {}

    def walk(path: str | None) -> None:
        for f in with_retries(lambda: client.list_logged_model_artifacts(model_id, path), "list the model's files"):
            if f.is_dir:
                walk(f.path)
            else:
                remote[f.path] = f.file_size

    walk(None)
    expected = {f"{saved.rstrip('/')}/{p.relative_to(model_dir).as_posix()}": p.stat().st_size
                for p in sorted(model_dir.rglob("*")) if p.is_file()}
    expected["MLmodel"] = None
    for artifact in (CATALOG_ARTIFACT, TASTE_ARTIFACT):
        if artifacts.get(artifact, {}).get("path"):
            expected[artifacts[artifact]["path"]] = None
    bad = [k for k, size in expected.items()
           if k not in remote or (size is not None and remote[k] is not None and remote[k] != size)]
    if bad:
        with_retries(lambda: client.finalize_logged_model(model_id, LoggedModelStatus.FAILED),
                     "mark the incomplete model as failed")
        raise RerecError(f"The upload of {model_dir} to the artifact store is incomplete ({len(bad)} file(s) missing "
                         f"or of the wrong size, e.g. {bad[0]}), so no model version was created. Fix: rerun "
                         "register; if it persists, check the artifact store (S3) for errors.")


def _promote(client, name: str, version: str, mine: dict, comparison: dict | None, compared_version: str | None,
             config: RegisterConfig) -> tuple[GateDecision, str | None]:
    """Compare-and-set on the ``champion`` alias; returns the decision and the champion it was about."""
    current = _version_by_alias(client, name, CHAMPION)
    if current is not None and current.version == version:
        return GateDecision(True, "already champion"), version
    champion = current.version if current is not None else None
    decision = gate(mine, champion, comparison, compared_version, config)
    if not decision.promote:
        return decision, champion
    again = _version_by_alias(client, name, CHAMPION)
    if (again.version if again else None) != champion:
        moved = again.version if again else None
        return GateDecision(False, f"not promoted: the champion moved to version {moved} while this run was "
                                   f"deciding; this challenger was compared with {champion or 'no champion'}"), moved
    with_retries(lambda: client.set_registered_model_alias(name, CHAMPION, version), "move the champion alias")
    time.sleep(0.2 + random.random() * 0.3)  # let a concurrent writer land, then read back
    after = _version_by_alias(client, name, CHAMPION)
    if after is not None and after.version == version:
        return decision, champion
    if after is not None and after.version != champion:
        # both moved it at once: the other run's write landed last; restore ours only if it was compared with
        # the same champion as we were (it was: both read `champion`), so the later write stands
        return GateDecision(False, f"not promoted: another challenger (version {after.version}) compared with the "
                                   f"same champion became champion at the same moment"), after.version
    return GateDecision(False, "not promoted: the champion alias did not take the new version"), champion


def read_per_query(report_path: Path):
    """The report's per-query table (``per_query.parquet`` beside ``report.json``), or None."""
    import pandas as pd

    path = Path(report_path).parent / "per_query.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def report_json_path(report: Path) -> Path:
    """``report`` may be the evaluate stage's folder or its ``report.json``."""
    report = Path(report)
    return report / "report.json" if report.is_dir() else report


def register(model_dir: Path, report_path: Path, config: RegisterConfig, *, compared_version: str | None = None,
             data_dir: Path | None = None, serving: dict | None = None, graphs_dir: Path | None = None,
             reward_dir: Path | None = None) -> dict:
    """Register ``model_dir`` as a new version of ``config.model_name`` with alias ``challenger``, then run the
    gate on the report (folder or ``report.json``). ``compared_version``: the champion version that the report
    evaluated as ``config.champion``. Returns version, run id, the comparison and the decision.

    ``data_dir`` (the prepared data folder) gives the served model its catalog; ``serving`` overrides
    serving settings (:func:`rerec.serving.recommender.resolve_settings`: by default as the report's evaluation). A
    model evaluated with taste evidence also needs ``graphs_dir`` and ``reward_dir`` (build-graphs and
    train-reward-gnn outputs), from which its taste index is built; without them nothing is registered."""
    import mlflow

    from rerec.serving.recommender import resolve_settings

    model_dir, report_path = Path(model_dir), report_json_path(report_path)
    check_model_folder(model_dir)
    report = read_report(report_path)
    settings, serving_notes = resolve_settings(model_dir, report, serving)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise RerecError(f"--data {data_dir}: no such folder, so nothing was registered. Fix: pass the prepared "
                         "data folder the model was trained on (the served model's catalog).")
    if settings.taste_evidence:
        for flag, folder in (("--graphs", graphs_dir), ("--reward", reward_dir)):
            if folder is None or not Path(folder).is_dir():
                raise RerecError(f"{flag} {folder or '(not given)'}: the model was evaluated with taste evidence, "
                                 "whose index is built from the run's build-graphs and train-reward-gnn folders, so "
                                 f"nothing was registered. Fix: pass {flag} (the pipeline passes both).")
    mine = {"metric": report_value(report, config.metric), "retention": report_value(report, config.retention_metric),
            "split": report.get("split", "missing") if report else "missing"}
    records = retention_records(report, config.challenger, config.retention_metric)
    if records is not None:
        mine["retention_interval"] = retention_interval(*records, config.min_general_retention, n_boot=config.n_boot,
                                                        alpha=config.alpha, seed=config.seed)
    comparison = paired_comparison(read_per_query(report_path), config.challenger, config.champion,
                                   config.query_metric, n_boot=config.n_boot, alpha=config.alpha, seed=config.seed)
    client = _client()
    name = config.model_name
    experiment = config.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME", "rerec")
    with_retries(lambda: mlflow.set_experiment(experiment), f"open the MLflow experiment '{experiment}'")
    parent = os.environ.get("REREC_PARENT_RUN_ID") or None
    lineage = {
        "rerec.kfp_run_id": os.environ.get("KFP_RUN_ID"),
        "rerec.git_commit": git_commit(),
        "rerec.dataset_hash": os.environ.get("REREC_DATASET_HASH"),
        "rerec.parent_model_version": os.environ.get("REREC_PARENT_MODEL_VERSION"),
    }
    lineage = {k: v for k, v in lineage.items() if v}
    run = with_retries(lambda: mlflow.start_run(run_name="register", nested=bool(parent), parent_run_id=parent),
                       "start the register run")
    version = None
    try:
        mlflow.set_tags({"rerec.stage": "register", **lineage})
        mlflow.log_params({k: str(v) for k, v in vars(config).items()})
        if report_path.exists():
            # the whole evaluation (report.html, plots, per-query rows): what a reviewer opens
            with_retries(lambda: mlflow.log_artifacts(str(report_path.parent), artifact_path=REPORT_ARTIFACTS),
                         "upload the evaluation report")
        info = with_retries(lambda: _log_model(model_dir, name, Path(data_dir) if data_dir else None, settings,
                                               serving_notes, Path(graphs_dir) if graphs_dir else None,
                                               Path(reward_dir) if reward_dir else None), "log the model")
        _check_uploaded(client, info, model_dir)
        version = with_retries(lambda: _create_version(client, name, info, run.info.run_id),
                               f"create a version of '{name}'").version
        tags = {**lineage, "rerec.run_id": run.info.run_id, "rerec.metric_name": config.metric}
        for key, value in (("gate", mine["metric"]), ("retention", mine["retention"])):
            if value is not None:
                tags[METRIC_TAG + key] = repr(value)
        if comparison is not None:
            overall = comparison["all"]
            tags.update({"rerec.compared.version": compared_version or "?", "rerec.compared.metric": comparison["metric"],
                         "rerec.compared.diff": repr(overall["diff"]), "rerec.compared.low": repr(overall["low"]),
                         "rerec.compared.high": repr(overall["high"]), "rerec.compared.n": str(overall["n"])})
        for key, value in tags.items():
            with_retries(lambda k=key, v=value: client.set_model_version_tag(name, version, k, str(v)),
                         "tag the model version")
        with_retries(lambda: client.set_registered_model_alias(name, CHALLENGER, version), "set the challenger alias")
    except BaseException:
        # No half-registered version: a version without its tags and alias is deleted again.
        if version is not None:
            try:
                client.delete_model_version(name, version)
            except Exception:  # noqa: BLE001 - the server may be the thing that failed
                pass
        mlflow.end_run(status="FAILED")
        raise

    try:
        if config.promote:
            decision, champion = _promote(client, name, version, mine, comparison, compared_version, config)
        else:
            decision = GateDecision(False, "not promoted: the gate is off (promote=false)")
            current = _version_by_alias(client, name, CHAMPION)
            champion = current.version if current is not None else None
        with_retries(lambda: client.set_model_version_tag(name, version, "rerec.gate", decision.reason),
                     "record the gate decision")
        if decision.promote and champion and champion != version:
            with_retries(lambda: client.set_model_version_tag(name, version, PREVIOUS_TAG, champion),
                         "record the previous champion")
        result = {
            "model_name": name, "version": str(version), "run_id": run.info.run_id,
            "promoted": bool(decision.promote), "reason": decision.reason,
            "metric_name": config.metric, "challenger_metric": mine["metric"],
            "general_retention": mine["retention"], "champion_version": champion,
            "compared_version": compared_version, "comparison": comparison,
            "report_artifacts": f"runs:/{run.info.run_id}/{REPORT_ARTIFACTS}",
        }
        mlflow.log_metrics({"promoted": float(decision.promote),
                            **({"challenger_metric": mine["metric"]} if mine["metric"] is not None else {}),
                            **({"paired_diff": comparison["all"]["diff"], "paired_low": comparison["all"]["low"],
                                "paired_high": comparison["all"]["high"]} if comparison else {})})
        with_retries(lambda: mlflow.log_dict(result, GATE_FILE), "upload the gate decision")
        mlflow.end_run()
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    return result


def _create_version(client, name: str, info, run_id: str):
    """Create the version once: after a lost answer, reuse the version this run already created."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name)
        except MlflowException as exc2:
            if exc2.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    for existing in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        return existing
    return client.create_model_version(name, info.model_uri, run_id=run_id, model_id=info.model_id)


class NoSuchAlias(RerecError):
    """The registered model (or its alias) does not exist: a fact about the registry, not a failure to reach it."""


def download_alias(name: str, alias: str, dest: Path) -> str:
    """Download the Hugging Face folder of ``name@alias`` into ``dest``; returns the version."""
    import mlflow

    from rerec.serving.pyfunc import HF_ARTIFACT

    client = _client()
    version = _version_by_alias(client, name, alias)
    if version is None:
        raise NoSuchAlias(f"The registry has no '{alias}' version of '{name}'. "
                          "Fix: run the train pipeline once (it registers and promotes a first champion).")
    with tempfile.TemporaryDirectory(prefix="rerec-champion-") as tmp:
        local = with_retries(lambda: mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version.version}", dst_path=tmp), f"download {name}@{alias}")
        found = sorted(p.parent for p in (Path(local) / "artifacts").glob("*/config.json"))
        if not found:
            raise RerecError(f"{name} version {version.version} has no '{HF_ARTIFACT}' artifact. "
                             "Fix: register models with 'rerec register'.")
        shutil.copytree(found[0], dest, dirs_exist_ok=True)
    return str(version.version)


def decision_markdown(result: dict) -> str:
    """The gate's decision as Markdown: the verdict, then the paired difference per query type."""
    rows = "\n".join(f"| {k} | {result.get(k)} |" for k in (
        "model_name", "version", "promoted", "reason", "metric_name", "challenger_metric",
        "general_retention", "champion_version", "compared_version", "report_artifacts"))
    out = f"# Promotion gate\n\n| field | value |\n| --- | --- |\n{rows}\n"
    comparison = result.get("comparison")
    if comparison:
        level = round(100 * (1 - comparison["alpha"]))
        out += (f"\n## {comparison['challenger']} - {comparison['champion']} on {comparison['metric']} "
                f"(paired, {level}% interval)\n\n| query type | n | difference | interval |\n| --- | --- | --- | --- |\n")
        for label, d in [*comparison["by_type"].items(), ("all", comparison["all"])]:
            out += f"| {label} | {d['n']} | {d['diff']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] |\n"
    return out


# --- CLI ------------------------------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    from rerec.serving.recommender import ServingOverrides

    parser.add_argument("--model-dir", type=Path, required=True, help="Hugging Face model folder (rft output).")
    parser.add_argument("--report", type=Path, required=True,
                        help="The evaluate stage's output folder (or its report.json), on validation queries.")
    parser.add_argument("--champion-version", default=None,
                        help="Registry version of the model the report names 'champion' (the gate compares with it).")
    parser.add_argument("--data", type=Path, default=None,
                        help="Prepared data folder: the catalog the served model resolves and shows items from "
                             "(without it the model is registered but cannot serve).")
    parser.add_argument("--graphs", type=Path, default=None,
                        help="build-graphs folder: with --reward, the taste index of a model evaluated with taste "
                             "evidence.")
    parser.add_argument("--reward", type=Path, default=None, help="train-reward-gnn folder (see --graphs).")
    add_dataclass_arguments(parser, RegisterConfig)
    add_dataclass_arguments(parser, ServingOverrides, group="serving (default: as the report's evaluation)")


def cli_main(args: argparse.Namespace) -> int:
    from rerec.serving.recommender import ServingOverrides

    config = dataclass_from_args(RegisterConfig, args)
    if not 0.0 <= config.min_general_retention <= 1.5:
        raise ConfigError("--min-general-retention must be a share such as 0.95.")
    serving = dataclasses.asdict(dataclass_from_args(ServingOverrides, args))
    result = register(args.model_dir, args.report, config, compared_version=args.champion_version,
                      data_dir=args.data, serving=serving, graphs_dir=args.graphs, reward_dir=args.reward)
    print(json.dumps(result, indent=2, default=str))
    return 0
