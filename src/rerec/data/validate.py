"""Validation of a dataset folder against the contracts of :mod:`rerec.data.schema`.

Every check raises :class:`rerec.errors.InputError` naming the file, the column, the first
offending row and the fix, so the CLI prints one sentence and exits non-zero (never a traceback).
:func:`rerec.data.load.load_catalog` calls these while it reads; loading writes nothing, so a bad
folder can never leave a half-written output behind.

Rows are counted from 1 over the data rows; for text files (RecBole atomic files) the message also
gives the line number in the file, the header being line 1.

``rerec validate-data DIR`` (:mod:`rerec.data.validate_cli`) checks a folder and prints its table sizes.
"""

from __future__ import annotations

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


# Whole numbers are stored as int64; a float at or beyond 2^63 has no int64 value.
_INT64_LIMIT = 2.0**63


def to_number(series: pd.Series, src: TableSource, *, integer: bool, column: str | None = None,
              fix: str | None = None) -> pd.Series:
    """``series`` as float64 (or Int64 when ``integer``); nulls, blanks and :data:`MISSING_TOKENS`
    become null.

    Raises on the first value that is not a finite number (or, when ``integer``, not a whole number
    or beyond the int64 range); ``column`` is the name the message gives (default: the series name),
    ``fix`` replaces the default advice.
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
    kind = "a whole number" if integer else "a number"
    if integer:
        finite = ~np.isnan(values) & ~np.isinf(values)
        too_big = finite & (np.abs(values) >= _INT64_LIMIT)
        bad |= too_big | (finite & (values != np.round(values)))
    if bad.any():
        i = _first(bad)
        reason = (f"is too large for {kind} (beyond the 64-bit range)" if integer and too_big[i]
                  else f"is not {kind}")
        raise InputError(
            f"'{series.iloc[i]}' {reason} ({int(bad.sum())} such rows)",
            file=src.file,
            column=column,
            row=src.row(i),
            fix=fix or f"write {column} as {kind}, or leave it empty when unknown",
        )
    if integer:
        return numbers.round().astype("Int64")
    return numbers


# A year is a calendar year of four digits: beyond these it is a typo, another unit or a code for
# "unknown" (Book-Crossing writes 0), and requests state it ("from 1995", "from the 1990s").
YEAR_RANGE = (1000, 2999)


def require_years(years: pd.Series, src: TableSource, column: str = "year") -> None:
    """Every known year within :data:`YEAR_RANGE`."""
    low, high = YEAR_RANGE
    values = years.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isnan(values) & ((values < low) | (values > high))
    if bad.any():
        i = _first(bad)
        raise InputError(
            f"year {int(values[i])} is not a four-digit calendar year ({low}-{high}; {int(bad.sum())} such rows)",
            file=src.file, column=column, row=src.row(i),
            fix=f"correct it, or leave {column} empty where the year is unknown (0 or 9999 for 'unknown' included)")


TIMESTAMP_FIX = ("write timestamp as seconds since 1970 (a whole number), a parquet timestamp or an ISO 8601 "
                 "date like 2024-05-01T12:00:00, or leave it empty when unknown")


def to_timestamp(series: pd.Series, src: TableSource, column: str = "timestamp") -> tuple[pd.Series, str | None]:
    """Timestamps as Int64 seconds since 1970 (UTC), and how they were read: ``None`` (numbers),
    ``"datetimes"`` (a native datetime column) or ``"dates"`` (ISO 8601 strings; a date without a
    zone is taken as UTC).

    Numbers are kept as given (any unit; only their order matters). A column that is neither numbers
    nor dates raises on its first bad value, naming it.
    """
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
        seconds = (stamps - epoch) // pd.Timedelta(seconds=1)
        return seconds.astype("Int64"), "datetimes"
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return to_number(series, src, integer=True, column=column, fix=TIMESTAMP_FIX), None
    if _parse_clean_numbers(series) is None:
        blank = _blank(series) | series.astype("str").str.strip().str.lower().isin(MISSING_TOKENS).to_numpy()
        text = series.where(~blank).astype("str").str.strip()
        if pd.to_numeric(text[~blank], errors="coerce").isna().all() and (~blank).any():
            try:
                dates = pd.to_datetime(text[~blank], errors="coerce", utc=True, format="ISO8601")
            except (ValueError, TypeError):
                dates = None
            if dates is not None and dates.notna().all():
                seconds = pd.Series(pd.NA, index=series.index, dtype="Int64")
                seconds[~blank] = ((dates - epoch) // pd.Timedelta(seconds=1)).astype("int64")
                return seconds, "dates"
            if dates is not None and dates.notna().any():  # a column of dates with a bad one
                i = int(np.flatnonzero(~blank)[_first(dates.isna().to_numpy())])
                raise InputError(f"'{series.iloc[i]}' is not an ISO 8601 date ({int(dates.isna().sum())} such "
                                 "rows; the others are dates)", file=src.file, column=column, row=src.row(i),
                                 fix=TIMESTAMP_FIX)
    return to_number(series, src, integer=True, column=column, fix=TIMESTAMP_FIX), None


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
    """Query ids unique; type and split known; text non-empty; conditions a JSON list of objects each
    with a ``relation`` and an ``entity`` (``via`` and ``false_premise.item_id`` known items); positives
    non-empty, among the candidates and meeting every condition they state (``co_interaction``
    excepted: it is no attribute); at least 2 distinct candidates, one of them a negative; a history
    holding none of the query's candidates (its positives included); every listed item (positives,
    candidates, history) in the items table."""
    require_rows(queries, src, "queries")
    require_no_nulls(queries, "query_id", src, "queries")
    require_unique(queries, "query_id", src, "queries")
    require_no_nulls(queries, "text", src, "queries")
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
    item_ids = catalog.items["item_id"]
    decoded_conditions = [_conditions(value, src, i) for i, value in enumerate(queries["conditions"])]
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
    query_ids = queries["query_id"].tolist()
    for column in ("positives", "candidates"):
        for i, listed in enumerate(queries[column]):
            if len(set(listed)) != len(listed):
                repeated = next(x for x in listed if list(listed).count(x) > 1)
                raise InputError(f"item '{repeated}' appears more than once in the {column} of query '{query_ids[i]}'",
                                 file=src.file, column=column, row=src.row(i), fix=f"list each item once in {column}")
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
    for i, (positives, candidates) in enumerate(zip(queries["positives"], queries["candidates"], strict=True)):
        if len(candidates) < 2 or len(candidates) == len(positives):
            raise InputError(f"query '{query_ids[i]}' has {len(candidates)} candidate(s), {len(positives)} of them "
                             "positive; a query needs at least 2 candidates, one of them a negative",
                             file=src.file, column="candidates", row=src.row(i),
                             fix="add negatives (items that do not answer the request) to the candidates")
    _check_history(queries, src)
    _check_conditions(queries, decoded_conditions, catalog, src, items_file)
    if catalog.users is not None:
        has_user = ~_blank(queries["user_id"])
        users = queries["user_id"][has_user]
        require_known(users, catalog.users["user_id"], src, what="user id", target=users_file,
                      positions=np.flatnonzero(has_user))


def require_pipeline_splits(queries: pd.DataFrame, file: str) -> None:
    """Queries a user brings have a train, a val and a test query: sft-warmup and rft train on train and
    choose checkpoints on val, evaluate reports on test. Refused here rather than stages later."""
    counts = {s: int((queries["split"] == s).sum()) for s in SPLITS}
    missing = [s for s in SPLITS if not counts[s]]
    if missing:
        shown = ", ".join(f"{n:,} {s}" for s, n in counts.items())
        raise InputError(
            f"the queries have no {' and no '.join(missing)} split ({shown}); training needs train and val "
            "queries and the report test queries", file=file, column="split",
            fix="set split to 'val' on some queries and 'test' on others in your queries table (e.g. 10% each, "
                "all queries of one (user, positive) pair in one split), or remove the queries table to have "
                "prepare-data generate and split queries (--train-fraction/--val-fraction/--test-fraction)")


CONDITIONS_EXAMPLE = '[{"relation": "genre", "entity": "Comedy", "text": "a comedy"}]'


def _conditions(value: object, src: TableSource, i: int) -> list[dict]:
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
            fix=f"write conditions as JSON, e.g. {CONDITIONS_EXAMPLE}",
        )
    return decoded


def _check_history(queries: pd.DataFrame, src: TableSource) -> None:
    """A query's history (what the prompt says the user watched) holds none of its positives (the answer
    would be in the request) and none of its candidates (an item shown as watched and as a recommendation)."""
    if "history" not in queries.columns:
        return
    query_ids = queries["query_id"].tolist()
    for i, (history, positives, candidates) in enumerate(
            zip(queries["history"], queries["positives"], queries["candidates"], strict=True)):
        if not len(history):
            continue
        seen = set(history)
        answer = [p for p in positives if p in seen]
        if answer:
            raise InputError(
                f"the history of query '{query_ids[i]}' holds its positive item '{answer[0]}': the prompt would list "
                "the answer among the items the user watched", file=src.file, column="history", row=src.row(i),
                fix="remove the positive from that history (a history lists what the user had seen before the "
                    "request), or use another positive")
        shown = [c for c in candidates if c in seen]
        if shown:
            raise InputError(
                f"the history of query '{query_ids[i]}' holds its candidate '{shown[0]}': the prompt would show it as "
                "watched and as a recommendation", file=src.file, column="history", row=src.row(i),
                fix="remove it from the history or from the candidates (a negative is an item the user has not "
                    "interacted with)")


def _check_conditions(queries: pd.DataFrame, decoded: list[list[dict]], catalog: Catalog, src: TableSource,
                      items_file: str) -> None:
    """Every condition names a relation and an entity, the items it names exist, and every positive
    meets it (a ``co_interaction`` condition is a statement about users, not an attribute)."""
    from rerec.data.schema import CO_INTERACTION

    attrs = catalog.item_attributes
    pairs = set(zip(attrs["item_id"], attrs["relation"], attrs["entity"], strict=True))
    known = set(catalog.items["item_id"])
    query_ids = queries["query_id"].tolist()
    for i, (conditions, positives) in enumerate(zip(decoded, queries["positives"], strict=True)):
        for k, cond in enumerate(conditions, start=1):
            where = f"condition {k} of query '{query_ids[i]}'"
            for key in ("relation", "entity"):
                if not isinstance(cond.get(key), str) or not cond[key].strip():
                    raise InputError(f"{where} has no '{key}' (a non-empty string), got {json.dumps(cond)[:80]}",
                                     file=src.file, column="conditions", row=src.row(i),
                                     fix=f"give every condition a relation and an entity, e.g. {CONDITIONS_EXAMPLE}")
            if "text" in cond and not isinstance(cond["text"], str):
                raise InputError(f"{where} has a 'text' that is not a string", file=src.file, column="conditions",
                                 row=src.row(i), fix="write the condition's text as a string, or leave it out")
            premise = cond.get("false_premise")
            if premise is not None and not isinstance(premise, dict):
                raise InputError(f"{where} has a 'false_premise' that is not an object", file=src.file,
                                 column="conditions", row=src.row(i),
                                 fix='write it as {"item_id": "...", "text": "..."}')
            named = ([("via", cond["via"])] if "via" in cond else []) + (
                [("false_premise.item_id", premise.get("item_id"))] if premise is not None else [])
            for name, item in named:
                if str(item) not in known:
                    raise InputError(f"{where}: {name} '{item}' is not in {items_file}", file=src.file,
                                     column="conditions", row=src.row(i),
                                     fix=f"name an item of {items_file} in {name}")
            if cond["relation"] == CO_INTERACTION:
                continue
            for positive in positives:
                if (positive, cond["relation"], cond["entity"]) not in pairs:
                    raise InputError(
                        f"positive item '{positive}' of query '{query_ids[i]}' does not meet its condition "
                        f"{cond['relation']} = '{cond['entity']}' (item_attributes has no such row for it)",
                        file=src.file, column="conditions", row=src.row(i),
                        fix="correct the condition or the positive: a positive has every (relation, entity) "
                            "its query's conditions state")
