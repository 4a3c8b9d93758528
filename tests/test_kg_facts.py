"""The embedded knowledge graph states true facts about the embedded films.

RecBole's ``ml-100k.link`` is keyed by MovieLens global movie ids; read as ML-100k ids it attached
Hitchcock's films to A Goofy Movie and Fargo's director to To Catch a Thief. These tests pin public
facts (shared directors, sequels) so that a regression in the alignment fails CI.
"""

from __future__ import annotations

import pytest

from rerec.data.embedded import read_link_ids
from rerec.data.kg_check import graph_agreement
from rerec.data.load import load_catalog


@pytest.fixture(scope="module")
def movielens():
    return load_catalog(None)


def _ids(catalog, *titles_years):
    items = catalog.items
    found = []
    for title, year in titles_years:
        hit = items[(items["title"] == title) & (items["year"] == year)]
        assert len(hit) >= 1, (title, year)
        found.append(hit["item_id"].iloc[0])
    return found


def _entities(catalog, item_id, relation):
    a = catalog.item_attributes
    return set(a.loc[(a["item_id"] == item_id) & (a["relation"] == relation), "entity"])


@pytest.mark.parametrize("relation, films", [
    ("director", [("Psycho", 1960), ("Vertigo", 1958), ("Rebecca", 1940), ("North by Northwest", 1959),
                  ("Notorious", 1946)]),                                                   # Hitchcock
    ("director", [("Fargo", 1996), ("Raising Arizona", 1987), ("Hudsucker Proxy, The", 1994)]),  # the Coens
    ("director", [("Jurassic Park", 1993), ("Jaws", 1975), ("Schindler's List", 1993),
                  ("E.T. the Extra-Terrestrial", 1982)]),                                  # Spielberg
    ("director", [("Godfather, The", 1972), ("Godfather: Part II, The", 1974), ("Apocalypse Now", 1979)]),
])
def test_films_share_their_real_director(movielens, relation, films):
    ids = _ids(movielens, *films)
    shared = set.intersection(*(_entities(movielens, i, relation) for i in ids))
    assert shared, f"{films} share no {relation} entity"


@pytest.mark.parametrize("films", [
    [("Fargo", 1996), ("To Catch a Thief", 1955)],           # the evidence the scrambled graph gave
    [("Psycho", 1960), ("Jurassic Park", 1993)],
    [("North by Northwest", 1959), ("Gandhi", 1982)],
])
def test_films_by_different_directors_share_none(movielens, films):
    a, b = _ids(movielens, *films)
    assert not _entities(movielens, a, "director") & _entities(movielens, b, "director")


@pytest.mark.parametrize("first, second", [
    (("Jurassic Park", 1993), ("Lost World: Jurassic Park, The", 1997)),
    (("Grease", 1978), ("Grease 2", 1982)),
    (("Under Siege", 1992), ("Under Siege 2: Dark Territory", 1995)),
    (("Godfather, The", 1972), ("Godfather: Part II, The", 1974)),
])
def test_sequels_are_sequels(movielens, first, second):
    pairs = movielens.meta["kg_item_pairs"]
    a, b = _ids(movielens, first, second)
    sequel = pairs[(pairs["item_id"] == a) & (pairs["other_item_id"] == b)]
    assert "sequel" in set(sequel["relation"]), f"{second} is not recorded as the sequel of {first}"
    prequel = pairs[(pairs["item_id"] == b) & (pairs["other_item_id"] == a)]
    assert "prequel" in set(prequel["relation"])


def test_embedded_graph_agrees_with_the_item_table(movielens):
    result = graph_agreement(movielens.items, movielens.item_attributes, movielens.meta["kg_item_pairs"])
    assert result.verdict == "agrees"
    assert result.signals["genre"].z > 10 and result.signals["sequel"].observed > 0.5


def test_link_table_holds_ids_only():
    table = read_link_ids()
    assert list(table.columns) == ["link_id", "item_id", "tier", "score"]
    assert table["link_id"].str.fullmatch(r"\d+").all() and table["item_id"].str.fullmatch(r"\d+").all()
    assert set(table["tier"]) <= {"exact", "year_off_by_one", "fuzzy"}
    assert table["link_id"].nunique() > 1200  # 1,305 of RecBole's 1,598 links aligned
