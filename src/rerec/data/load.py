"""Load a dataset folder into a validated :class:`rerec.data.schema.Catalog`, and save one back.

Two input formats (DESIGN.md, "Data"):

- parquet tables: ``items.parquet``, ``interactions.parquet``, ``item_attributes.parquet``, optional
  ``users.parquet`` and ``queries.parquet`` (a prepared data folder is one of these);
- RecBole atomic files (https://recbole.io/docs/user_guide/data/atomic_files.html): tab-separated
  with ``name:type`` headers, ``.item`` and ``.inter`` required, ``.user``, ``.kg`` and ``.link``
  optional. The item table takes ``title`` from ``movie_title`` (or ``title``), ``year`` from
  ``release_year`` (or ``year``) and ``genres`` from ``class`` (or ``genre``/``genres``) split on
  spaces. The knowledge graph (``.kg`` head/relation/tail over entities, ``.link`` item -> entity)
  becomes the item-centric long table ``item_attributes``: Freebase triples come in both directions,
  so for each triple whichever side is linked to an item is the item and the other side the entity;
  relations are renamed by :data:`~rerec.data.schema.KG_RELATIONS` (unknown ones keep their last
  dotted component) and duplicates dropped. Triples that touch no item are dropped and counted in
  ``Catalog.meta``.

Both formats then get the named attributes ``genre`` (one row per genre), ``year`` and ``decade``
("1990s") derived from the item table, unless ``item_attributes`` already has that relation (so a
saved catalog loads back identical).

``load_catalog(None)`` is the embedded MovieLens-100k (943 users, 1,682 items, 100,000 ratings).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rerec.data import validate as v
from rerec.data.schema import KG_RELATIONS, NAMED_RELATIONS, REQUIRED, Catalog
from rerec.errors import InputError
from rerec.paths import movielens_100k_dir

PARQUET_FILES = {
    "items": "items.parquet",
    "interactions": "interactions.parquet",
    "item_attributes": "item_attributes.parquet",
    "users": "users.parquet",
    "queries": "queries.parquet",
}
RECBOLE_SUFFIXES = {"items": ".item", "interactions": ".inter", "users": ".user", "kg": ".kg", "link": ".link"}
# Columns holding lists of item ids (or genre names); parquet type list<string>.
LIST_COLUMNS = ("genres", "positives", "candidates", "history")
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


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    """Read, validate and normalise a dataset folder; ``None`` is the embedded MovieLens-100k.

    Raises :class:`~rerec.errors.InputError` naming the file, column, row and fix on bad input.
    """
    folder = movielens_100k_dir() if path is None else Path(path)
    if not folder.exists():
        raise InputError("the dataset folder does not exist", file=str(folder),
                         fix=f"pass a folder holding {EXPECTED}")
    if not folder.is_dir():
        raise InputError("the dataset path is a file, not a folder", file=str(folder),
                         fix=f"pass the folder holding {EXPECTED}")
    if any(folder.glob("*.parquet")):
        catalog = _load_parquet(folder)
    elif any(p.suffix in RECBOLE_SUFFIXES.values() for p in folder.iterdir()):
        catalog = _load_recbole(folder, embedded=path is None or folder.resolve() == movielens_100k_dir().resolve())
    else:
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise InputError(f"the folder holds no dataset files (found: {', '.join(found) or 'nothing'})",
                         file=str(folder), fix=f"put in it {EXPECTED}")
    catalog.source = str(folder)
    _add_named_attributes(catalog)
    for name in ("items", "interactions", "item_attributes", "users", "queries"):
        table = getattr(catalog, name)
        if table is not None:
            catalog.meta[f"n_{name}"] = len(table)
    return catalog


def save_catalog(catalog: Catalog, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the catalog's tables as parquet into ``out_dir`` (created if needed); return name -> path.

    Each file is written to a temporary name and renamed into place, so no file is ever half-written;
    for an all-or-nothing folder, call this inside :func:`rerec.io.atomic_dir`. Id columns are
    ``string``, ``genres``/``positives``/``candidates``/``history`` are ``list<string>``.
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
        for column in LIST_COLUMNS:
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


def _ids(df: pd.DataFrame, column: str, src: v.TableSource, what: str) -> pd.Series:
    """Validate no nulls, then ids as str ("1", never "1.0")."""
    v.require_no_nulls(df, column, src, what)
    series = df[column]
    if pd.api.types.is_float_dtype(series) and (series == series.round()).all():
        series = series.astype("Int64")
    return series.astype("str").str.strip()


def _genres(series: pd.Series, src: v.TableSource, sep: str | None) -> list[list[str]]:
    out = []
    for i, value in enumerate(series):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append([])
        elif isinstance(value, str):
            out.append([g for g in (value.split(sep) if sep else [value]) if g.strip()])
        elif isinstance(value, (list, tuple, np.ndarray)):
            out.append([str(g) for g in value])
        else:
            raise InputError(f"genres must be a list of strings, got {value!r}", file=src.file,
                             column=str(series.name), row=src.row(i),
                             fix="write genres as a list of strings (parquet list<string>)")
    return out


def _normalise_items(df: pd.DataFrame, src: v.TableSource, genre_sep: str | None,
                     names: dict[str, str] | None = None) -> pd.DataFrame:
    """``names`` maps contract column -> the column's name in the file, for messages."""
    names = names or {}
    v.require_columns(df, REQUIRED["items"], src, "items")
    v.require_rows(df, src, "items")
    df = df.copy()
    df["item_id"] = _ids(df, "item_id", src, "items")
    v.require_unique(df, "item_id", src, "items")
    v.require_no_nulls(df.rename(columns={"title": names.get("title", "title")}), names.get("title", "title"),
                       src, "items")
    df["title"] = df["title"].astype("str")
    df["year"] = (v.to_number(df["year"], src, integer=True, column=names.get("year"))
                  if "year" in df else pd.array([pd.NA] * len(df), "Int64"))
    df["genres"] = (_genres(df["genres"].rename(names.get("genres", "genres")), src, genre_sep)
                    if "genres" in df else [[] for _ in range(len(df))])
    rest = [c for c in df.columns if c not in ("item_id", "title", "year", "genres")]
    return df[["item_id", "title", "year", "genres", *rest]]


