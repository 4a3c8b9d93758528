"""Register a trained model in the MLflow model registry and run the promotion gate.

``register(model_dir, report_path, config, data_dir)`` logs the model (the pyfunc recommender of
docs/serving.md: the Hugging Face folder, the catalog of the data folder, the prompt settings it was
evaluated with, explicit pip requirements from the project's pins), checks that every file of the
folder reached the artifact store (a version is the only mark of a complete model, so none points at a
partial upload), creates a model version, tags it
with its evaluation numbers and lineage, and points the alias ``challenger`` at it. The gate then moves
``champion`` to it only if

- its validation metric (``config.metric``, read from the evaluation report) beats the champion's by
  more than ``config.min_improvement``, and
- it keeps at least ``config.min_general_retention`` of the base model's general ability.

A model with missing or non-finite metrics is never promoted; the reason is stored on the version
(tag ``rerec.gate``) and returned. Two runs finishing at once: before moving the alias the gate re-reads
it and compares again if it moved (compare-and-set), and after moving it reads it back; a better
concurrent challenger always ends up champion, a worse one never displaces it.
"""

from __future__ import annotations

import argparse
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
from rerec.tracking import bound_mlflow_http_retries, git_commit, safe_metric_name, with_retries

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_TAG = "rerec.metric."
SERVING_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "jinja2", "tqdm", "pandas", "numpy",
                    "mlflow")


@dataclass
class RegisterConfig:
    model_name: str = field(default="rerec-recommender", metadata={"help": "Registered model name."})
    metric: str = field(default="metrics.rft/all/acc_at_1", metadata={
        "help": "Validation metric the gate compares: a dotted path into report.json (the evaluate stage "
                "writes 'metrics.<model>/<query type>/<metric>'), or a unique key ending."})
    higher_is_better: bool = field(default=True, metadata={"help": "Whether a larger metric is better."})
    min_improvement: float = field(default=0.0, metadata={
        "help": "The challenger must beat the champion by more than this."})
    min_metric: float = field(default=0.0, metadata={
        "help": "With no champion yet, promote only a model whose metric is above this (higher_is_better)."})
    retention_metric: str = field(default="metrics.rft/retention/mmlu_ratio", metadata={
        "help": "General-ability retention in report.json: the model's score over its reference model's "
                "(the SFT model in train, the champion in retrain; 1.0 = kept all)."})
    required_split: str = field(default="val", metadata={
        "help": "The split the report must be on: the gate selects models, so never on test."})
    min_general_retention: float = field(default=0.95, metadata={
        "help": "Promote only if at least this share of general ability is kept."})
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


def gate(challenger: dict[str, float | None], champion: dict[str, float | None] | None,
         config: RegisterConfig) -> GateDecision:
    """``challenger``/``champion``: {"metric": value, "retention": value, "split": name} (None = missing)."""
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
    if champion is None:
        if config.higher_is_better and metric <= config.min_metric:
            return GateDecision(False, f"not promoted: no champion yet and {config.metric} {metric:.4f} is not "
                                       f"above min_metric {config.min_metric}")
        return GateDecision(True, f"promoted: no champion yet ({config.metric} = {metric:.4f})")
    best = champion.get("metric")
    if best is None:
        return GateDecision(True, f"promoted: the champion has no recorded '{config.metric}'")
    gain = (metric - best) if config.higher_is_better else (best - metric)
    if gain > config.min_improvement:
        return GateDecision(True, f"promoted: {config.metric} {metric:.4f} vs champion {best:.4f}")
    return GateDecision(False, f"not promoted: {config.metric} {metric:.4f} does not beat champion {best:.4f} "
                               f"by more than {config.min_improvement}")


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


def _recorded(version) -> dict[str, float | None]:
    if version is None:
        return {}
    tags = version.tags or {}

    def num(key: str) -> float | None:
        try:
            value = float(tags[key])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None

    return {"metric": num(METRIC_TAG + "gate"), "retention": num(METRIC_TAG + "retention")}


def _check_model_dir(model_dir: Path) -> None:
    if not (model_dir / "config.json").is_file():
        raise RerecError(f"{model_dir}: not a Hugging Face model folder (no config.json), so it was not "
                         "registered. Fix: pass the rft (or sft-warmup) stage's output folder.")
    weights = list(model_dir.glob("*.safetensors")) + list(model_dir.glob("*.bin"))
    if not weights:
        raise RerecError(f"{model_dir}: the model folder has no weights (*.safetensors), so it was not "
                         "registered. Fix: rerun the training stage; it writes the folder atomically.")


