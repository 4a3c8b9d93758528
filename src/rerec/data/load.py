"""Load a dataset folder into a validated :class:`rerec.data.schema.Catalog`, and save one back.

Two input formats (docs/data.md):

- parquet tables: ``items.parquet``, ``interactions.parquet``, ``item_attributes.parquet``, optional
  ``users.parquet`` and ``queries.parquet`` (a prepared data folder is one of these);
- RecBole atomic files (https://recbole.io/docs/user_guide/data/atomic_files.html): tab-separated
  with ``name:type`` headers, ``.item`` and ``.inter`` required, ``.user``, ``.kg`` and ``.link``
  optional. The item table takes ``title`` from ``movie_title`` (or ``title``), ``year`` from
  ``release_year`` (or ``year``) and ``genres`` from ``class`` (or ``genre``/``genres``) split on
  spaces; a lower-priority column of the same meaning is kept as ``<name>_unused``. The knowledge
  graph (``.kg`` head/relation/tail over entities, ``.link`` item -> entity) becomes the item-centric
  long table ``item_attributes``: Freebase triples come in both directions, so for each triple
  whichever side is linked to an item is the item and the other side the entity; duplicates are
  dropped. Triples that touch no item are dropped and counted in ``Catalog.meta``.

Both formats name relations in one vocabulary (:func:`rerec.data.schema.relation_name`, with an
optional user ``relation_map``), and both then get the named attributes ``genre`` (one row per
genre, merged both ways with any ``genre`` rows the table already has), ``year`` and ``decade``
("1990s") derived from the item table for the items that have none.

Input that is valid in spirit is normalised, never silently: re-watches (repeated user-item rows)
keep the latest, genres given as bytes or as one ``|``- or ``,``-separated string are decoded and
split, blank genres and "(no genres listed)" dropped, control characters in titles, genres, entities
and query text become a space, datetime or ISO 8601 timestamps become seconds. Every change is a
``{"key", "table", "count", "change"}`` entry of ``Catalog.meta["normalisations"]`` and a log line.

``load_catalog(None)`` is the embedded MovieLens-100k (943 users, 1,682 items, 100,000 ratings).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rerec.answer import canonical_text
from rerec.data import validate as v
from rerec.data.schema import CO_INTERACTION, NAMED_RELATIONS, REQUIRED, Catalog, relation_name
from rerec.errors import InputError
from rerec.paths import movielens_100k_dir

log = logging.getLogger(__name__)

PARQUET_FILES = {
    "items": "items.parquet",
    "interactions": "interactions.parquet",
    "item_attributes": "item_attributes.parquet",
    "users": "users.parquet",
    "queries": "queries.parquet",
}
RECBOLE_SUFFIXES = {"items": ".item", "interactions": ".inter", "users": ".user", "kg": ".kg", "link": ".link"}
# Per table, the columns holding lists of item ids (or genre names); parquet type list<string>. Other
# tables' columns of the same names (a users table's 'genres') are kept as they are.
LIST_COLUMNS = {"items": ("genres",), "queries": ("positives", "candidates", "history")}
# Known defects of the embedded MovieLens-100k as RecBole ships it, repaired only for that folder
# (user data stays strictly validated): RecBole's conversion split "(V) (1995)" of item 1412 into
# the title and the year column.
EMBEDDED_ITEM_FIXES = {
    "1412": {"movie_title": "Land Before Time III: The Time of the Great Giving (V)", "release_year": "1995"},
}
EXPECTED = (
    "parquet tables (items.parquet, interactions.parquet, item_attributes.parquet, optional "
    "users.parquet and queries.parquet) or RecBole atomic files (NAME.item, NAME.inter, optional "
    "NAME.user, NAME.kg, NAME.link)"
)


def load_catalog(path: str | os.PathLike | None = None, *, relation_map: dict[str, str] | None = None) -> Catalog:
    """Read, validate and normalise a dataset folder; ``None`` is the embedded MovieLens-100k.

    ``relation_map`` maps source relation names onto rerec's (see :func:`rerec.data.schema.relation_name`).
    What was normalised is listed in ``catalog.meta["normalisations"]``. Raises
    :class:`~rerec.errors.InputError` naming the file, column, row and fix on bad input.
    """
    folder = movielens_100k_dir() if path is None else Path(path)
    if not folder.exists():
        raise InputError("the dataset folder does not exist", file=str(folder),
                         fix=f"pass a folder holding {EXPECTED}")
    if not folder.is_dir():
        raise InputError("the dataset path is a file, not a folder", file=str(folder),
                         fix=f"pass the folder holding {EXPECTED}")
    if any(folder.glob("*.parquet")):
        catalog, files = _load_parquet(folder, relation_map)
    elif any(p.suffix in RECBOLE_SUFFIXES.values() for p in folder.iterdir()):
        embedded = path is None or folder.resolve() == movielens_100k_dir().resolve()
        catalog, files = _load_recbole(folder, relation_map, embedded=embedded)
    else:
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise InputError(f"the folder holds no dataset files (found: {', '.join(found) or 'nothing'})",
                         file=str(folder), fix=f"put in it {EXPECTED}")
    catalog.source = str(folder)
    catalog.meta.setdefault("normalisations", [])
    _add_named_attributes(catalog)
    if catalog.queries is not None:
        v.validate_queries(catalog.queries, catalog, files["queries"], items_file=files["items"].file,
                           users_file=files["users"].file)
    for name in ("items", "interactions", "item_attributes", "users", "queries"):
        table = getattr(catalog, name)
        if table is not None:
            catalog.meta[f"n_{name}"] = len(table)
    return catalog


def save_catalog(catalog: Catalog, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the catalog's tables as parquet into ``out_dir`` (created if needed); return name -> path.

    Each file is written to a temporary name and renamed into place, so no file is ever half-written;
    for an all-or-nothing folder, call this inside :func:`rerec.io.atomic_dir`. Id columns are
    ``string``, items' ``genres`` and queries' ``positives``/``candidates``/``history`` are ``list<string>``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, filename in PARQUET_FILES.items():
        table = getattr(catalog, name)
        if table is None:
            continue
        arrow = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
        arrow = arrow.cast(pa.schema([
            pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in arrow.schema
        ], metadata=arrow.schema.metadata))
        for column in LIST_COLUMNS.get(name, ()):
            if column in arrow.column_names:
                index = arrow.column_names.index(column)
                values = pa.array([list(x) for x in table[column]], type=pa.list_(pa.string()))
                arrow = arrow.set_column(index, pa.field(column, pa.list_(pa.string())), values)
        path = out_dir / filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", dir=out_dir)
        os.close(fd)
        try:
            pq.write_table(arrow, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written[name] = path
    return written


# ---------------------------------------------------------------------------------------------
# Normalising tables to the contracts (shared by both formats).
#
# What a table brings that is valid in spirit but not in the contract's form is normalised, and every
# change is recorded in ``Catalog.meta["normalisations"]`` (prepare-data copies it into stats.json and
# manifest.json) and logged: {"key", "table", "count", "change"}.

# Characters a prompt cannot show inside one line: a newline in a title would start a fake candidate line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
# Whole values that mean "no genre" (RecBole's MovieLens conversions write this one for ML-20m and later).
NO_GENRE_MARKERS = frozenset({"(no genres listed)"})
# Floats hold every whole number exactly only up to 2^53.
_EXACT_FLOAT_LIMIT = 2.0**53


def note(meta: dict, key: str, table: str, count: int, change: str) -> None:
    """Record (and log) one normalisation that touched ``count`` rows/values of ``table``."""
    if count:
        meta.setdefault("normalisations", []).append({"key": key, "table": table, "count": int(count),
                                                       "change": change})
        (log.info if key in _INFO_NOTES else log.warning)("%s: %s (%d)", table, change, count)


# Normalisations that are the format's ordinary reading rather than a repair: logged at INFO.
_INFO_NOTES = frozenset({"relations_renamed", "timestamps_from_datetimes", "timestamps_from_dates"})


def _decode(value: object, src: v.TableSource, column: str, row: int) -> object:
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"the bytes {bytes(value)[:40]!r} are not UTF-8 text", file=src.file, column=column,
                             row=src.row(row), fix=f"store {column} as UTF-8 strings") from None
    return value


def _decode_column(series: pd.Series, src: v.TableSource, column: str) -> tuple[pd.Series, int]:
    """Bytes values decoded as UTF-8; returns the column and how many values were bytes."""
    if series.dtype != object:
        return series, 0
    is_bytes = series.map(lambda x: isinstance(x, (bytes, bytearray))).to_numpy(dtype=bool)
    if not is_bytes.any():
        return series, 0
    decoded = [_decode(x, src, column, i) if b else x for i, (x, b) in enumerate(zip(series, is_bytes, strict=True))]
    return pd.Series(decoded, index=series.index, name=series.name, dtype=object), int(is_bytes.sum())


def _clean_text(series: pd.Series, table: str, column: str, meta: dict) -> pd.Series:
    """Runs of control characters (newline, tab, ...) become one space; values changed are stripped."""
    text = series.astype("str")
    has = text.str.contains(_CONTROL, regex=True).to_numpy(dtype=bool)
    if has.any():
        text = text.where(~has, text.str.replace(_CONTROL, " ", regex=True).str.strip())
        note(meta, "control_characters", table, int(has.sum()),
             f"{column}: newlines, tabs or other control characters replaced by a space "
             f"(a prompt shows each {column} on one line)")
    return text


def _canonical_titles(titles: pd.Series, table: str, column: str, meta: dict) -> pd.Series:
    """Titles in :func:`rerec.answer.canonical_text` form (NFC, no format characters), counted."""
    values = titles.tolist()
    canonical = [t if t.isascii() else canonical_text(t) for t in values]
    changed = sum(a != b for a, b in zip(values, canonical, strict=True))
    if not changed:
        return titles
    note(meta, "title_unicode", table, changed,
         f"{column}: Unicode composed (NFC) and invisible format characters (U+200B, U+200F, U+202E, ...) "
         "removed, so a look-alike title cannot name another item")
    return pd.Series(canonical, index=titles.index, name=titles.name, dtype=object).astype("str")


def _visible(text: str) -> str:
    """``text`` with invisible and combining characters written as ``\\uXXXX``, for messages."""
    import unicodedata

    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc", "Mn", "Zl", "Zp") else c
                   for c in text)


def _refuse_merged_titles(df: pd.DataFrame, raw_titles: pd.Series, src: v.TableSource, column: str) -> None:
    """Two items whose titles became one (title, year) by normalisation, though they differed as given
    ("Cafe\\u0301 Society" and "Café Society"), cannot be told apart by any answer: refused."""
    frame = pd.DataFrame({"title": df["title"].to_numpy(), "year": df["year"].fillna(-(2**62)).to_numpy("int64"),
                          "raw": raw_titles.to_numpy()})
    distinct = frame.groupby(["title", "year"], sort=False)["raw"].transform("nunique").to_numpy()
    if not (distinct > 1).any():
        return
    second = int(np.flatnonzero(distinct > 1)[0])
    key = (frame["title"].iat[second], frame["year"].iat[second])
    same = np.flatnonzero((frame["title"] == key[0]).to_numpy() & (frame["year"] == key[1]).to_numpy())
    first = int(next(i for i in same if frame["raw"].iat[i] != frame["raw"].iat[second]))
    first, second = sorted((first, second))
    year = df["year"].iat[second]
    ids = df["item_id"]
    raise InputError(
        f"items '{ids.iat[first]}' (row {src.row(first)}) and '{ids.iat[second]}' have titles that differ only by "
        f"invisible characters, Unicode composition or control characters ('{_visible(raw_titles.iat[first])}' and "
        f"'{_visible(raw_titles.iat[second])}') and become one title '{key[0]}'"
        f"{'' if pd.isna(year) else f' ({year})'}; no answer could tell them apart",
        file=src.file, column=column, row=src.row(second),
        fix="if they are one item, keep one row and point its interactions at one id; if they are two, give "
            "them titles (or years) that differ visibly")


def _require_unique_ids(df: pd.DataFrame, raw: pd.Series, column: str, src: v.TableSource, what: str) -> None:
    """``column`` unique after stripping; two ids that differed only by whitespace are named as such."""
    dup = df[column].duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((df[column] == df[column].iat[i]).to_numpy())[0])
        a, b = str(raw.iat[first]), str(raw.iat[i])
        if a != b and a.strip() == b.strip():
            raise InputError(
                f"{column} {a!r} (row {src.row(first)}) and {b!r} differ only by whitespace; ids are read without "
                f"leading and trailing whitespace, so both are '{df[column].iat[i]}' in the {what} table",
                file=src.file, column=column, row=src.row(i),
                fix=f"remove the whitespace around ids and keep one row per {column}, or give them distinct ids")
    v.require_unique(df, column, src, what)


def _ids(df: pd.DataFrame, column: str, src: v.TableSource, what: str, *, label: str | None = None) -> pd.Series:
    """Validate no nulls, then ids as str (see :func:`_id_strings`). ``label`` names the column in messages."""
    label = label or column
    v.require_no_nulls(df.rename(columns={column: label}), label, src, what)
    return _id_strings(df[column], src, label)


def _id_strings(series: pd.Series, src: v.TableSource, label: str) -> pd.Series:
    """Ids as str ("451", never "451.0"), stripped; bytes decoded.

    A float column (what parquet makes of integer ids with a gap, or what pandas writes after a join)
    must hold whole numbers below 2^53, where a float still names one integer exactly.
    """
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype="float64")
        fractional = values != np.round(values)
        if fractional.any():
            i = int(np.flatnonzero(fractional)[0])
            raise InputError(f"{label} {float(values[i])!r} is not a whole number ({int(fractional.sum())} such rows); "
                             "the column is stored as floats, so every id must be a whole number",
                             file=src.file, column=label, row=src.row(i),
                             fix=f"correct that {label}, or store ids as strings or integers")
        huge = np.abs(values) >= _EXACT_FLOAT_LIMIT
        if huge.any():
            i = int(np.flatnonzero(huge)[0])
            raise InputError(f"{label} {values[i]:.17g} is stored as a float beyond 2^53, where floats no longer "
                             f"hold every whole number, so distinct ids may have merged ({int(huge.sum())} such rows)",
                             file=src.file, column=label, row=src.row(i),
                             fix=f"store {label} as strings or 64-bit integers")
        return pd.Series(values.astype(np.int64), index=series.index).astype("str")
    series, _ = _decode_column(series, src, label)
    return series.astype("str").str.strip()


def _optional_ids(series: pd.Series, src: v.TableSource, column: str) -> pd.Series:
    """Ids where present (as :func:`_id_strings`), ``""`` where null or blank (e.g. an anonymous query)."""
    blank = v._blank(series)
    filled = series.where(~blank, 0.0 if pd.api.types.is_float_dtype(series) else "0")
    return _id_strings(filled, src, column).where(~blank, "").astype("str")


def _id_list(value: object, src: v.TableSource, column: str, row: int) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise InputError(f"{column} must be a list of item ids, got {str(value)[:60]!r}", file=src.file,
                         column=column, row=src.row(row), fix=f"write {column} as a list of strings (parquet list<string>)")
    out = []
    for x in value:
        x = _decode(x, src, column, row)
        if isinstance(x, (float, np.floating)) and float(x).is_integer() and abs(x) < _EXACT_FLOAT_LIMIT:
            x = int(x)
        out.append(str(x).strip())
    return out


def _genres(series: pd.Series, src: v.TableSource, sep: str | None, table: str, meta: dict) -> list[list[str]]:
    """Genre lists from lists, or from strings split on ``sep``.

    ``sep="auto"`` (parquet): strings are split on ``|`` where any value holds one, else on ``,`` where
    any holds one, else each string is one genre. Bytes are decoded; blank genres, repeats within an
    item and :data:`NO_GENRE_MARKERS` are dropped; control characters become spaces. Counts of each
    change go to ``meta``.
    """
    column = str(series.name)
    values = series.tolist()
    counts = {"bytes": 0, "blank": 0, "marker": 0, "repeat": 0, "control": 0}
    if sep == "auto":
        strings = [x.decode("utf-8", "replace") if isinstance(x, (bytes, bytearray)) else x for x in values]
        strings = [x for x in strings if isinstance(x, str)]
        sep = "|" if any("|" in x for x in strings) else ("," if any("," in x for x in strings) else None)
        if sep == ",":
            note(meta, "genres_split_on_comma", table, sum("," in x for x in strings),
                 f"{column} given as one comma-separated string per item: split on ','")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, (bytes, bytearray)):
            counts["bytes"] += 1
            value = _decode(value, src, column, i)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            parts: list = []
        elif isinstance(value, str):
            if value.strip() in NO_GENRE_MARKERS:
                counts["marker"] += 1
                parts = []
            else:
                parts = value.split(sep) if sep else [value]
        elif isinstance(value, (list, tuple, np.ndarray)):
            parts = []
            for g in value:
                if isinstance(g, (bytes, bytearray)):
                    counts["bytes"] += 1
                    g = _decode(g, src, column, i)
                if g is not None and not isinstance(g, str):
                    raise InputError(f"{column} must hold strings, got {g!r}", file=src.file, column=column,
                                     row=src.row(i), fix=f"write {column} as a list of strings (parquet list<string>)")
                parts.append(g)
        else:
            raise InputError(f"{column} must be a list of strings, got {value!r}", file=src.file,
                             column=column, row=src.row(i),
                             fix=f"write {column} as a list of strings (parquet list<string>)")
        genres: list[str] = []
        for g in parts:
            if g is None or not g.strip():
                counts["blank"] += 1
                continue
            if g.strip() in NO_GENRE_MARKERS:
                counts["marker"] += 1
                continue
            cleaned = _CONTROL.sub(" ", g).strip()
            counts["control"] += cleaned != g.strip()
            if cleaned in genres:
                counts["repeat"] += 1
                continue
            genres.append(cleaned)
        out.append(genres)
    changes = {
        "bytes": ("bytes_decoded", f"{column}: bytes decoded as UTF-8"),
        "blank": ("blank_genres_dropped", f"{column}: empty genre strings dropped"),
        "marker": ("no_genre_marker", f"{column}: '(no genres listed)' read as no genre"),
        "repeat": ("repeated_genres_dropped", f"{column}: a genre repeated within an item kept once"),
        "control": ("control_characters", f"{column}: control characters in genre names replaced by a space"),
    }
    for name, (key, change) in changes.items():
        note(meta, key, table, counts[name], change)
    return out


def _normalise_items(df: pd.DataFrame, src: v.TableSource, genre_sep: str | None, meta: dict,
                     names: dict[str, str] | None = None) -> pd.DataFrame:
    """``names`` maps contract column -> the column's name in the file, for messages."""
    names = names or {}
    table = Path(src.file).name
    v.require_columns(df, REQUIRED["items"], src, "items")
    v.require_rows(df, src, "items")
    df = df.copy()
    raw_ids = df["item_id"]
    df["item_id"] = _ids(df, "item_id", src, "items")
    _require_unique_ids(df, raw_ids, "item_id", src, "items")
    title = names.get("title", "title")
    df["title"], decoded = _decode_column(df["title"], src, title)
    note(meta, "bytes_decoded", table, decoded, f"{title}: bytes decoded as UTF-8")
    v.require_no_nulls(df.rename(columns={"title": title}), title, src, "items")
    df["year"] = (v.to_number(df["year"], src, integer=True, column=names.get("year"))
                  if "year" in df else pd.array([pd.NA] * len(df), "Int64"))
    v.require_years(df["year"], src, names.get("year", "year"))
    raw_titles = df["title"].astype("str")
    df["title"] = _canonical_titles(_clean_text(df["title"], table, title, meta), table, title, meta)
    _refuse_merged_titles(df, raw_titles, src, title)
    df["genres"] = (_genres(df["genres"].rename(names.get("genres", "genres")), src, genre_sep, table, meta)
                    if "genres" in df else [[] for _ in range(len(df))])
    rest = [c for c in df.columns if c not in ("item_id", "title", "year", "genres")]
    return df[["item_id", "title", "year", "genres", *rest]]


