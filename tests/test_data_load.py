"""Loading datasets: the embedded MovieLens-100k, RecBole atomic files, parquet folders, round trips."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rerec.data.load import load_catalog, save_catalog
from rerec.data.schema import Catalog
from rerec.errors import InputError


@pytest.fixture(scope="module")
def movielens() -> Catalog:
    return load_catalog(None)


def write_atomic(folder: Path, name: str, header: list[str], rows: list[list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


def small_recbole(folder: Path) -> Path:
    """Three films, two users, a KG in both Freebase directions plus noise."""
    write_atomic(folder, "toy.item", ["item_id:token", "movie_title:token_seq", "release_year:token",
                                      "class:token_seq"],
                 [["1", "Toy Story", "1995", "Animation Children's Comedy"],
                  ["2", "Fargo", "1996", "Crime Drama"],
                  ["3", "Raising Arizona", "1987", "Comedy"]])
    write_atomic(folder, "toy.inter", ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
                 [["u1", "1", "5", "881250949"], ["u1", "2", "3", "881250950"], ["u2", "3", "4", "881250951"]])
    write_atomic(folder, "toy.user", ["user_id:token", "age:token"], [["u1", "24"], ["u2", "53"]])
    write_atomic(folder, "toy.link", ["item_id:token", "entity_id:token"],
                 [["1", "m.toy"], ["2", "m.fargo"], ["3", "m.arizona"]])
    write_atomic(folder, "toy.kg", ["head_id:token", "relation_id:token", "tail_id:token"], [
        ["m.fargo", "film.film.directed_by", "m.coen"],  # film -> person
        ["m.coen", "film.director.film", "m.fargo"],  # person -> film: same fact, deduplicated
        ["m.coen", "film.director.film", "m.arizona"],  # only in the person -> film direction
        ["m.toy", "film.film.actor", "m.hanks"],
        ["m.hanks", "film.actor.film", "m.toy"],  # the other spelling of the same relation
        ["m.toy", "film.film.sequel", "m.arizona"],  # both sides items: the head is the item
        ["m.toy", "common.topic.webpage", "m.page"],  # unknown relation: last dotted component
        ["m.coen", "people.person.sibling", "m.other"],  # touches no item: dropped
    ])
    return folder


def test_embedded_movielens_counts(movielens):
    assert len(movielens.users) == 943
    assert len(movielens.items) == 1682
    assert len(movielens.interactions) == 100_000
    assert movielens.interactions["user_id"].nunique() == 943
    assert movielens.meta["format"] == "recbole"


def test_embedded_movielens_known_facts(movielens):
    items = movielens.items.set_index("item_id")
    toy = items.loc["1"]
    assert toy["title"] == "Toy Story"
    assert toy["year"] == 1995
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc["100", "title"] == "Fargo"
    assert movielens.titles()["238"] == "Raising Arizona"
    # ML-100k writes 'unkonwn' for item 267's year: it loads as null, not as an error.
    assert pd.isna(items.loc["267", "year"])
    # RecBole split item 1412's "(V) (1995)" into its year column; the embedded fix restores it.
    assert items.loc["1412", "year"] == 1995
    assert items.loc["1412", "title"].endswith("(V)")
    first = movielens.interactions.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == ("196", "242", 3.0, 881250949)
    assert movielens.users.set_index("user_id").loc["1", "occupation"] == "technician"


def test_embedded_movielens_types(movielens):
    for table, column in [("items", "item_id"), ("items", "title"), ("interactions", "user_id"),
                          ("interactions", "item_id"), ("users", "user_id"), ("item_attributes", "entity")]:
        assert pd.api.types.is_string_dtype(getattr(movielens, table)[column]), (table, column)
    assert str(movielens.items["year"].dtype) == "Int64"
    assert str(movielens.interactions["timestamp"].dtype) == "Int64"
    assert movielens.interactions["rating"].dtype == "float64"
    assert movielens.interactions["rating"].between(1, 5).all()
    assert all(isinstance(g, list) for g in movielens.items["genres"])


def test_embedded_movielens_attributes(movielens):
    attrs = movielens.item_attributes
    assert list(attrs.columns) == ["item_id", "relation", "entity"]
    assert not attrs.duplicated().any()
    assert set(attrs["item_id"]) <= set(movielens.items["item_id"])
    relations = attrs["relation"].value_counts()
    for relation in ("director", "actor", "writer", "producer", "genre", "year", "decade", "film_genre"):
        assert relations.get(relation, 0) > 0, relation
    # No raw Freebase relation names survive normalisation.
    assert not attrs["relation"].str.startswith("film.").any()
    toy = attrs[attrs["item_id"] == "1"]
    pairs = set(zip(toy["relation"], toy["entity"], strict=True))
    assert {("genre", "Animation"), ("genre", "Comedy"), ("year", "1995"), ("decade", "1990s")} <= pairs
    assert (toy["relation"] == "actor").sum() >= 5
    # Fargo's directors as the KG records them (Freebase ids of Joel and Ethan Coen) are reachable from the
    # item (tests/test_kg_facts.py checks who else they directed).
    fargo = attrs[(attrs["item_id"] == "100") & (attrs["relation"] == "director")]
    assert sorted(fargo["entity"]) == ["m.02kxbwx", "m.02kxbx3"]
    assert movielens.meta["kg_triples"] == 91_631


def test_embedded_movielens_loads_fast():
    # CPU time, not wall time: on a shared machine the wall clock mostly measures waiting for a core.
    wall, cpu = time.perf_counter(), time.process_time()
    load_catalog(None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert cpu < 3.0, f"loading ML-100k took {cpu:.2f} s of CPU ({wall:.2f} s wall)"
    assert wall < 15.0, f"loading ML-100k took {wall:.2f} s wall"


def test_recbole_kg_normalisation(tmp_path):
    catalog = load_catalog(small_recbole(tmp_path / "toy"))
    attrs = catalog.item_attributes
    kg = set(zip(attrs["item_id"], attrs["relation"], attrs["entity"], strict=True))
    assert ("2", "director", "m.coen") in kg
    assert ("3", "director", "m.coen") in kg
    assert ("1", "actor", "m.hanks") in kg
    assert ("1", "sequel", "m.arizona") in kg
    assert ("1", "webpage", "m.page") in kg
    assert not attrs.duplicated().any()
    # 8 triples: 7 touch an item, the sibling triple is dropped; 2 are duplicates after normalising.
    assert catalog.meta["kg_triples"] == 8
    assert catalog.meta["kg_triples_dropped"] == 1
    assert catalog.meta["kg_attribute_rows"] == 5
    named = attrs[attrs["relation"].isin(["genre", "year", "decade"])]
    assert len(named) == 3 + 2 + 1 + 3 + 3  # genres 3+2+1, years 3, decades 3
    assert ("3", "decade", "1980s") in set(zip(named["item_id"], named["relation"], named["entity"], strict=True))
    assert catalog.users["user_id"].tolist() == ["u1", "u2"]
    assert catalog.interactions["timestamp"].tolist() == [881250949, 881250950, 881250951]


def test_recbole_without_kg_gets_named_attributes(tmp_path):
    folder = small_recbole(tmp_path / "toy")
    (folder / "toy.kg").unlink()
    (folder / "toy.link").unlink()
    (folder / "toy.user").unlink()
    catalog = load_catalog(folder)
    assert catalog.users is None
    assert set(catalog.item_attributes["relation"]) == {"genre", "year", "decade"}


def small_queries() -> pd.DataFrame:
    return pd.DataFrame({
        "query_id": ["q1", "q2"],
        "user_id": ["u1", "u2"],
        "type": ["explicit", "implicit"],
        "text": ["a 90s comedy", "by the director of Fargo"],
        "conditions": [json.dumps([{"relation": "decade", "entity": "1990s", "text": "90s"}]),
                       json.dumps([{"relation": "director", "entity": "m.coen", "text": "x", "via": "2"}])],
        "positives": [["1"], ["3"]],
        "candidates": [["2", "1"], ["3", "1"]],
        "split": ["train", "test"],
        "history": [["3"], []],  # a history holds none of its query's candidates
        "n_conditions": [1, 1],
    })


def test_round_trip_parquet_is_identical(tmp_path):
    catalog = load_catalog(small_recbole(tmp_path / "toy"))
    catalog.queries = small_queries()
    paths = save_catalog(catalog, tmp_path / "saved")
    assert set(paths) == {"items", "interactions", "item_attributes", "users", "queries"}
    items_schema = pq.read_schema(paths["items"])
    assert items_schema.field("genres").type == pa.list_(pa.string())
    assert items_schema.field("item_id").type == pa.string()
    assert pq.read_schema(paths["queries"]).field("candidates").type == pa.list_(pa.string())
    assert not list((tmp_path / "saved").glob(".*")), "temporary files left behind"
    again = load_catalog(tmp_path / "saved")
    assert again.meta["format"] == "parquet"
    assert again.meta["derived_attribute_rows"] == 0  # derived attributes were saved, not re-added
    for name in ("items", "interactions", "item_attributes", "users"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(catalog, name), obj=name)
    pd.testing.assert_frame_equal(again.queries.drop(columns="n_conditions"),
                                  small_queries().drop(columns="n_conditions"), check_dtype=False)
    assert again.queries["n_conditions"].tolist() == [1, 1]
    # And a second round trip changes nothing either.
    save_catalog(again, tmp_path / "saved2")
    twice = load_catalog(tmp_path / "saved2")
    for name in ("items", "interactions", "item_attributes", "users", "queries"):
        pd.testing.assert_frame_equal(getattr(twice, name), getattr(again, name), obj=name)


def test_round_trip_movielens(movielens, tmp_path):
    save_catalog(movielens, tmp_path / "ml")
    again = load_catalog(tmp_path / "ml")
    for name in ("items", "interactions", "item_attributes", "users"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(movielens, name), obj=name)


def test_parquet_numeric_ids_become_strings(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pd.DataFrame({"item_id": [1.0, 2.0], "title": ["A", "B"], "year": [1999, None],
                  "genres": [["Drama"], []]}).to_parquet(folder / "items.parquet")
    pd.DataFrame({"user_id": [7, 8], "item_id": [1, 2]}).to_parquet(folder / "interactions.parquet")
    pd.DataFrame({"item_id": [2], "relation": ["director"], "entity": ["p1"]}).to_parquet(
        folder / "item_attributes.parquet")
    catalog = load_catalog(folder)
    assert catalog.items["item_id"].tolist() == ["1", "2"]
    assert catalog.interactions["user_id"].tolist() == ["7", "8"]
    assert catalog.interactions["rating"].isna().all()
    assert catalog.items["year"].tolist()[0] == 1999 and pd.isna(catalog.items["year"].iloc[1])
    attrs = set(zip(catalog.item_attributes["item_id"], catalog.item_attributes["relation"],
                    catalog.item_attributes["entity"], strict=True))
    assert attrs == {("2", "director", "p1"), ("1", "genre", "Drama"), ("1", "year", "1999"),
                     ("1", "decade", "1990s")}


@pytest.mark.parametrize("make", ["missing", "file", "empty", "other"])
def test_unrecognised_paths(tmp_path, make):
    path = tmp_path / "data"
    if make == "file":
        path.write_text("x")
    elif make in ("empty", "other"):
        path.mkdir()
        if make == "other":
            (path / "ratings.csv").write_text("a,b\n")
    with pytest.raises(InputError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message and "Fix:" in message
    assert "items.parquet" in message and ".inter" in message


def test_relation_name_is_one_vocabulary_for_every_format():
    from rerec.data.schema import relation_name

    assert relation_name("film.film.directed_by") == relation_name("film.director.film") == "director"
    assert relation_name("film.film.edited_by") == "edited_by"  # any Freebase path: its last part
    assert relation_name("directedBy") == "directedBy" and relation_name("a.b") == "a.b"  # not a path
    assert relation_name("directedBy", {"directedBy": "director"}) == "director"
    # a mapping may name the source or the name rerec would give it
    assert relation_name("film.film.genre", {"film_genre": "genre"}) == "genre"
    assert relation_name("film.film.genre", {"film.film.genre": "kind"}) == "kind"


@pytest.mark.parametrize("pairs, problem", [
    (["director"], "FROM=TO"), (["=director"], "FROM=TO"), (["a="], "FROM=TO"), (["a=b=c"], "FROM=TO"),
    (["a=co_interaction"], "reserves"), (["a=b", "a=c"], "twice"),
])
def test_relation_map_errors(pairs, problem):
    from rerec.data.schema import parse_relation_map
    from rerec.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        parse_relation_map(pairs)


def test_relation_map_parses():
    from rerec.data.schema import parse_relation_map

    assert parse_relation_map([" directedBy = director", "starring=actor", "starring=actor"]) == {
        "directedBy": "director", "starring": "actor"}
    assert parse_relation_map(None) == {}


def test_timestamps_from_numbers_datetimes_and_iso_dates():
    from rerec.data.validate import TableSource, to_timestamp

    src = TableSource("t.parquet")
    values, how = to_timestamp(pd.Series([5, 6, None], dtype="float64"), src)
    assert values.tolist() == [5, 6, pd.NA] and how is None
    aware = pd.Series(pd.to_datetime(["1970-01-01T01:00:00+01:00", "1970-01-02T00:00:00+00:00"], utc=True))
    values, how = to_timestamp(aware, src)
    assert values.tolist() == [0, 86_400] and how == "datetimes"
    naive = pd.Series(pd.to_datetime(["1970-01-01 00:01:00"]))
    assert to_timestamp(naive, src)[0].tolist() == [60]
    values, how = to_timestamp(pd.Series(["1970-01-02", "1970-01-01T00:00:10+00:00", "", None]), src)
    assert values.tolist() == [86_400, 10, pd.NA, pd.NA] and how == "dates"


def test_recbole_normalisations_are_counted(tmp_path):
    folder = small_recbole(tmp_path / "data")
    write_atomic(folder, "toy.item", ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"],
                 [["1", "Toy Story", "1995", "(no genres listed)"], ["2", "Fargo", "1996", "Crime Drama Crime"],
                  ["3", "Raising Arizona", "1987", "Comedy"]])
    write_atomic(folder, "toy.inter", ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
                 [["u1", "1", "5", "10"], ["u1", "1", "2", "30"], ["u1", "1", "4", "20"], ["u2", "3", "4", "1"]])
    catalog = load_catalog(folder)
    assert catalog.items["genres"].tolist() == [[], ["Crime", "Drama"], ["Comedy"]]
    inter = catalog.interactions
    assert inter[["user_id", "item_id", "rating", "timestamp"]].values.tolist() == [["u1", "1", 2.0, 30], ["u2", "3", 4.0, 1]]
    notes = {n["key"]: n["count"] for n in catalog.meta["normalisations"]}
    assert notes["no_genre_marker"] == 1 and notes["repeated_genres_dropped"] == 1
    assert notes["duplicate_interactions"] == 2 and notes["relations_renamed"] > 0
