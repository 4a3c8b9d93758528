"""Validation of a dataset folder against the contracts of :mod:`rerec.data.schema`.

Every check raises :class:`rerec.errors.InputError` naming the file, the column, the first
offending row and the fix, so the CLI prints one sentence and exits non-zero (never a traceback).
:func:`rerec.data.load.load_catalog` calls these while it reads; loading writes nothing, so a bad
folder can never leave a half-written output behind.

Rows are counted from 1 over the data rows; for text files (RecBole atomic files) the message also
gives the line number in the file, the header being line 1.

Run ``python -m rerec.data.validate DIR`` to check a folder and print its table sizes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rerec.data.schema import QUERY_TYPES, SPLITS, Catalog
from rerec.errors import InputError


@dataclass(frozen=True)
class TableSource:
    """Where a table came from, for error messages: the file name and whether it is a text file
    with a header line (so row ``i`` is line ``i + 2``)."""

    file: str
    text: bool = False

    def row(self, position: int) -> str:
        """The label of the data row at 0-based ``position``."""
        if self.text:
            return f"{position + 1} (line {position + 2})"
        return str(position + 1)


# Tokens that mean "unknown" in numeric columns (MovieLens-100k writes release_year 'unkonwn').
MISSING_TOKENS = frozenset({"", "unknown", "unkonwn", "na", "n/a", "nan", "null", "none", "?"})


def _first(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def require_columns(df: pd.DataFrame, columns: Iterable[str], src: TableSource, what: str) -> None:
    """Every column of ``columns`` is present."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"the {what} table has no column '{missing[0]}' (columns found: {', '.join(map(str, df.columns)) or 'none'})",
            file=src.file,
            column=missing[0],
            fix=f"add the column '{missing[0]}' (the {what} table needs {', '.join(columns)})",
        )


def require_rows(df: pd.DataFrame, src: TableSource, what: str) -> None:
    """The table has at least one data row."""
    if len(df) == 0:
        raise InputError(
            f"the {what} table is empty (no data rows)",
            file=src.file,
            fix=f"provide at least one {what} row, or remove the file if the table is optional",
        )


def _blank(series: pd.Series) -> np.ndarray:
    """Null, or a string that is empty after stripping."""
    blank = series.isna().to_numpy().copy()
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        stripped = series.astype("str").str.strip()
        blank |= (stripped == "").fillna(True).to_numpy(dtype=bool)
    return blank


def require_no_nulls(df: pd.DataFrame, column: str, src: TableSource, what: str) -> None:
    """No null or empty value in ``column``."""
    blank = _blank(df[column])
    if blank.any():
        i = _first(blank)
        raise InputError(
            f"the {what} table has an empty {column} ({int(blank.sum())} rows are empty)",
            file=src.file,
            column=column,
            row=src.row(i),
            fix=f"fill in {column} on every row, or delete the rows without one",
        )


def require_unique(df: pd.DataFrame, column: str, src: TableSource, what: str) -> None:
    """``column`` holds each value once."""
    dup = df[column].duplicated(keep="first").to_numpy()
    if dup.any():
        i = _first(dup)
        value = df[column].iloc[i]
        first = _first((df[column] == value).to_numpy())
        raise InputError(
            f"{column} '{value}' appears more than once in the {what} table (first at row {src.row(first)}); "
            f"{int(dup.sum())} duplicate rows in all",
            file=src.file,
            column=column,
            row=src.row(i),
            fix=f"keep one row per {column}",
        )


def to_number(series: pd.Series, src: TableSource, *, integer: bool, column: str | None = None) -> pd.Series:
    """``series`` as float64 (or Int64 when ``integer``); nulls, blanks and :data:`MISSING_TOKENS`
    become null.

    Raises on the first value that is not a finite number (or not a whole number when ``integer``);
    ``column`` is the name the message gives (default: the series name).
    """
    column = column or str(series.name)
    if pd.api.types.is_bool_dtype(series):
        numbers = pd.Series(np.nan, index=series.index)
        bad = np.ones(len(series), dtype=bool)
    elif pd.api.types.is_numeric_dtype(series):
        numbers = series.astype("float64")
        bad = np.zeros(len(series), dtype=bool)
    else:
        numbers = _parse_clean_numbers(series)
        if numbers is not None:
            bad = np.zeros(len(series), dtype=bool)
        else:  # some value needs care: blanks, missing tokens, or an error to report
            blank = _blank(series) | series.astype("str").str.strip().str.lower().isin(MISSING_TOKENS).to_numpy()
            text = series.where(~blank).astype("str").str.strip()
            numbers = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = numbers.isna().to_numpy() & ~blank
    values = numbers.to_numpy()
    bad = bad | np.isinf(values)
    if integer:
        bad |= ~np.isnan(values) & (values != np.round(values))
    if bad.any():
        i = _first(bad)
        kind = "a whole number" if integer else "a number"
        raise InputError(
            f"'{series.iloc[i]}' is not {kind} ({int(bad.sum())} such rows)",
            file=src.file,
            column=column,
            row=src.row(i),
            fix=f"write {column} as {kind}, or leave it empty when unknown",
        )
    if integer:
        return numbers.round().astype("Int64")
    return numbers