def _normalise_interactions(df: pd.DataFrame, src: v.TableSource, meta: dict) -> pd.DataFrame:
    """Ids as str, rating float, timestamp Int64 seconds; one row per (user_id, item_id): the latest."""
    table = Path(src.file).name
    v.require_columns(df, REQUIRED["interactions"], src, "interactions")
    v.require_rows(df, src, "interactions")
    df = df.copy()
    df["user_id"] = _ids(df, "user_id", src, "interactions")
    df["item_id"] = _ids(df, "item_id", src, "interactions")
    df["rating"] = v.to_number(df["rating"], src, integer=False) if "rating" in df else np.nan
    if "timestamp" in df:
        df["timestamp"], how = v.to_timestamp(df["timestamp"], src)
        if how == "datetimes":
            note(meta, "timestamps_from_datetimes", table, int(df["timestamp"].notna().sum()),
                 "timestamp: a datetime column, stored as seconds since 1970 (UTC)")
        elif how == "dates":
            note(meta, "timestamps_from_dates", table, int(df["timestamp"].notna().sum()),
                 "timestamp: ISO 8601 dates, stored as seconds since 1970 (UTC; dates without a zone read as UTC)")
    else:
        df["timestamp"] = pd.array([pd.NA] * len(df), "Int64")
    repeated = df.duplicated(["user_id", "item_id"], keep=False).to_numpy()
    if repeated.any():
        # keep the latest interaction of each (user, item); ties and missing timestamps: the last row
        order = np.lexsort((np.arange(len(df)), df["timestamp"].fillna(np.iinfo(np.int64).min).to_numpy(np.int64)))
        latest = df.iloc[order].drop_duplicates(["user_id", "item_id"], keep="last").index
        n_before = len(df)
        df = df.loc[df.index.isin(latest)].reset_index(drop=True)
        note(meta, "duplicate_interactions", table, n_before - len(df),
             "repeated (user_id, item_id) rows (re-watches) dropped: the latest of each pair is kept, so a "
             "history never lists an item twice")
    rest = [c for c in df.columns if c not in ("user_id", "item_id", "rating", "timestamp")]
    return df[["user_id", "item_id", "rating", "timestamp", *rest]]