def _log_model(model_dir: Path, name: str, data_dir: Path | None = None, settings=None, notes=()):
    """Log the pyfunc recommender (:mod:`rerec.pyfunc`, :func:`rerec.pyfunc.model_kwargs`): the HF folder
    and the catalog view of ``data_dir`` as artifacts, the serving settings as ``model_config``, the
    signature and an input example, the rerec package as the model's code (models from code, no
    pickle: what serves is the prompt and answer code the model was registered with). Without
    ``data_dir`` the model has no catalog and refuses to load (a warning says so)."""
    import mlflow

    from rerec.pyfunc import model_kwargs
    from rerec.serving import ServingSettings, catalog_view_of_data, write_catalog_view

    settings = settings or ServingSettings()
    with tempfile.TemporaryDirectory(prefix="rerec-serving-") as tmp:
        view = catalog_file = None
        if data_dir is not None:
            view = catalog_view_of_data(data_dir)
            catalog_file = write_catalog_view(view, Path(tmp) / "catalog.json")
        else:
            log.warning("register: no --data given, so the model is logged without its catalog and cannot serve. "
                        "Fix: pass the prepared data folder.")
        info = mlflow.pyfunc.log_model(name="model", pip_requirements=pip_requirements(),
                                       **model_kwargs(model_dir, catalog_file, settings, view))
        mlflow.log_dict({"settings": settings.to_dict(), "notes": list(notes), "catalog": data_dir is not None},
                        "serving.json")
        return info


def _check_uploaded(client, info, model_dir: Path) -> None:
    """Refuse to register a model whose upload is incomplete: every file of the HF folder must be in the
    artifact store with its size, next to the MLmodel file. (A failed upload already raises and leaves
    the logged model FAILED; this also catches one that lost a file without an error.) A version is the
    only thing that marks a model complete, so it is created only after this check."""
    from mlflow.entities import LoggedModelStatus

    from rerec.pyfunc import CATALOG_ARTIFACT, HF_ARTIFACT

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
    if artifacts.get(CATALOG_ARTIFACT, {}).get("path"):
        expected[artifacts[CATALOG_ARTIFACT]["path"]] = None
    bad = [k for k, size in expected.items()
           if k not in remote or (size is not None and remote[k] is not None and remote[k] != size)]
    if bad:
        with_retries(lambda: client.finalize_logged_model(model_id, LoggedModelStatus.FAILED),
                     "mark the incomplete model as failed")
        raise RerecError(f"The upload of {model_dir} to the artifact store is incomplete ({len(bad)} file(s) missing "
                         f"or of the wrong size, e.g. {bad[0]}), so no model version was created. Fix: rerun "
                         "register; if it persists, check the artifact store (S3) for errors.")


def _promote(client, name: str, version: str, mine: dict, config: RegisterConfig) -> tuple[GateDecision, str | None]:
    """Compare-and-set on the ``champion`` alias; returns the decision and the champion compared with."""
    for _ in range(5):
        current = _version_by_alias(client, name, CHAMPION)
        if current is not None and current.version == version:
            return GateDecision(True, "already champion"), version
        decision = gate(mine, _recorded(current) if current is not None else None, config)
        if not decision.promote:
            return decision, current.version if current else None
        again = _version_by_alias(client, name, CHAMPION)
        if (again.version if again else None) != (current.version if current else None):
            continue  # another run moved it meanwhile: compare with the new champion
        with_retries(lambda: client.set_registered_model_alias(name, CHAMPION, version), "move the champion alias")
        time.sleep(0.2 + random.random() * 0.3)  # let a concurrent writer land, then read back
        after = _version_by_alias(client, name, CHAMPION)
        if after is not None and after.version == version:
            return decision, current.version if current else None
    final = _version_by_alias(client, name, CHAMPION)
    return GateDecision(False, f"not promoted: the champion kept moving (now version "
                               f"{final.version if final else None})"), final.version if final else None