def _parse_clean_numbers(series: pd.Series) -> pd.Series | None:
    """Fast path (C, no Python per row) for a column of clean numeric strings; None when any value is
    blank or not a number, so the careful path can treat or report it."""
    try:
        parsed = pc.cast(pa.array(series, type=pa.string(), from_pandas=True), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return None
    if parsed.null_count:
        return None
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=series.index, name=series.name)


def require_known(
    values: pd.Series,
    known: pd.Series | pd.Index,
    src: TableSource,
    *,
    what: str,
    target: str,
    positions: np.ndarray | None = None,
) -> None:
    """Every value of ``values`` is one of ``known`` (the ids of ``target``).

    ``positions`` maps each entry of ``values`` to its row in the file (for exploded list columns).
    """
    unknown = ~values.isin(pd.Index(known)).to_numpy()
    if unknown.any():
        i = _first(unknown)
        row = int(positions[i]) if positions is not None else i
        column = str(values.name)
        raise InputError(
            f"{what} '{values.iloc[i]}' is not in {target} ({int(unknown.sum())} references are unknown)",
            file=src.file,
            column=column,
            row=src.row(row),
            fix=f"add the missing {what}s to {target}, or remove the rows that reference them",
        )


def validate_queries(queries: pd.DataFrame, catalog: Catalog, src: TableSource, *,
                     items_file: str = "the items table", users_file: str = "the users table") -> None:
    """Query ids unique; type and split known; conditions a JSON list; positives non-empty, among the
    candidates, and every listed item (positives, candidates, history) in the items table."""
    require_rows(queries, src, "queries")
    require_no_nulls(queries, "query_id", src, "queries")
    require_unique(queries, "query_id", src, "queries")
    for column, allowed in (("type", QUERY_TYPES), ("split", SPLITS)):
        bad = ~queries[column].isin(allowed).to_numpy()
        if bad.any():
            i = _first(bad)
            raise InputError(
                f"'{queries[column].iloc[i]}' is not a known query {column}",
                file=src.file,
                column=column,
                row=src.row(i),
                fix=f"use one of {', '.join(allowed)}",
            )
    for i, value in enumerate(queries["conditions"]):
        try:
            decoded = json.loads(value) if isinstance(value, str) and value else []
        except json.JSONDecodeError as exc:
            decoded = exc
        if not isinstance(decoded, list) or not all(isinstance(c, dict) for c in decoded):
            raise InputError(
                f"conditions must be a JSON list of objects, got {str(value)[:80]!r}",
                file=src.file,
                column="conditions",
                row=src.row(i),
                fix='write conditions as JSON, e.g. [{"relation": "genre", "entity": "Comedy", "text": "a comedy"}]',
            )
    item_ids = catalog.items["item_id"]
    for column in ("positives", "candidates", "history"):
        if column not in queries.columns:
            continue
        lengths = queries[column].map(len).to_numpy()
        if column == "positives" and (lengths == 0).any():
            raise InputError(
                "the query has no positive item",
                file=src.file,
                column=column,
                row=src.row(_first(lengths == 0)),
                fix="give every query at least one positive item id",
            )
        flat = pd.Series(np.concatenate([np.asarray(v, dtype=object) for v in queries[column]] or [[]]),
                         name=column, dtype=object)
        require_known(flat, item_ids, src, what="item id", target=items_file,
                      positions=np.repeat(np.arange(len(queries)), lengths))
    outside = [not set(p) <= set(c) for p, c in zip(queries["positives"], queries["candidates"], strict=True)]
    if any(outside):
        i = outside.index(True)
        missing = sorted(set(queries["positives"].iloc[i]) - set(queries["candidates"].iloc[i]))
        raise InputError(
            f"positive item '{missing[0]}' of query '{queries['query_id'].iloc[i]}' is not among its candidates",
            file=src.file,
            column="positives",
            row=src.row(i),
            fix="include every positive item in the candidates list",
        )
    if catalog.users is not None:
        has_user = ~_blank(queries["user_id"])
        users = queries["user_id"][has_user]
        require_known(users, catalog.users["user_id"], src, what="user id", target=users_file,
                      positions=np.flatnonzero(has_user))


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", default=None,
                        help="dataset folder: parquet tables or RecBole atomic files "
                             "(default: the embedded MovieLens-100k)")


def cli_main(args: argparse.Namespace) -> int:
    from rerec.data.load import load_catalog

    catalog = load_catalog(args.input)
    print(f"{catalog.source}: valid ({catalog.meta.get('format')})")
    for name in ("items", "interactions", "item_attributes", "users", "queries"):
        table = getattr(catalog, name)
        if table is not None:
            print(f"  {name:16s} {len(table):>9,d} rows")
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    from rerec.errors import RerecError

    parser = argparse.ArgumentParser(prog="python -m rerec.data.validate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_arguments(parser)
    try:
        sys.exit(cli_main(parser.parse_args()))
    except RerecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