def _normalise_users(df: pd.DataFrame, src: v.TableSource) -> pd.DataFrame:
    """``user_id`` as str and unique; every other column is kept as it is (demographics)."""
    v.require_columns(df, REQUIRED["users"], src, "users")
    v.require_rows(df, src, "users")
    df = df.copy()
    raw_ids = df["user_id"]
    df["user_id"] = _ids(df, "user_id", src, "users")
    _require_unique_ids(df, raw_ids, "user_id", src, "users")
    return df[["user_id", *[c for c in df.columns if c != "user_id"]]]


def _rename_relations(attributes: pd.DataFrame, relation_map: dict[str, str] | None, table: str,
                      meta: dict, src_file: str) -> pd.DataFrame:
    """Relations into rerec's vocabulary (:func:`rerec.data.schema.relation_name`), per distinct name."""
    relation_map = relation_map or {}
    present = set(attributes["relation"].unique())
    unused = sorted(k for k in relation_map if k not in present
                    and k not in {relation_name(r) for r in present})
    if unused:
        raise InputError(f"--relation-map names relation(s) {', '.join(unused)} that the attribute table does not "
                         f"have (it has: {', '.join(sorted(present)[:20]) or 'none'})", file=src_file,
                         column="relation", fix="map relations that the table has, spelled as it spells them")
    names = {r: relation_name(r, relation_map) for r in present}
    if CO_INTERACTION in names.values():
        raise InputError(f"the relation '{CO_INTERACTION}' is reserved for interest queries", file=src_file,
                         column="relation", fix=f"rename it, e.g. with --relation-map {CO_INTERACTION}=co_watched")
    renamed = {r: n for r, n in names.items() if r != n}
    if renamed:
        attributes = attributes.assign(relation=attributes["relation"].map(names).astype("str"))
        n_rows = int(attributes["relation"].size - (attributes["relation"].isin(present - set(renamed))).sum())
        shown = ", ".join(f"{r} -> {n}" for r, n in sorted(renamed.items())[:6])
        note(meta, "relations_renamed", table, n_rows,
             f"relation names mapped into rerec's vocabulary ({len(renamed)} names: {shown}"
             f"{', ...' if len(renamed) > 6 else ''})")
        meta["relations_renamed"] = dict(sorted(renamed.items()))
    return attributes


