"""``rerec schedule``: create or update the recurring ``retrain`` run on Kubeflow Pipelines.

    rerec schedule --host https://kfp.example/pipeline --cron "0 0 3 * * *" --data-uri s3://bucket/new/

Uploads ``pipelines/retrain.yaml`` as a pipeline version named after its content hash (reused when it
is already there), then makes sure exactly one recurring run named ``--name`` exists with that version,
the cron and the parameters, at most one run at a time (``max_concurrency=1``) and no catch-up. KFP has
no in-place update for recurring runs, so a changed schedule is created first and the old one deleted
after, so that there is never a window without one. Unchanged: nothing is touched.

KFP cron has six fields (seconds first): ``0 0 3 * * *`` is every day at 03:00. The flags are checked
(cron, package) before anything is sent, and an unreachable endpoint is reported after a few seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from rerec.errors import ConfigError, RerecError
from rerec.pipeline.params import TEXT_PARAMS  # pipeline parameters that are text, not JSON values

DEFAULT_PACKAGE = Path(__file__).resolve().parents[3] / "pipelines" / "retrain.yaml"
CONNECT_TIMEOUT_S = 5.0


def _name_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"key": key, "operation": "EQUALS", "string_value": value}]})


CRON_FORMAT = ("write SECONDS MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK (KFP's 6-field cron), "
               "each *, ?, a value, a range a-b, a list a,b and an optional /step (e.g. '0 0 3 * * *' is every day "
               "at 03:00, '0 */30 * * * MON-FRI' every half hour on weekdays), or @hourly, @daily, @weekly, "
               "@monthly, @yearly, @every 6h")
# (name, low, high, names accepted in place of numbers): the fields of robfig/cron, which KFP parses with.
_CRON_FIELDS = (
    ("seconds", 0, 59, ()), ("minutes", 0, 59, ()), ("hours", 0, 23, ()), ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day-of-week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_GO_DURATION = re.compile(r"(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def _cron_value(text: str, low: int, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit():
        raise ValueError(f"'{text}' is not a number" + (f" or one of {', '.join(names)}" if names else ""))
    return int(text)


def _check_cron_field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> None:
    for part in text.split(","):
        span, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            raise ValueError(f"step '{step}' in '{part}' must be a whole number >= 1")
        if span in ("*", "?"):
            if span == "?" and name not in ("day-of-month", "day-of-week"):
                raise ValueError("'?' is only allowed for day-of-month and day-of-week")
            continue
        start, dash, end = span.partition("-")
        first = _cron_value(start, low, names)
        last = _cron_value(end, low, names) if dash else first
        for value in (first, last):
            if not low <= value <= high:
                raise ValueError(f"{value} is outside {low}-{high}")
        if first > last:
            raise ValueError(f"range '{span}' runs backwards")


def validate_cron(cron: str) -> str:
    """``cron`` if KFP (robfig/cron) accepts it as a schedule, else :class:`ConfigError` explaining the format.

    Five fields are refused although robfig would read them (as seconds..month): a five-field crontab line
    such as '0 3 * * *' would silently run every hour at minute 3 instead of every day at 03:00.
    """
    text = cron.strip()
    fix = f"Fix: {CRON_FORMAT}."
    if text.startswith("@"):
        word, _, rest = text.partition(" ")
        if word in _DESCRIPTORS and not rest.strip():
            return cron
        duration = rest.strip()
        if word == "@every" and duration and _GO_DURATION.sub("", duration) == "":
            return cron
        raise ConfigError(f"--cron '{cron}' is not a valid cron expression: unknown descriptor or duration. {fix}")
    fields = text.split()
    if len(fields) != 6:
        hint = (" (a five-field crontab line needs a seconds field in front: '0 " + text + "')"
                if len(fields) == 5 else "")
        raise ConfigError(f"--cron '{cron}' has {len(fields)} fields; KFP cron has 6, seconds first{hint}. {fix}")
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            _check_cron_field(value, name, low, high, names)
        except ValueError as exc:
            raise ConfigError(f"--cron '{cron}' is not a valid cron expression: {name} field '{value}': {exc}. "
                              f"{fix}") from None
    return cron


def check_package(package: Path) -> Path:
    if not Path(package).is_file():
        what = "is a folder" if Path(package).is_dir() else "does not exist"
        raise ConfigError(f"--package {package} {what}. Fix: pass the compiled retrain pipeline YAML, or run "
                          f"'make compile' to write {DEFAULT_PACKAGE}.")
    return Path(package)


def check_reachable(host: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, with one clear error, when ``host`` is not a live KFP API endpoint.

    A TCP connect and one GET of ``/apis/v2beta1/healthz``, each bounded by ``timeout`` seconds and
    without retries: kfp.Client would otherwise retry its health check five times five seconds, logging a
    traceback each time, or wait on a connect that hangs. Only a refused/unresolvable/timed-out endpoint,
    a 404 (not the KFP API) or a 5xx is refused here; TLS and authentication stay kfp.Client's business.
    """
    from urllib.parse import urlsplit

    import urllib3

    url = host if "://" in host else f"http://{host}"
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.scheme not in ("http", "https"):
        raise ConfigError(f"--host '{host}' is not an http(s) URL. Fix: pass the KFP API endpoint, e.g. "
                          "http://localhost:8080 or https://kfp.example/pipeline.")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:  # refused, unknown name, no route, timed out
        reason = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                  else exc.strerror or str(exc) or type(exc).__name__)
        raise unreachable(host, reason) from None
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)
    try:
        answer = http.request("GET", url.rstrip("/") + "/apis/v2beta1/healthz", redirect=False)
    except urllib3.exceptions.SSLError:
        return  # certificates: kfp.Client's own settings decide (ssl_ca_cert, verify_ssl)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise unreachable(host, f"{type(exc).__name__} on GET /apis/v2beta1/healthz within {timeout:g} s") from None
    finally:
        http.clear()
    if answer.status == 404:
        raise RerecError(f"{host} answers, but not as the KFP API: GET /apis/v2beta1/healthz gave HTTP 404. "
                         "Fix: pass the KFP API endpoint (the ml-pipeline or ml-pipeline-ui service, e.g. "
                         "http://localhost:8080 after kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80).")
    if answer.status >= 500:
        raise RerecError(f"KFP at {host} is not healthy: GET /apis/v2beta1/healthz gave HTTP {answer.status}. "
                         "Fix: check the KFP API server (kubectl -n kubeflow logs deploy/ml-pipeline), then "
                         "rerun; nothing was scheduled.")