def register(model_dir: Path, report_path: Path, config: RegisterConfig, data_dir: Path | None = None,
             serving: dict | None = None) -> dict:
    """Register ``model_dir`` as a new version of ``config.model_name`` with alias ``challenger``, then
    run the gate. Returns version, run id, the numbers compared and the decision.

    ``data_dir`` (the prepared data folder) gives the served model its catalog; ``serving`` overrides
    serving settings (:func:`rerec.serving.resolve_settings`: by default as the report's evaluation)."""
    import mlflow

    from rerec.serving import resolve_settings

    model_dir, report_path = Path(model_dir), Path(report_path)
    _check_model_dir(model_dir)
    report = read_report(report_path)
    settings, serving_notes = resolve_settings(model_dir, report, serving)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise RerecError(f"--data {data_dir}: no such folder, so nothing was registered. Fix: pass the prepared "
                         "data folder the model was trained on (the served model's catalog).")
    mine = {"metric": report_value(report, config.metric), "retention": report_value(report, config.retention_metric),
            "split": report.get("split", "missing") if report else "missing"}
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
            with_retries(lambda: mlflow.log_artifact(str(report_path), artifact_path="evaluation"),
                         "upload the evaluation report")
        info = with_retries(lambda: _log_model(model_dir, name, Path(data_dir) if data_dir else None, settings,
                                               serving_notes), "log the model")
        _check_uploaded(client, info, model_dir)
        version = with_retries(lambda: _create_version(client, name, info, run.info.run_id),
                               f"create a version of '{name}'").version
        tags = {**lineage, "rerec.run_id": run.info.run_id}
        for key, value in (("gate", mine["metric"]), ("retention", mine["retention"])):
            if value is not None:
                tags[METRIC_TAG + key] = repr(value)
        tags["rerec.metric_name"] = config.metric
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
            decision, compared = _promote(client, name, version, mine, config)
        else:
            decision, compared = GateDecision(False, "not promoted: the gate is off (promote=false)"), None
        champion_metric = None
        if compared and compared != version:
            champion_metric = _recorded(client.get_model_version(name, compared)).get("metric")
        with_retries(lambda: client.set_model_version_tag(name, version, "rerec.gate", decision.reason),
                     "record the gate decision")
        result = {
            "model_name": name, "version": str(version), "run_id": run.info.run_id,
            "promoted": bool(decision.promote), "reason": decision.reason,
            "metric_name": config.metric, "challenger_metric": mine["metric"],
            "general_retention": mine["retention"], "champion_version": compared,
            "champion_metric": champion_metric,
        }
        mlflow.log_metrics({"promoted": float(decision.promote),
                            **({"challenger_metric": mine["metric"]} if mine["metric"] is not None else {})})
        with_retries(lambda: mlflow.log_dict(result, "gate_decision.json"), "upload the gate decision")
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


def download_alias(name: str, alias: str, dest: Path) -> str:
    """Download the Hugging Face folder of ``name@alias`` into ``dest``; returns the version."""
    import mlflow

    from rerec.pyfunc import HF_ARTIFACT

    client = _client()
    version = _version_by_alias(client, name, alias)
    if version is None:
        raise RerecError(f"The registry has no '{alias}' version of '{name}'. "
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
    rows = "\n".join(f"| {k} | {result.get(k)} |" for k in (
        "model_name", "version", "promoted", "reason", "metric_name", "challenger_metric",
        "general_retention", "champion_version", "champion_metric"))
    return f"# Promotion gate\n\n| field | value |\n| --- | --- |\n{rows}\n"


# --- CLI ------------------------------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    from rerec.serving import ServingOverrides

    parser.add_argument("--model-dir", type=Path, required=True, help="Hugging Face model folder (rft output).")
    parser.add_argument("--report", type=Path, required=True, help="report.json of the evaluate stage.")
    parser.add_argument("--data", type=Path, default=None,
                        help="Prepared data folder: the catalog the served model resolves and shows items from "
                             "(without it the model is registered but cannot serve).")
    add_dataclass_arguments(parser, RegisterConfig)
    add_dataclass_arguments(parser, ServingOverrides, group="serving (default: as the report's evaluation)")


def cli_main(args: argparse.Namespace) -> int:
    from rerec.serving import ServingOverrides

    config = dataclass_from_args(RegisterConfig, args)
    if not 0.0 <= config.min_general_retention <= 1.5:
        raise ConfigError("--min-general-retention must be a share such as 0.95.")
    serving = dataclasses.asdict(dataclass_from_args(ServingOverrides, args))
    result = register(args.model_dir, args.report, config, data_dir=args.data, serving=serving)
    print(json.dumps(result, indent=2, default=str))
    return 0