def _normalise_attributes(df: pd.DataFrame, src: v.TableSource, meta: dict,
                          relation_map: dict[str, str] | None = None) -> pd.DataFrame:
    table = Path(src.file).name
    v.require_columns(df, REQUIRED["item_attributes"], src, "item_attributes")
    df = df.copy()
    for column in ("item_id", "relation", "entity"):
        df[column] = _ids(df, column, src, "item_attributes")
        if column != "item_id":
            df[column] = _clean_text(df[column], table, column, meta)
    df = _rename_relations(df, relation_map, table, meta, src.file)
    return df[["item_id", "relation", "entity"]].drop_duplicates(ignore_index=True)


def _normalise_queries(df: pd.DataFrame, src: v.TableSource, meta: dict) -> pd.DataFrame:
    table = Path(src.file).name
    v.require_columns(df, REQUIRED["queries"], src, "queries")
    df = df.copy()
    for column in ("query_id", "type", "split", "text", "conditions"):
        df[column], _ = _decode_column(df[column], src, column)
        v.require_no_nulls(df, column, src, "queries")
        df[column] = df[column].astype("str")
    df["query_id"] = _ids(df, "query_id", src, "queries")
    df["user_id"] = _optional_ids(df["user_id"], src, "user_id")
    df["text"] = _clean_text(df["text"], table, "text", meta)
    for column in ("positives", "candidates", "history"):
        if column in df:
            df[column] = [_id_list(x, src, column, i) for i, x in enumerate(df[column])]
    if "n_conditions" in df:
        df["n_conditions"] = v.to_number(df["n_conditions"], src, integer=True)
    return df