def unreachable(host: str, reason: str, midway: bool = False) -> RerecError:
    after = ("then rerun (it is idempotent: it reuses what was already uploaded and keeps one recurring run)"
             if midway else "then rerun; nothing was scheduled")
    return RerecError(f"could not reach KFP at {host} ({reason}). Fix: check that --host (or KFP_HOST) names the "
                      "KFP API endpoint and that it is up and reachable from here (e.g. kubectl port-forward -n "
                      f"kubeflow svc/ml-pipeline-ui 8080:80, then --host http://localhost:8080), {after}.")


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
             service_account: str | None = "default-editor") -> dict:
    """Create or update the recurring run; returns {"action": created|updated|unchanged, ids...}."""
    validate_cron(cron)
    check_package(package)
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
    parser.add_argument("--data-uri", "--input-dir", dest="data_uri", required=True,
                        help="where the new interactions land (s3://bucket/folder/ or a path in the image)")
    parser.add_argument("--model-name", default="rerec-recommender", help="registered model to retrain")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra pipeline parameter (e.g. preset=paper, rft_steps=200); repeatable")
    parser.add_argument("--service-account", default="default-editor",
                        help="ServiceAccount the runs use (KFP's runner in a Kubeflow profile namespace)")


#: old parameter name -> new one: accepted by --param for one release, with a note
RENAMED_PARAMS = {"profile": "preset"}


def param_value(key: str, text: str) -> Any:
    """A --param value as the typed pipeline parameter takes it: numbers, booleans, objects and lists
    (``200``, ``true``, ``{"a": "b"}``, ``[]``) are parsed as JSON, except for the string parameters
    (``config_overrides='{"rft": {...}}'`` stays text); anything that is not JSON stays a string."""
    if key in TEXT_PARAMS:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def cli_main(args: argparse.Namespace, client: Any = None) -> int:
    params: dict[str, Any] = {"data_uri": args.data_uri, "model_name": args.model_name}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param '{item}' is not KEY=VALUE. Fix: e.g. --param rft_steps=200.")
        if key in RENAMED_PARAMS:
            print(f"rerec schedule: the pipeline parameter '{key}' is now '{RENAMED_PARAMS[key]}'; "
                  f"pass --param {RENAMED_PARAMS[key]}={value} (the old name is accepted for this release only).", file=sys.stderr)
            key = RENAMED_PARAMS[key]
        params[key] = param_value(key, value)
    validate_cron(args.cron)  # everything the user typed is checked before anything is sent
    check_package(args.package)
    if client is None:
        if not args.host:
            raise ConfigError("No KFP endpoint. Fix: pass --host or set KFP_HOST.")
        check_reachable(args.host)
    try:
        if client is None:
            import kfp

            client = kfp.Client(host=args.host, namespace=args.namespace, **_in_cluster_credentials())
        result = schedule(client, name=args.name, cron=args.cron, params=params, package=args.package,
                          experiment=args.experiment, service_account=args.service_account)
    except RerecError:
        raise
    except Exception as exc:  # noqa: BLE001 - the endpoint went away or answered with an error midway
        raise _kfp_error(args.host, exc) from exc
    print(json.dumps(result, indent=2))
    return 0


def _in_cluster_credentials() -> dict:
    """kfp.Client sends the profile ServiceAccount's projected token (``KF_PIPELINES_SA_TOKEN_PATH``) only
    when it picks the in-cluster host itself; given a host, as the rerec-schedule Job gives it, it sends
    nothing and multi-user KFP refuses the call. When that token is mounted, pass it explicitly."""
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", "/var/run/secrets/kubeflow/pipelines/token")
    return {"credentials": ServiceAccountTokenVolumeCredentials(path)} if Path(path).is_file() else {}


def _kfp_error(host: str | None, exc: Exception) -> RerecError:
    """A KFP client failure as one message: unreachable (connection errors), or the server's answer."""
    import urllib3.exceptions

    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):  # MaxRetryError, NewConnectionError, timeouts
        reason = getattr(exc, "reason", None) or exc
        return unreachable(str(host), f"{type(reason).__name__}: {reason}"[:300], midway=True)
    status = getattr(exc, "status", None)
    if status is not None:  # kfp_server_api.ApiException
        return RerecError(f"KFP at {host} refused the request: HTTP {status} {getattr(exc, 'reason', '')}"
                          f"{': ' + str(getattr(exc, 'body', ''))[:300] if getattr(exc, 'body', None) else ''}. "
                          "Fix: check --host is the KFP API endpoint, --namespace, and that your credentials may "
                          "create pipelines and recurring runs there (401/403), then rerun (it is idempotent).")
    return RerecError(f"scheduling on KFP at {host} failed: {type(exc).__name__}: {str(exc)[:300]}. Fix: check that "
                      "the KFP endpoint is healthy (its API server logs), then rerun (it is idempotent).")
