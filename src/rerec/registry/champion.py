"""``rerec champion review|promote|rollback --name NAME``: decide about the challenger, with the evidence.

``rerec register`` is the pipeline stage that registers a new version and runs the promotion gate; this command
is for the person who reviews or overrides that decision (``rerec registry`` is its deprecated spelling).

``review`` shows the champion and the challenger side by side (version, run, creation time, summary metric,
general retention, lineage, the gate's decision), then the paired difference ``challenger - champion`` that
the gate computed on the same validation queries, per query type with its interval, and where the
evaluation report is; it ends with the commands that act on it:

- ``promote --version V``: make version V the champion (the version keeps which champion it replaced);
- ``rollback``: make the champion's predecessor the champion again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os

from rerec.errors import RerecError
from rerec.registry.register import (
    CHALLENGER,
    CHAMPION,
    GATE_FILE,
    METRIC_TAG,
    PREVIOUS_TAG,
    REPORT_ARTIFACTS,
    _client,
    _version_by_alias,
)
from rerec.tracking import with_retries


def _registered(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        with_retries(lambda: client.get_registered_model(name), f"read the registered model '{name}'")
    except MlflowException as exc:
        raise RerecError(f"The registry has no model named '{name}'. "
                         "Fix: check --name (models are registered by 'rerec register').") from exc


def review_rows(name: str, client=None) -> list[tuple[str, str, str]]:
    """(field, champion, challenger) rows."""
    client = client or _client()
    _registered(client, name)
    versions = {alias: _version_by_alias(client, name, alias) for alias in (CHAMPION, CHALLENGER)}

    def created(v) -> str:
        return dt.datetime.fromtimestamp(v.creation_timestamp / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M") if v else "-"

    fields: list[tuple[str, object]] = [
        ("version", lambda v: v.version), ("created (UTC)", created), ("run id", lambda v: v.run_id),
    ]
    tag_keys = sorted({k for v in versions.values() if v for k in (v.tags or {})})
    first = [METRIC_TAG + "gate", METRIC_TAG + "retention", "rerec.metric_name", "rerec.gate"]
    for key in first + [k for k in tag_keys if k not in first]:
        fields.append((key.removeprefix("rerec."), lambda v, k=key: (v.tags or {}).get(k, "-")))
    rows = []
    for label, get in fields:
        rows.append((label, *(str(get(versions[a])) if versions[a] else "-" for a in (CHAMPION, CHALLENGER))))
    return rows


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...] = ("", CHAMPION, CHALLENGER)) -> str:
    widths = [min(max(len(str(r[i])) for r in [header, *rows]), 60) for i in range(len(header))]
    line = lambda r: "  ".join(str(c)[:60].ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def comparison_rows(decision: dict) -> list[tuple[str, str, str, str]]:
    """(query type, n, difference, interval) rows of a gate decision's paired comparison, ``all`` last."""
    comparison = decision.get("comparison") or {}
    if not comparison:
        return []
    rows = [*comparison.get("by_type", {}).items(), ("all", comparison["all"])]
    return [(label, str(d["n"]), f"{d['diff']:+.4f}", f"[{d['low']:+.4f}, {d['high']:+.4f}]") for label, d in rows]


def gate_decision(version) -> dict:
    """The gate decision (``gate_decision.json``) of the register run that created ``version``, or {}."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = (version.tags or {}).get("rerec.run_id") or version.run_id
    if not run_id:
        return {}
    try:
        return with_retries(lambda: mlflow.artifacts.load_dict(f"runs:/{run_id}/{GATE_FILE}"),
                            "read the gate decision")
    except (MlflowException, OSError):
        return {}


def report_location(version, client) -> str:
    """Where a person opens the evaluation the gate read: the register run's page and artifact folder."""
    import mlflow

    run_id = (version.tags or {}).get("rerec.run_id") or version.run_id
    run = with_retries(lambda: client.get_run(run_id), "read the register run")
    uri = mlflow.get_tracking_uri()
    page = (f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
            if uri.startswith("http") else f"run {run_id} in {uri}")
    return f"{page}  (artifacts: {REPORT_ARTIFACTS}/report.html, {REPORT_ARTIFACTS}/per_query.parquet)"