def _check_references(catalog: Catalog, files: dict[str, v.TableSource]) -> None:
    items = catalog.items["item_id"]
    inter = catalog.interactions
    v.require_known(inter["item_id"], items, files["interactions"], what="item id", target=files["items"].file)
    if catalog.users is not None:
        v.require_known(inter["user_id"], catalog.users["user_id"], files["interactions"],
                        what="user id", target=files["users"].file)


# ---------------------------------------------------------------------------------------------
# Parquet folders.


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas().reset_index(drop=True)
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise InputError(f"the file cannot be read as parquet ({str(exc).splitlines()[0][:200]})",
                         file=str(path), fix="rewrite it with pandas.DataFrame.to_parquet or pyarrow") from None


def _load_parquet(folder: Path, relation_map: dict[str, str] | None) -> tuple[Catalog, dict[str, v.TableSource]]:
    files = {name: v.TableSource(str(folder / filename)) for name, filename in PARQUET_FILES.items()}
    for name in ("items", "interactions", "item_attributes"):
        if not (folder / PARQUET_FILES[name]).is_file():
            raise InputError(f"the required table {PARQUET_FILES[name]} is missing", file=str(folder),
                             fix=f"a parquet dataset folder holds {EXPECTED.split(' or ')[0]}")
    raw = {name: _read_parquet(folder / fn) for name, fn in PARQUET_FILES.items() if (folder / fn).is_file()}
    meta: dict = {"format": "parquet", "normalisations": []}
    items = _normalise_items(raw["items"], files["items"], "auto", meta)
    interactions = _normalise_interactions(raw["interactions"], files["interactions"], meta)
    users = _normalise_users(raw["users"], files["users"]) if "users" in raw else None
    attributes = _normalise_attributes(raw["item_attributes"], files["item_attributes"], meta, relation_map)
    v.require_known(attributes["item_id"], items["item_id"], files["item_attributes"],
                    what="item id", target=files["items"].file)
    queries = _normalise_queries(raw["queries"], files["queries"], meta) if "queries" in raw else None
    catalog = Catalog(items, interactions, attributes, users, queries, meta=meta)
    _check_references(catalog, files)
    return catalog, files