def _normalise_interactions(df: pd.DataFrame, src: v.TableSource) -> pd.DataFrame:
    v.require_columns(df, REQUIRED["interactions"], src, "interactions")
    v.require_rows(df, src, "interactions")
    df = df.copy()
    df["user_id"] = _ids(df, "user_id", src, "interactions")
    df["item_id"] = _ids(df, "item_id", src, "interactions")
    df["rating"] = v.to_number(df["rating"], src, integer=False) if "rating" in df else np.nan
    df["timestamp"] = (v.to_number(df["timestamp"], src, integer=True) if "timestamp" in df
                       else pd.array([pd.NA] * len(df), "Int64"))
    rest = [c for c in df.columns if c not in ("user_id", "item_id", "rating", "timestamp")]
    return df[["user_id", "item_id", "rating", "timestamp", *rest]]


def _normalise_users(df: pd.DataFrame, src: v.TableSource) -> pd.DataFrame:
    v.require_columns(df, REQUIRED["users"], src, "users")
    v.require_rows(df, src, "users")
    df = df.copy()
    df["user_id"] = _ids(df, "user_id", src, "users")
    v.require_unique(df, "user_id", src, "users")
    return df[["user_id", *[c for c in df.columns if c != "user_id"]]]


def _normalise_attributes(df: pd.DataFrame, src: v.TableSource) -> pd.DataFrame:
    v.require_columns(df, REQUIRED["item_attributes"], src, "item_attributes")
    df = df.copy()
    for column in ("item_id", "relation", "entity"):
        df[column] = _ids(df, column, src, "item_attributes")
    return df[["item_id", "relation", "entity"]].drop_duplicates(ignore_index=True)


def _normalise_queries(df: pd.DataFrame, src: v.TableSource) -> pd.DataFrame:
    v.require_columns(df, REQUIRED["queries"], src, "queries")
    df = df.copy()
    for column in ("query_id", "type", "split"):
        v.require_no_nulls(df, column, src, "queries")
        df[column] = df[column].astype("str")
    df["query_id"] = _ids(df, "query_id", src, "queries")
    df["user_id"] = df["user_id"].where(df["user_id"].isna(), df["user_id"].astype("str")).astype("str")
    df["text"] = df["text"].astype("str")
    df["conditions"] = df["conditions"].astype("str")
    for column in ("positives", "candidates", "history"):
        if column in df:
            df[column] = _genres(df[column].rename(column), src, sep=None)
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
    if catalog.queries is not None:
        v.validate_queries(catalog.queries, catalog, files["queries"], items_file=files["items"].file,
                           users_file=files["users"].file)


# ---------------------------------------------------------------------------------------------
# Parquet folders.


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas().reset_index(drop=True)
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise InputError(f"the file cannot be read as parquet ({str(exc).splitlines()[0][:200]})",
                         file=str(path), fix="rewrite it with pandas.DataFrame.to_parquet or pyarrow") from None