def review(name: str) -> str:
    client = _client()
    out = [f"{name}: champion vs challenger", format_table(review_rows(name, client))]
    champion = _version_by_alias(client, name, CHAMPION)
    challenger = _version_by_alias(client, name, CHALLENGER)
    if challenger is not None:
        decision = gate_decision(challenger)
        rows = comparison_rows(decision)
        if rows:
            c = decision["comparison"]
            out += ["", f"challenger (v{challenger.version}) - champion (v{decision.get('compared_version') or '?'}) on "
                        f"{c['metric']}, same validation queries, paired {round(100 * (1 - c['alpha']))}% interval:",
                    format_table(rows, ("query type", "n", "difference", "interval"))]
        else:
            out += ["", f"challenger (v{challenger.version}): its evaluation ranked no champion beside it, so there is "
                        "no paired comparison."]
        out += ["", f"gate: {(challenger.tags or {}).get('rerec.gate', '-')}",
                f"report: {report_location(challenger, client)}"]
    out += ["", "act on it:"]
    if challenger is not None and (champion is None or champion.version != challenger.version):
        out.append(f"  promote the challenger:  rerec champion promote --name {name} --version {challenger.version}")
    previous = (champion.tags or {}).get(PREVIOUS_TAG) if champion is not None else None
    if previous:
        out.append(f"  roll back to v{previous}:     rerec champion rollback --name {name}")
    if len(out) and out[-1] == "act on it:":
        out.append("  nothing to do: the challenger is the champion and has no predecessor")
    if champion is not None:
        out[0] += f"  (champion (v{champion.version}), challenger (v{challenger.version if challenger else '-'}))"
    return "\n".join(out)


def promote(name: str, version: str, reason: str = "promoted by hand (rerec champion promote)") -> str | None:
    """Make ``version`` the champion; returns the champion it replaced (recorded on ``version``)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    _registered(client, name)
    try:
        with_retries(lambda: client.get_model_version(name, version), f"read version {version} of '{name}'")
    except MlflowException as exc:
        raise RerecError(f"'{name}' has no version {version}. Fix: pick a version shown by "
                         f"'rerec champion review --name {name}'.") from exc
    current = _version_by_alias(client, name, CHAMPION)
    previous = current.version if current is not None else None
    if previous == str(version):
        return previous
    with_retries(lambda: client.set_registered_model_alias(name, CHAMPION, str(version)), "move the champion alias")
    if previous:
        with_retries(lambda: client.set_model_version_tag(name, str(version), PREVIOUS_TAG, previous),
                     "record the previous champion")
    with_retries(lambda: client.set_model_version_tag(name, str(version), "rerec.gate", reason), "record the decision")
    return previous


def rollback(name: str) -> str:
    """Make the champion's predecessor the champion again; returns its version."""
    client = _client()
    _registered(client, name)
    champion = _version_by_alias(client, name, CHAMPION)
    previous = (champion.tags or {}).get(PREVIOUS_TAG) if champion is not None else None
    if not previous:
        raise RerecError(f"The champion of '{name}' records no predecessor, so there is nothing to roll back to. "
                         f"Fix: pick a version with 'rerec champion promote --name {name} --version V'.")
    with_retries(lambda: client.set_registered_model_alias(name, CHAMPION, previous), "move the champion alias")
    with_retries(lambda: client.set_model_version_tag(name, previous, "rerec.gate",
                                                      f"champion again: rolled back from v{champion.version}"),
                 "record the roll-back")
    return previous


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["review", "promote", "rollback"],
                        help="review the challenger against the champion, promote a version, or roll back")
    parser.add_argument("--name", default="rerec-recommender", help="registered model name (default: %(default)s)")
    parser.add_argument("--version", default=None, help="the version to promote (promote)")


def cli_main(args: argparse.Namespace) -> int:
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "rerec")
    if args.action == "review":
        print(review(args.name))
    elif args.action == "promote":
        if not args.version:
            raise RerecError("promote needs --version. Fix: e.g. rerec champion promote --name NAME --version 7.")
        previous = promote(args.name, args.version)
        print(f"{args.name}: version {args.version} is champion (it replaced {previous or 'no champion'}).")
    else:
        previous = rollback(args.name)
        print(f"{args.name}: version {previous} is champion again.")
    return 0