# ---------------------------------------------------------------------------------------------
# RecBole atomic files.


def _read_atomic(path: Path) -> tuple[pd.DataFrame, v.TableSource]:
    """A RecBole atomic file as a frame of str columns named without their ``:type`` suffix."""
    src = v.TableSource(str(path), text=True)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"the file cannot be read ({exc.strerror or exc})", file=str(path),
                         fix="check that the file exists and is readable") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            file=str(path), row=f"{line - 1} (line {line})",
            fix="re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
        ) from None
    header = text.split("\n", 1)[0].rstrip("\r")
    if not header.strip():
        raise InputError("the file is empty or has no header line", file=str(path),
                         fix="start the file with a tab-separated header of name:type fields, e.g. item_id:token")
    names = [h.split(":", 1)[0].strip() for h in header.split("\t")]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"the header names column '{dup}' twice", file=str(path), column=dup,
                         fix="give every column a distinct name")
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", header=0, names=names, dtype=str,
                         keep_default_na=False, quoting=csv.QUOTE_NONE, engine="c")
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found is None:
            raise InputError(f"the file is not a tab-separated table ({' '.join(str(exc).split())})",
                             file=str(path), fix="give every line as many tab-separated fields as the header") from None
        expected, line, saw = map(int, found.groups())
        raise InputError(f"the line has {saw} tab-separated fields, the header {len(names)}", file=str(path),
                         row=src.row(line - 2),
                         fix="give every line as many tab-separated fields as the header "
                             "(a tab inside a value splits it)") from None
    return df.reset_index(drop=True), src


def _pick(df: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in df.columns), None)


