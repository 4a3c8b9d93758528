"""Variants of the MovieLens contract folder, as a company catalog or a second public dataset brings
them: valid in spirit but unusual (Freebase relation names, re-watches, genres as one string, titles
with braces or newlines, native timestamps...) or broken in a way that must be refused clearly.

Each variant is written into a fresh folder from a small slice of the embedded MovieLens-100k (the
most rated items and the users who rated many of them, with their knowledge graph), small enough
that prepare-data and build-graphs take a second or two on it.

    python -m tests.catalog_variants        # runs prepare-data on every variant, prints the table

prints what each variant gets now (accepted with which normalisations, or refused with which message);
docs/data.md carries that table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

N_ITEMS = 240
N_USERS = 160
# small query counts so a variant prepares in about a second
PREPARE_ARGS = ["--n-explicit", "30", "--n-implicit", "20", "--n-misinformed", "20", "--n-interest", "20",
                "--n-candidates", "6", "--seed", "1"]


@functools.lru_cache(maxsize=1)
def _base() -> dict[str, pd.DataFrame]:
    """The slice of the embedded MovieLens-100k every variant starts from (contract tables, relations
    in rerec's vocabulary, genre/year/decade not yet derived)."""
    from rerec.data.load import load_catalog

    catalog = load_catalog(None)
    inter = catalog.interactions
    items = inter["item_id"].value_counts().index[:N_ITEMS]
    kept = inter[inter["item_id"].isin(items)]
    users = kept["user_id"].value_counts().index[:N_USERS]
    kept = kept[kept["user_id"].isin(users)].reset_index(drop=True)
    item_table = catalog.items[catalog.items["item_id"].isin(items)].reset_index(drop=True)
    attrs = catalog.item_attributes
    attrs = attrs[attrs["item_id"].isin(items) & ~attrs["relation"].isin(["genre", "year", "decade"])]
    user_table = catalog.users[catalog.users["user_id"].isin(users)].reset_index(drop=True)
    return {
        "items": item_table[["item_id", "title", "year", "genres"]],
        "interactions": kept[["user_id", "item_id", "rating", "timestamp"]].astype({"timestamp": "int64"}),
        "item_attributes": attrs.reset_index(drop=True),
        "users": user_table,
    }


def base_tables() -> dict[str, pd.DataFrame]:
    """Fresh copies of the base tables (safe to modify)."""
    return {name: table.copy(deep=True) for name, table in _base().items()}


def write_parquet(folder: Path, tables: dict[str, pd.DataFrame | None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if table is not None:
            table.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@functools.lru_cache(maxsize=1)
def _recbole_lines() -> dict[str, list[str]]:
    """The embedded RecBole files cut to the base slice: suffix -> lines (header first)."""
    from rerec.paths import movielens_100k_dir

    base = _base()
    items, users = set(base["items"]["item_id"]), set(base["interactions"]["user_id"])
    folder = movielens_100k_dir()

    def lines(suffix: str) -> list[str]:
        return (folder / f"ml-100k{suffix}").read_text(encoding="utf-8").splitlines()

    out = {}
    item_lines = lines(".item")
    out[".item"] = [item_lines[0]] + [x for x in item_lines[1:] if x.split("\t")[0] in items]
    inter = lines(".inter")
    out[".inter"] = [inter[0]] + [x for x in inter[1:] if x.split("\t")[0] in users and x.split("\t")[1] in items]
    user = lines(".user")
    out[".user"] = [user[0]] + [x for x in user[1:] if x.split("\t")[0] in users]
    # the embedded link file is keyed by MovieLens global ids: the slice's is keyed by its own item ids
    from rerec.data.embedded import read_link_ids

    to_item = read_link_ids().groupby("link_id")["item_id"].agg(list).to_dict()
    link = lines(".link")
    out[".link"] = [link[0]] + [f"{item}\t{x.split(chr(9))[1]}" for x in link[1:]
                                for item in to_item.get(x.split("\t")[0], []) if item in items]
    entities = {x.split("\t")[1] for x in out[".link"][1:]}
    kg = lines(".kg")
    out[".kg"] = [kg[0]] + [x for x in kg[1:] if x.split("\t")[0] in entities or x.split("\t")[2] in entities]
    return out


def write_recbole(folder: Path, edit: Callable[[dict[str, list[str]]], None] | None = None) -> Path:
    files = {k: list(v) for k, v in _recbole_lines().items()}
    if edit is not None:
        edit(files)
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, rows in files.items():
        (folder / f"slice{suffix}").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------------
# The variants.


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    build: Callable[[Path], Path]
    refused: str | None = None  # a fragment of the error message when the variant must be refused
    args: tuple[str, ...] = ()  # extra prepare-data flags
    notes: tuple[str, ...] = field(default=())  # normalisation keys the stats must report


def _parquet(edit: Callable[[dict[str, pd.DataFrame]], None]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        tables = base_tables()
        edit(tables)
        return write_parquet(folder, tables)
    return build


def _recbole(edit: Callable[[dict[str, list[str]]], None] | None = None) -> Callable[[Path], Path]:
    return lambda folder: write_recbole(folder, edit)


def _set_item(tables, column: str, values: dict[int, object]) -> None:
    items = tables["items"]
    col = items[column].astype(object).tolist()
    for row, value in values.items():
        col[row] = value
    items[column] = pd.Series(col, dtype=object)


FREEBASE = {"actor": "film.film.actor", "director": "film.director.film", "writer": "film.film.written_by",
            "producer": "film.producer.film", "film_genre": "film.film.genre", "language": "film.film.language",
            "country": "film.film.country", "cinematographer": "film.film.cinematography",
            "production_company": "film.production_company.films", "content_rating": "film.film.rating",
            "subject": "film.film.subjects", "award_nomination": "film.film.award_nomination",
            "award_won": "film.film.award_won", "sequel": "film.film.sequel", "prequel": "film.film.prequel"}
CUSTOM = {"actor": "starring", "director": "directedBy", "writer": "writtenBy", "producer": "producedBy"}


def _relations(names: dict[str, str]) -> Callable[[dict], None]:
    def edit(t):
        t["item_attributes"]["relation"] = t["item_attributes"]["relation"].map(lambda r: names.get(r, r))
    return edit


def _no_people(t) -> None:
    a = t["item_attributes"]
    t["item_attributes"] = a[~a["relation"].isin(["actor", "director", "writer", "producer"])].reset_index(drop=True)


def _rewatch(t) -> None:
    inter = t["interactions"]
    again = inter.iloc[::7].copy()
    again["timestamp"] = again["timestamp"] + 86_400
    again["rating"] = np.where(again["rating"] >= 4, again["rating"], again["rating"] + 1)
    t["interactions"] = pd.concat([inter, again], ignore_index=True)


def _genre_strings(sep: str) -> Callable[[dict], None]:
    def edit(t):
        t["items"]["genres"] = [sep.join(g) for g in t["items"]["genres"]]
    return edit


def _empty_genres(t) -> None:
    genres = [list(g) for g in t["items"]["genres"]]
    genres[0] = genres[0] + [""]
    genres[1] = [""]
    genres[2] = [" ", *genres[2]]
    t["items"]["genres"] = genres


def _bytes_genres(t) -> None:
    t["items"]["genres"] = [[g.encode() for g in gs] for gs in t["items"]["genres"]]


def _special_titles(t) -> None:
    _set_item(t, "title", {0: "Crimes and Misdemeanors; Director's Cut", 1: "Set {It} Off", 2: "\\boxed{Heat}",
                           3: "C:\\Films\\Heat", 4: "10", 5: "Cape Fear", 6: "Cape Fear", 7: "9",
                           8: "Brace } yourself {"})


def _control_titles(t) -> None:
    _set_item(t, "title", {0: "Two\nLines", 1: "Tab\there", 2: "Bell\x07 and\r\nreturn", 3: "Trailing\n"})


def _unicode_titles(t) -> None:
    _set_item(t, "title", {0: "Cafe\u0301 Society", 1: "Fa\u200brgo Nights", 2: "\u202eMirror Image\u200f",
                           3: "Soft\u00adhyphen"})


def _look_alike_titles(t) -> None:
    _set_item(t, "title", {0: "Cafe\u0301 Society", 1: "Café Society"})
    _set_item(t, "year", {0: 2016, 1: 2016})


def _whitespace_ids(t) -> None:
    _set_item(t, "item_id", {1: " " + str(t["items"]["item_id"].iloc[0]) + " "})


def _one_genre_row(t) -> None:
    first = t["items"]["item_id"].iloc[0]
    t["item_attributes"] = pd.concat([t["item_attributes"], pd.DataFrame(
        {"item_id": [first], "relation": ["genre"], "entity": ["Cult Classic"]})], ignore_index=True)


def _users_lists(t) -> None:
    users = t["users"]
    users["genres"] = "Comedy|Drama"  # was split into characters
    users["history"] = np.arange(len(users), dtype=np.int64)  # an int column named like a list: was a crash
    users["age"] = users["age"].astype("int64")


def _datetime_ts(t) -> None:
    inter = t["interactions"]
    inter["timestamp"] = pd.to_datetime(inter["timestamp"], unit="s")


def _iso_ts(t) -> None:
    inter = t["interactions"]
    inter["timestamp"] = pd.to_datetime(inter["timestamp"], unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S")


def _float_ids(t) -> None:
    for name in ("items", "interactions", "item_attributes"):
        t[name]["item_id"] = t[name]["item_id"].astype("float64")


def _one_fractional_id(t) -> None:
    _float_ids(t)
    t["interactions"].loc[57, "item_id"] = 1.5


def _huge_float_ids(t) -> None:
    for name in ("items", "interactions", "item_attributes"):
        t[name]["item_id"] = t[name]["item_id"].astype("float64") + 2.0**63


def _huge_timestamp(t) -> None:
    inter = t["interactions"]
    inter["timestamp"] = inter["timestamp"].astype("float64")
    inter.loc[12, "timestamp"] = 1e30


def _queries(t, edit: Callable[[list[dict]], None] | None = None) -> None:
    """A few hand-made queries over the slice (valid unless ``edit`` breaks one)."""
    items, attrs, inter = t["items"], t["item_attributes"], t["interactions"]
    genre_of = {i: list(g) for i, g in zip(items["item_id"], items["genres"], strict=True)}
    users = inter.groupby("user_id")["item_id"].apply(set)
    rows = []
    for n, (user, seen) in enumerate(list(users.items())[:6]):
        liked = sorted(seen)[0]
        genre = genre_of[liked][0]
        others = [i for i in items["item_id"] if i not in seen and genre not in genre_of[i]][:3]
        rows.append({"query_id": f"q{n}", "user_id": user, "type": "explicit", "text": f"a {genre.lower()} film",
                     "conditions": json.dumps([{"relation": "genre", "entity": genre, "text": genre.lower()}]),
                     "positives": [liked], "candidates": [*others[:2], liked, others[2]],
                     "split": ["train", "train", "train", "val", "test", "test"][n]})
    del attrs
    if edit is not None:
        edit(rows)
    t["queries"] = pd.DataFrame(rows)


def _query_edit(fn: Callable[[list[dict]], None]) -> Callable[[dict], None]:
    return lambda t: _queries(t, fn)


def _cond(rows, index: int, condition: dict) -> None:
    rows[index]["conditions"] = json.dumps([condition])


def _recbole_both_titles(files) -> None:
    files[".item"] = [files[".item"][0] + "\ttitle:token_seq"] + [
        line + "\t" + line.split("\t")[1].upper() for line in files[".item"][1:]]


def _recbole_scrambled_link(files) -> None:
    """The link file's item ids shifted onto other items (what reading MovieLens global ids as ML-100k
    ids does): every fact lands on the wrong film."""
    rows = files[".link"]
    ids = [r.split("\t")[0] for r in rows[1:]]
    shifted = ids[7:] + ids[:7]
    files[".link"] = [rows[0]] + [f"{i}\t{r.split(chr(9))[1]}" for i, r in zip(shifted, rows[1:], strict=True)]


def _no_graph(t) -> None:
    """Genres and years only, like ml-latest-small: no knowledge graph at all."""
    t["item_attributes"] = t["item_attributes"].iloc[0:0]


def _recbole_no_genres(files) -> None:
    rows = files[".item"]
    for k in (1, 2, 3):
        parts = rows[k].split("\t")
        parts[3] = "(no genres listed)"
        rows[k] = "\t".join(parts)


def _recbole_huge_ts(files) -> None:
    parts = files[".inter"][5].split("\t")
    parts[3] = "1e30"
    files[".inter"][5] = "\t".join(parts)


def _recbole_iso_ts(files) -> None:
    rows = files[".inter"]
    for k in range(1, len(rows)):
        parts = rows[k].split("\t")
        parts[3] = pd.Timestamp(int(parts[3]), unit="s").strftime("%Y-%m-%d %H:%M:%S")
        rows[k] = "\t".join(parts)


VARIANTS: list[Variant] = [
    Variant("parquet-base", "the slice as parquet tables, relations in rerec's names", _parquet(lambda t: None)),
    Variant("recbole-base", "the slice as RecBole atomic files with its Freebase knowledge graph", _recbole()),
    Variant("recbole-scrambled-link", "a .link file whose item ids point at other items (another numbering)",
            _recbole(_recbole_scrambled_link), refused="does not describe this catalog's items"),
    Variant("no-graph", "genres and years only, no knowledge graph (implicit and misinformed skipped)",
            _parquet(_no_graph)),
    Variant("freebase-relations", "parquet item_attributes with Freebase relation names (both directions)",
            _parquet(_relations(FREEBASE)), notes=("relations_renamed",)),
    Variant("custom-relations-mapped", "own relation names (directedBy, starring...) mapped with --relation-map",
            _parquet(_relations(CUSTOM)),
            args=("--relation-map", "directedBy=director", "starring=actor", "writtenBy=writer",
                  "producedBy=producer"), notes=("relations_renamed",)),
    Variant("custom-relations-unmapped", "own relation names, no mapping, implicit queries requested",
            _parquet(_relations(CUSTOM)), refused="--relation-map"),
    Variant("no-person-relations", "no director/actor/writer/producer relation, --n-implicit 20",
            _parquet(_no_people), refused="--n-implicit 0"),
    Variant("no-person-relations-explicit-only", "no person relation, only explicit and interest queries asked",
            _parquet(_no_people), args=("--n-implicit", "0", "--n-misinformed", "0")),
    Variant("empty-genre-strings", "genre lists holding '' and ' '", _parquet(_empty_genres),
            notes=("blank_genres_dropped",)),
    Variant("genres-pipe-string", "genres as one 'A|B' string", _parquet(_genre_strings("|"))),
    Variant("genres-comma-string", "genres as one 'A, B' string", _parquet(_genre_strings(", ")),
            notes=("genres_split_on_comma",)),
    Variant("genres-bytes", "genres as lists of UTF-8 bytes", _parquet(_bytes_genres),
            notes=("bytes_decoded",)),
    Variant("single-genre-attribute-row", "item_attributes holds one 'genre' row, items.genres the rest",
            _parquet(_one_genre_row), notes=("genres_merged",)),
    Variant("recbole-no-genres-listed", "RecBole class '(no genres listed)'", _recbole(_recbole_no_genres),
            notes=("no_genre_marker",)),
    Variant("rewatches", "every 7th interaction repeated a day later", _parquet(_rewatch),
            notes=("duplicate_interactions",)),
    Variant("special-titles", "titles with ';', '{', '}', '\\boxed{', backslashes, remakes, '10' and '9'",
            _parquet(_special_titles)),
    Variant("control-chars-in-titles", "titles with newline, tab, CR and a bell character",
            _parquet(_control_titles), notes=("control_characters",)),
    Variant("users-genres-history-int", "users.parquet with a string 'genres' column and int 'history' and 'age'",
            _parquet(_users_lists)),
    Variant("datetime-timestamps", "native parquet timestamp[ns] column", _parquet(_datetime_ts),
            notes=("timestamps_from_datetimes",)),
    Variant("iso-timestamps", "ISO 8601 date strings", _parquet(_iso_ts), notes=("timestamps_from_dates",)),
    Variant("recbole-iso-timestamps", "RecBole .inter with 'YYYY-MM-DD hh:mm:ss' timestamps",
            _recbole(_recbole_iso_ts), notes=("timestamps_from_dates",)),
    Variant("float-ids", "whole-number ids stored as float64", _parquet(_float_ids)),
    Variant("recbole-both-title-columns", "RecBole .item with both movie_title and title",
            _recbole(_recbole_both_titles), notes=("shadowed_columns",)),
    Variant("user-queries", "hand-made queries.parquet (kept as given)", _parquet(_query_edit(lambda rows: None))),
    Variant("unicode-titles", "titles with a decomposed accent, U+200B, U+202E/U+200F and a soft hyphen",
            _parquet(_unicode_titles), notes=("title_unicode",)),
    Variant("look-alike-titles", "'Cafe\\u0301 Society' and 'Café Society', both 2016",
            _parquet(_look_alike_titles), refused="differ only by invisible characters"),
    Variant("year-out-of-range", "a year of -500", _parquet(lambda t: _set_item(t, "year", {3: -500})),
            refused="four-digit calendar year"),
    Variant("ids-differ-by-whitespace", "two item ids that differ only by surrounding spaces",
            _parquet(_whitespace_ids), refused="differ only by whitespace"),
    Variant("query-history-holds-positive", "a hand-made query whose history holds its positive",
            _parquet(_query_edit(lambda r: r[0].update(history=list(r[0]["positives"])))),
            refused="holds its positive"),
    Variant("query-history-holds-candidate", "a hand-made query whose history holds one of its negatives",
            _parquet(_query_edit(lambda r: r[1].update(history=[r[1]["candidates"][0]]))),
            refused="holds its candidate"),
    Variant("user-queries-all-train", "hand-made queries, every one in the train split",
            _parquet(_query_edit(lambda r: [q.update(split="train") for q in r])),
            refused="no val and no test split"),
    Variant("one-fractional-id", "float ids with a single 1.5", _parquet(_one_fractional_id), refused="1.5"),
    Variant("huge-float-ids", "float ids >= 2^63", _parquet(_huge_float_ids), refused="2^53"),
    Variant("huge-timestamp", "a timestamp of 1e30", _parquet(_huge_timestamp), refused="1e+30"),
    Variant("recbole-huge-timestamp", "a RecBole timestamp of 1e30", _recbole(_recbole_huge_ts), refused="1e30"),
    Variant("query-condition-without-entity", "a query condition without 'entity'",
            _parquet(_query_edit(lambda r: _cond(r, 1, {"relation": "genre", "text": "x"}))), refused="'entity'"),
    Variant("query-condition-without-relation", "a query condition without 'relation'",
            _parquet(_query_edit(lambda r: _cond(r, 2, {"entity": "Comedy"}))), refused="'relation'"),
    Variant("query-positive-fails-condition", "a query whose positive does not meet its condition",
            _parquet(_query_edit(lambda r: _cond(r, 0, {"relation": "genre", "entity": "Nope", "text": "x"}))),
            refused="does not meet"),
    Variant("query-repeated-candidate", "a candidate listed twice",
            _parquet(_query_edit(lambda r: r[3].update(candidates=[*r[3]["candidates"], r[3]["candidates"][0]]))),
            refused="more than once"),
    Variant("query-single-candidate", "a query with its positive as the only candidate",
            _parquet(_query_edit(lambda r: r[4].update(candidates=list(r[4]["positives"])))),
            refused="at least 2 candidates"),
    Variant("query-null-text", "a query without text", _parquet(_query_edit(lambda r: r[5].update(text=None))),
            refused="empty text"),
]
BY_NAME = {v.name: v for v in VARIANTS}


def run_all(root: Path) -> list[dict]:
    """prepare-data (in process, tracking off) on every variant; one row per variant."""
    import os

    os.environ.setdefault("REREC_TRACKING", "off")
    from rerec.config import dataclass_from_args
    from rerec.data import prepare
    from rerec.errors import RerecError

    rows = []
    for variant in VARIANTS:
        folder = variant.build(root / variant.name)
        parser = __import__("argparse").ArgumentParser()
        prepare.add_cli_arguments(parser)
        args = parser.parse_args(["--input", str(folder), "--out", str(root / f"{variant.name}-out"),
                                  *PREPARE_ARGS, *variant.args])
        try:
            result = prepare.prepare_data(args.input, args.out, dataclass_from_args(prepare.PrepareConfig, args),
                                          progress=False)
        except RerecError as exc:
            rows.append({"variant": variant.name, "what": variant.what, "outcome": "refused", "detail": str(exc)})
            continue
        notes = result["stats"].get("normalisations", [])
        detail = "; ".join(f"{n['change']} ({n['count']})" for n in notes) or "nothing changed"
        rows.append({"variant": variant.name, "what": variant.what, "outcome": "accepted", "detail": detail})
    return rows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = run_all(Path(tmp))
    print("| # | variant | input | outcome |")
    print("|---|---|---|---|")
    for i, row in enumerate(table, start=1):
        detail = row["detail"].replace("|", "\\|").replace(str(Path(tmp)), "…")
        print(f"| {i} | `{row['variant']}` | {row['what']} | {row['outcome']}: {detail} |")