def _load_parquet(folder: Path) -> Catalog:
    files = {name: v.TableSource(str(folder / filename)) for name, filename in PARQUET_FILES.items()}
    for name in ("items", "interactions", "item_attributes"):
        if not (folder / PARQUET_FILES[name]).is_file():
            raise InputError(f"the required table {PARQUET_FILES[name]} is missing", file=str(folder),
                             fix=f"a parquet dataset folder holds {EXPECTED.split(' or ')[0]}")
    raw = {name: _read_parquet(folder / fn) for name, fn in PARQUET_FILES.items() if (folder / fn).is_file()}
    items = _normalise_items(raw["items"], files["items"], genre_sep="|")
    interactions = _normalise_interactions(raw["interactions"], files["interactions"])
    users = _normalise_users(raw["users"], files["users"]) if "users" in raw else None
    attributes = _normalise_attributes(raw["item_attributes"], files["item_attributes"])
    v.require_known(attributes["item_id"], items["item_id"], files["item_attributes"],
                    what="item id", target=files["items"].file)
    queries = _normalise_queries(raw["queries"], files["queries"]) if "queries" in raw else None
    catalog = Catalog(items, interactions, attributes, users, queries, meta={"format": "parquet"})
    _check_references(catalog, files)
    return catalog


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


def _load_recbole(folder: Path, embedded: bool = False) -> Catalog:
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
    meta = {"format": "recbole", "files": {k: p.name for k, p in found.items()}, "fixes": []}
    if embedded:
        for item_id, fix in EMBEDDED_ITEM_FIXES.items():
            rows = item_df.index[item_df["item_id"] == item_id]
            for column, value in fix.items():
                if column in item_df and len(rows):
                    item_df.loc[rows, column] = value
                    meta["fixes"].append(f"item {item_id}: {column} = {value!r}")
    renames = {}
    for target, names in (("title", ("movie_title", "title", "name")), ("year", ("release_year", "year")),
                          ("genres", ("class", "genres", "genre"))):
        column = _pick(item_df, names)
        if column is not None and column != target:
            renames[column] = target
    items = _normalise_items(item_df.rename(columns=renames), files["items"], genre_sep=" ",
                             names={target: column for column, target in renames.items()})
    interactions = _normalise_interactions(raw["interactions"], files["interactions"])
    users = _normalise_users(raw["users"], files["users"]) if "users" in raw else None

    if "kg" in raw:
        if "link" not in raw:
            raise InputError("a knowledge graph (.kg) comes without its .link file", file=str(found["kg"]),
                             fix="add the .link file that maps item_id to entity_id, or remove the .kg file")
        attributes = _kg_attributes(raw["kg"], files["kg"], raw["link"], files["link"], items, files["items"], meta)
    else:
        attributes = pd.DataFrame({c: pd.Series([], dtype="str") for c in ("item_id", "relation", "entity")})
    catalog = Catalog(items, interactions, attributes, users, None, meta=meta)
    _check_references(catalog, files)
    return catalog


def _kg_attributes(kg: pd.DataFrame, kg_src: v.TableSource, link: pd.DataFrame, link_src: v.TableSource,
                   items: pd.DataFrame, items_src: v.TableSource, meta: dict) -> pd.DataFrame:
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
    ], ignore_index=True)
    # Rename per distinct relation (a few dozen), not per triple.
    names = {r: KG_RELATIONS.get(r, r.rsplit(".", 1)[-1]) for r in attributes["relation"].unique()}
    attributes["relation"] = attributes["relation"].map(names).astype("str")
    attributes = attributes.drop_duplicates(ignore_index=True).astype("str")
    linked = head_linked | kg["tail_id"].isin(link["entity_id"])
    meta.update(kg_triples=len(kg), kg_triples_dropped=int((~linked).sum()), kg_attribute_rows=len(attributes))
    return attributes


# ---------------------------------------------------------------------------------------------
# Named attributes derived from the item table.


def _add_named_attributes(catalog: Catalog) -> None:
    items, attributes = catalog.items, catalog.item_attributes
    present = set(attributes["relation"].unique())
    parts = [attributes]
    if "genre" not in present:
        exploded = items[["item_id", "genres"]].explode("genres").dropna(subset=["genres"])
        parts.append(pd.DataFrame({"item_id": exploded["item_id"], "relation": "genre",
                                   "entity": exploded["genres"].astype("str")}))
    dated = items[items["year"].notna()]
    if "year" not in present:
        parts.append(pd.DataFrame({"item_id": dated["item_id"], "relation": "year",
                                   "entity": dated["year"].astype("int64").astype("str")}))
    if "decade" not in present:
        decades = (dated["year"].astype("int64") // 10 * 10).astype("str") + "s"
        parts.append(pd.DataFrame({"item_id": dated["item_id"], "relation": "decade", "entity": decades}))
    derived = sum(len(p) for p in parts[1:])
    if derived:
        catalog.item_attributes = (pd.concat(parts, ignore_index=True).astype("str")
                                   .drop_duplicates(ignore_index=True))
    catalog.meta["derived_attribute_rows"] = derived
    catalog.meta["named_relations"] = [r for r in NAMED_RELATIONS if r not in present]