def _load_recbole(folder: Path, relation_map: dict[str, str] | None,
                  embedded: bool = False) -> tuple[Catalog, dict[str, v.TableSource]]:
    found: dict[str, Path] = {}
    for kind, suffix in RECBOLE_SUFFIXES.items():
        paths = sorted(folder.glob(f"*{suffix}"))
        if len(paths) > 1:
            raise InputError(f"several {suffix} files ({', '.join(p.name for p in paths)})", file=str(folder),
                             fix=f"keep one {suffix} file per dataset folder")
        if paths:
            found[kind] = paths[0]
    for kind in ("items", "interactions"):
        if kind not in found:
            raise InputError(f"no {RECBOLE_SUFFIXES[kind]} file", file=str(folder),
                             fix=f"a RecBole dataset folder holds {EXPECTED.split(' or ')[1]}")
    raw, files = {}, {}
    for kind, path in found.items():
        raw[kind], files[kind] = _read_atomic(path)

    item_df = raw["items"]
    meta = {"format": "recbole", "files": {k: p.name for k, p in found.items()}, "fixes": [], "normalisations": []}
    if embedded:
        for item_id, fix in EMBEDDED_ITEM_FIXES.items():
            rows = item_df.index[item_df["item_id"] == item_id]
            for column, value in fix.items():
                if column in item_df and len(rows):
                    item_df.loc[rows, column] = value
                    meta["fixes"].append(f"item {item_id}: {column} = {value!r}")
    renames = {}
    for target, names in RECBOLE_ITEM_COLUMNS.items():
        column = _pick(item_df, names)
        if column is None:
            continue
        if column != target:
            renames[column] = target
        # a lower-priority column of the same meaning stays, under another name, as an extra column
        for other in names:
            if other != column and other in item_df.columns:
                renames[other] = f"{other}_unused"
                note(meta, "shadowed_columns", found["items"].name, len(item_df),
                     f"both '{column}' and '{other}' present: {target} read from '{column}', "
                     f"'{other}' kept as '{other}_unused'")
    items = _normalise_items(item_df.rename(columns=renames), files["items"], " ", meta,
                             names={target: column for column, target in renames.items() if target in REQUIRED_ITEM})
    interactions = _normalise_interactions(raw["interactions"], files["interactions"], meta)
    users = _normalise_users(raw["users"], files["users"]) if "users" in raw else None

    if "kg" in raw:
        if "link" not in raw:
            raise InputError("a knowledge graph (.kg) comes without its .link file", file=str(found["kg"]),
                             fix="add the .link file that maps item_id to entity_id, or remove the .kg file")
        link = raw["link"]
        if embedded:
            link = _realign_embedded_links(link, found["link"].name, meta)
        attributes = _kg_attributes(raw["kg"], files["kg"], link, files["link"], items, files["items"], meta,
                                    relation_map)
    else:
        attributes = pd.DataFrame({c: pd.Series([], dtype="str") for c in ("item_id", "relation", "entity")})
        if relation_map:
            raise InputError("--relation-map was given but the folder has no knowledge graph (.kg) to map",
                             file=str(folder), fix="drop --relation-map, or add the .kg and .link files")
    catalog = Catalog(items, interactions, attributes, users, None, meta=meta)
    _check_references(catalog, files)
    return catalog, files


def _realign_embedded_links(link: pd.DataFrame, table: str, meta: dict) -> pd.DataFrame:
    """The embedded link file is keyed by MovieLens global ids: onto ML-100k ids, counted (docs/data.md)."""
    from rerec.data.embedded import realign_links

    link = link.assign(item_id=link["item_id"].str.strip())
    realigned, counts = realign_links(link)
    note(meta, "kg_links_realigned", table, counts["links"],
         f"the embedded link file is keyed by MovieLens global movie ids: {counts['aligned']} links moved onto the "
         f"ML-100k film of the same title and year ({counts['items_linked']} items), {counts['dropped']} that "
         "could not be aligned dropped")
    meta["kg_links"] = counts
    return realigned


# RecBole item columns read as the contract's: contract name -> file names, first found wins.
RECBOLE_ITEM_COLUMNS = {"title": ("movie_title", "title", "name"), "year": ("release_year", "year"),
                        "genres": ("class", "genres", "genre")}
REQUIRED_ITEM = frozenset(RECBOLE_ITEM_COLUMNS)


