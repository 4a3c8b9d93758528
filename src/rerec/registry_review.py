"""``rerec registry review --name NAME``: the challenger against the champion, side by side.

Shows each alias's version, run, creation time, gate metric, general retention, lineage tags and the
last gate decision, so that a person can decide before (or instead of) the automatic promotion.
"""

from __future__ import annotations

import argparse
import datetime as dt

from rerec.errors import RerecError
from rerec.registry import CHALLENGER, CHAMPION, METRIC_TAG, _client, _version_by_alias
from rerec.tracking import with_retries


def review_rows(name: str) -> list[tuple[str, str, str]]:
    """(field, champion, challenger) rows."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        with_retries(lambda: client.get_registered_model(name), f"read the registered model '{name}'")
    except MlflowException as exc:
        raise RerecError(f"The registry has no model named '{name}'. "
                         "Fix: check --name (models are registered by 'rerec register').") from exc
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


def format_table(rows: list[tuple[str, str, str]]) -> str:
    header = ("", CHAMPION, CHALLENGER)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    widths = [min(w, 60) for w in widths]
    line = lambda r: "  ".join(str(c)[:60].ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["review"], help="what to do with the registry")
    parser.add_argument("--name", default="rerec-recommender", help="registered model name (default: %(default)s)")


def cli_main(args: argparse.Namespace) -> int:
    print(f"{args.name}: champion vs challenger")
    print(format_table(review_rows(args.name)))
    return 0