def _kg_attributes(kg: pd.DataFrame, kg_src: v.TableSource, link: pd.DataFrame, link_src: v.TableSource,
                   items: pd.DataFrame, items_src: v.TableSource, meta: dict,
                   relation_map: dict[str, str] | None = None) -> pd.DataFrame:
    v.require_columns(link, ["item_id", "entity_id"], link_src, "link")
    for column in ("item_id", "entity_id"):
        v.require_no_nulls(link, column, link_src, "link")
    link = link.assign(item_id=link["item_id"].str.strip(), entity_id=link["entity_id"].str.strip())
    v.require_known(link["item_id"], items["item_id"], link_src, what="item id", target=items_src.file)
    v.require_columns(kg, ["head_id", "relation_id", "tail_id"], kg_src, "knowledge graph")
    for column in ("head_id", "relation_id", "tail_id"):
        v.require_no_nulls(kg, column, kg_src, "knowledge graph")
    kg = kg[["head_id", "relation_id", "tail_id"]]
    entity_to_item = link[["entity_id", "item_id"]]
    # Freebase triples come in both directions: the side linked to an item is the item.
    by_head = kg.merge(entity_to_item, left_on="head_id", right_on="entity_id")
    head_linked = kg["head_id"].isin(link["entity_id"])
    by_tail = kg[~head_linked].merge(entity_to_item, left_on="tail_id", right_on="entity_id")
    attributes = pd.concat([
        pd.DataFrame({"item_id": by_head["item_id"], "relation": by_head["relation_id"], "entity": by_head["tail_id"]}),
        pd.DataFrame({"item_id": by_tail["item_id"], "relation": by_tail["relation_id"], "entity": by_tail["head_id"]}),
    ], ignore_index=True).astype("str")
    attributes = _rename_relations(attributes, relation_map, Path(kg_src.file).name, meta, kg_src.file)
    attributes = attributes.drop_duplicates(ignore_index=True).astype("str")
    linked = head_linked | kg["tail_id"].isin(link["entity_id"])
    # facts between two catalog items (sequel, prequel ...), for the graph's consistency check
    both = by_head.merge(entity_to_item.rename(columns={"entity_id": "tail_id", "item_id": "other_item_id"}),
                         on="tail_id")
    meta["kg_item_pairs"] = pd.DataFrame({
        "item_id": both["item_id"].astype("str"), "other_item_id": both["other_item_id"].astype("str"),
        "relation": both["relation_id"].map(lambda r: relation_name(r, relation_map)).astype("str")})
    meta.update(kg_triples=len(kg), kg_triples_dropped=int((~linked).sum()), kg_attribute_rows=len(attributes))
    return attributes


# ---------------------------------------------------------------------------------------------
# Named attributes derived from the item table.


def _add_named_attributes(catalog: Catalog) -> None:
    """``genre``, ``year`` and ``decade`` rows from the item table, merged with any already in
    ``item_attributes``: genres both ways (an item's genres are the union of ``items.genres`` and its
    ``genre`` rows, in both tables), year and decade for the items that have no such row."""
    items, attributes, meta = catalog.items, catalog.item_attributes, catalog.meta
    present = set(attributes["relation"].unique())
    parts = [attributes]

    item_genres = items[["item_id", "genres"]].explode("genres").dropna(subset=["genres"])
    item_genres = pd.DataFrame({"item_id": item_genres["item_id"].astype("str"),
                                "entity": item_genres["genres"].astype("str")})
    attr_genres = attributes.loc[attributes["relation"] == "genre", ["item_id", "entity"]]
    new_rows = item_genres.merge(attr_genres, how="left", indicator=True)
    new_rows = new_rows[new_rows["_merge"] == "left_only"]
    parts.append(pd.DataFrame({"item_id": new_rows["item_id"], "relation": "genre", "entity": new_rows["entity"]}))
    if len(attr_genres):
        extra = attr_genres.merge(item_genres, how="left", indicator=True)
        extra = extra[extra["_merge"] == "left_only"].drop_duplicates(["item_id", "entity"])
        if len(extra):
            more = extra.groupby("item_id", sort=False)["entity"].agg(list).to_dict()
            items["genres"] = [list(g) + more.get(i, []) for i, g in zip(items["item_id"], items["genres"], strict=True)]
        if len(new_rows) or len(extra):
            note(meta, "genres_merged", "item_attributes", len(new_rows) + len(extra),
                 f"item_attributes held {len(attr_genres)} genre rows and items.genres {len(item_genres)} genres: "
                 f"merged both ways ({len(new_rows)} rows added to item_attributes from items.genres, {len(extra)} "
                 "genres added to items.genres from item_attributes)")

    dated = items[items["year"].notna()]
    years = pd.DataFrame({"item_id": dated["item_id"], "relation": "year",
                          "entity": dated["year"].astype("int64").astype("str")})
    decades = pd.DataFrame({"item_id": dated["item_id"], "relation": "decade",
                            "entity": (dated["year"].astype("int64") // 10 * 10).astype("str") + "s"})
    for relation, derived in (("year", years), ("decade", decades)):
        have = set(attributes.loc[attributes["relation"] == relation, "item_id"])
        missing = derived[~derived["item_id"].isin(have)]
        parts.append(missing)
        if have and len(missing):
            note(meta, f"{relation}_merged", "item_attributes", len(missing),
                 f"item_attributes held {relation} rows for {len(have)} items: {relation} derived from items.year "
                 "for the items without one")
    derived = sum(len(p) for p in parts[1:])
    if derived:
        catalog.item_attributes = (pd.concat(parts, ignore_index=True).astype("str")
                                   .drop_duplicates(ignore_index=True))
    meta["derived_attribute_rows"] = derived
    meta["named_relations"] = [r for r in NAMED_RELATIONS if r not in present]
