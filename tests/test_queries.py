"""Query generation on the real MovieLens-100k: every type's invariants, checked against the catalog's
own tables (not the generator's index), plus determinism, small candidate lists and phrasing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rerec.data.load import load_catalog
from rerec.data.phrasing import display_title, join_words
from rerec.data.queries import (
    CO_INTERACTION,
    QueryConfig,
    co_interaction_neighbours,
    generate_queries,
    popularity_weights,
)
from rerec.data.schema import PERSON_RELATIONS, QUERY_COLUMNS, QUERY_TYPES, Catalog, decode_conditions
from rerec.data.splits import audit_queries
from rerec.errors import ConfigError, InputError
from rerec.prompt import CatalogView, shrink_candidates

N = 20


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(None)


@pytest.fixture(scope="module")
def queries(catalog) -> pd.DataFrame:
    return generate_queries(catalog, QueryConfig(), progress=False)


@pytest.fixture(scope="module")
def pairs(catalog) -> set[tuple[str, str, str]]:
    a = catalog.item_attributes
    return set(zip(a["item_id"], a["relation"], a["entity"], strict=True))


@pytest.fixture(scope="module")
def entities(catalog) -> dict[tuple[str, str], set[str]]:
    """(item, relation) -> entities, from item_attributes."""
    grouped = catalog.item_attributes.groupby(["item_id", "relation"])["entity"]
    return {key: set(group) for key, group in grouped}


@pytest.fixture(scope="module")
def neighbours(catalog):
    matrix = co_interaction_neighbours(catalog, top_m=100, min_rating=4.0)
    position = {item: i for i, item in enumerate(catalog.items["item_id"])}
    return lambda x, i: bool(matrix[position[x], position[i]])


def _meets(condition: dict, item: str, pairs, entities, neighbours) -> bool:
    """Whether ``item`` answers the condition as the request states it."""
    relation = condition["relation"]
    if relation == CO_INTERACTION:
        return neighbours(condition["via"], item)
    if "via" in condition:  # "the director of X": any of X's directors answers the request
        return bool(entities.get((condition["via"], relation), set()) & entities.get((item, relation), set()))
    return (item, relation, condition["entity"]) in pairs


def test_columns_counts_and_types(queries):
    assert list(queries.columns) == QUERY_COLUMNS + ["history", "n_conditions"]
    assert len(queries) >= 5000
    counts = queries["type"].value_counts().to_dict()
    assert counts == {"explicit": 2000, "implicit": 1500, "misinformed": 1000, "interest": 1000}
    assert queries["query_id"].is_unique
    explicit = queries[queries["type"] == "explicit"]
    assert set(explicit["n_conditions"]) == {1, 2, 3, 4}
    assert (queries["n_conditions"] == queries["conditions"].map(lambda c: len(decode_conditions(c)))).all()


def test_candidates_positive_and_history(queries, catalog):
    liked = catalog.interactions[catalog.interactions["rating"] >= 4]
    liked_pairs = set(zip(liked["user_id"], liked["item_id"], strict=True))
    for row in queries.itertuples():
        (positive,) = row.positives
        assert len(row.candidates) == N and len(set(row.candidates)) == N
        assert positive in row.candidates
        assert positive not in row.history
        assert not set(row.candidates) & set(row.history), "history items are never candidates"
        assert 1 <= len(row.history) <= 10
        assert (row.user_id, positive) in liked_pairs, "the positive is an item the user rated >= 4"
    # shuffled: the positive is not always in the same slot
    slots = queries.apply(lambda r: r.candidates.index(r.positives[0]), axis=1)
    assert slots.nunique() == N


def test_positive_meets_every_condition_and_each_negative_fails_one(queries, pairs, entities, neighbours):
    for row in queries.itertuples():
        conditions = decode_conditions(row.conditions)
        (positive,) = row.positives
        for c in conditions:
            if c["relation"] != CO_INTERACTION:
                # the stored pair itself is in item_attributes for the positive (what QAS checks)
                assert (positive, c["relation"], c["entity"]) in pairs, (row.query_id, c)
            assert _meets(c, positive, pairs, entities, neighbours), (row.query_id, c)
        for negative in row.candidates:
            if negative != positive:
                assert not all(_meets(c, negative, pairs, entities, neighbours) for c in conditions), \
                    (row.query_id, negative)


def test_hard_negatives_meet_some_conditions(queries, pairs, entities, neighbours):
    multi = queries[queries["n_conditions"] >= 2]
    assert set(multi["type"]) == set(QUERY_TYPES)
    hard_counts = []
    for row in multi.itertuples():
        conditions = decode_conditions(row.conditions)
        hard = [i for i in row.candidates if i != row.positives[0]
                and any(_meets(c, i, pairs, entities, neighbours) for c in conditions)]
        hard_counts.append(len(hard))
    hard_counts = np.array(hard_counts)
    assert (hard_counts > 0).mean() > 0.95
    assert np.median(hard_counts) >= 8  # about half of the 19 negatives


def test_negatives_are_never_items_the_user_interacted_with(queries, catalog):
    seen = catalog.interactions.groupby("user_id")["item_id"].apply(set).to_dict()
    bad = sum(c in seen[row.user_id] for row in queries.itertuples() for c in row.candidates if c != row.positives[0])
    assert bad == 0


def test_no_heldout_positive_is_shown_in_any_prompt_of_its_user(queries):
    """Val/test positives never appear in a history or as a named (via) item of any query of the same
    user, train queries included; a (user, positive) pair has one split; shares follow the fractions."""
    held: dict[str, set[str]] = {}
    for row in queries[queries["split"] != "train"].itertuples():
        held.setdefault(row.user_id, set()).update(row.positives)
    for row in queries.itertuples():
        shown = set(row.history) | {c["via"] for c in decode_conditions(row.conditions) if "via" in c}
        assert not shown & held.get(row.user_id, set()), row.query_id
    assert queries.groupby([queries["user_id"], queries["positives"].str[0]])["split"].nunique().max() == 1
    shares = queries["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.02)
    assert shares["val"] == pytest.approx(0.1, abs=0.02) and shares["test"] == pytest.approx(0.1, abs=0.02)
    audit = audit_queries(queries, pd.DataFrame({"user_id": [], "item_id": []}))
    assert audit["heldout_in_history"] == audit["heldout_named"] == 0 and audit["heldout_queries"] > 900


def test_audit_queries_hand_computed():
    queries = pd.DataFrame({
        "query_id": ["t1", "t2", "v1", "v2"], "user_id": ["u", "u", "u", "w"], "split": ["train", "train", "val", "test"],
        "conditions": ["[]", json.dumps([{"relation": "actor", "entity": "m", "via": "z"}]), "[]", "[]"],
        "positives": [["a"], ["b"], ["x"], ["z"]],
        "candidates": [["a", "n1", "seen"], ["b", "n2"], ["x", "n3"], ["z", "seen"]],
        "history": [["x", "h"], ["h"], ["h"], []],
    })
    interactions = pd.DataFrame({"user_id": ["u", "u", "w"], "item_id": ["seen", "h", "q"]})
    audit = audit_queries(queries, interactions)
    # negatives: n1, seen, n2, n3, seen; u interacted with 'seen' (w did not)
    assert audit == {"negatives": 5, "negatives_in_user_items": 1, "heldout_queries": 2, "heldout_in_history": 1,
                     "heldout_in_train_history": 1, "heldout_named": 0}
    # the via item of a train query of the same user counts as shown
    queries.loc[3, "user_id"] = "u"
    assert audit_queries(queries, interactions)["heldout_named"] == 1


def test_misinformed_trap_survives_shrinking(queries, catalog):
    view = CatalogView.from_catalog(catalog)
    misinformed = queries[queries["type"] == "misinformed"].head(300)
    for n in (2, 3, 4, 8):
        for row in misinformed.to_dict("records"):
            (trap,) = [c["false_premise"]["item_id"] for c in decode_conditions(row["conditions"])
                       if "false_premise" in c]
            shown = shrink_candidates(row, n, view, seed=0)["candidates"]
            assert trap in shown and row["positives"][0] in shown and len(shown) == n


def test_explicit_conditions_are_named_and_distinct(queries):
    for conditions in queries.loc[queries["type"] == "explicit", "conditions"].map(decode_conditions):
        relations = [c["relation"] for c in conditions]
        assert set(relations) <= {"genre", "decade", "year"}
        assert sum(r in ("decade", "year") for r in relations) <= 1
        assert len({(c["relation"], c["entity"]) for c in conditions}) == len(conditions)


def test_implicit_hops_through_a_history_item(queries, entities):
    implicit = queries[queries["type"] == "implicit"]
    relations = set()
    for row in implicit.itertuples():
        hop = decode_conditions(row.conditions)[0]
        assert hop["relation"] in PERSON_RELATIONS
        relations.add(hop["relation"])
        assert hop["via"] in row.history and hop["via"] != row.positives[0]
        assert hop["entity"] in entities[(hop["via"], hop["relation"])], "the positive shares the entity with X"
        assert "false_premise" not in hop
    assert relations == set(PERSON_RELATIONS)


def test_misinformed_premise_is_really_false_and_is_a_trap(queries, entities):
    misinformed = queries[queries["type"] == "misinformed"]
    kinds = set()
    for row in misinformed.itertuples():
        conditions = decode_conditions(row.conditions)
        (wrong,) = [c for c in conditions if "false_premise" in c]
        premise = wrong["false_premise"]["item_id"]
        assert premise in row.candidates and premise != row.positives[0]
        if "via" in wrong:
            kinds.add("hop")
            assert wrong["via"] in row.history
            # Y shares none of X's people of that relation: the stated link does not exist
            assert not entities[(wrong["via"], wrong["relation"])] & entities.get((premise, wrong["relation"]), set())
        else:
            kinds.add("genre")
            assert wrong["entity"] not in entities.get((premise, "genre"), set())
    assert kinds == {"hop", "genre"}


def test_interest_vias_are_in_history_and_co_interacted(queries, neighbours):
    interest = queries[queries["type"] == "interest"]
    for row in interest.itertuples():
        conditions = decode_conditions(row.conditions)
        assert {c["relation"] for c in conditions} == {CO_INTERACTION}
        for c in conditions:
            assert c["via"] == c["entity"] and c["via"] in row.history
            assert neighbours(c["via"], row.positives[0])


def test_text_uses_several_phrasings_and_names_the_via_item(queries, catalog):
    for qtype in QUERY_TYPES:
        texts = queries.loc[queries["type"] == qtype, "text"]
        assert texts.str.split().str[:3].str.join(" ").nunique() >= 4, qtype
    titles = catalog.titles()
    row = queries[queries["type"] == "implicit"].iloc[0]
    via_title = display_title(titles[decode_conditions(row.conditions)[0]["via"]])
    assert via_title in row.text


def test_deterministic_for_a_seed_and_other_types_unaffected(catalog):
    small = QueryConfig(n_explicit=60, n_implicit=40, n_misinformed=40, n_interest=40, n_candidates=4, seed=7)
    first = generate_queries(catalog, small, progress=False)
    again = generate_queries(catalog, small, progress=False)
    pd.testing.assert_frame_equal(first, again)
    other_seed = generate_queries(catalog, QueryConfig(**{**small.__dict__, "seed": 8}), progress=False)
    assert not first["text"].equals(other_seed["text"])
    # each type has its own random stream: fewer interest queries leave the explicit ones unchanged
    fewer = generate_queries(catalog, QueryConfig(**{**small.__dict__, "n_interest": 5}), progress=False)
    pd.testing.assert_frame_equal(first[first["type"] == "explicit"], fewer[fewer["type"] == "explicit"])


def test_small_candidate_lists(catalog, pairs, entities, neighbours):
    config = QueryConfig(n_explicit=30, n_implicit=30, n_misinformed=30, n_interest=30, n_candidates=4,
                         hard_negative_share=1.0, seed=3)
    queries = generate_queries(catalog, config, progress=False)
    assert len(queries) == 120
    for row in queries.itertuples():
        assert len(row.candidates) == 4 and row.positives[0] in row.candidates
        conditions = decode_conditions(row.conditions)
        if len(conditions) >= 2:  # share 1.0: every negative meets some condition where enough exist
            negatives = [i for i in row.candidates if i != row.positives[0]]
            assert all(any(_meets(c, i, pairs, entities, neighbours) for c in conditions) for i in negatives)


def test_hand_built_catalog_explicit():
    """Five items, one user: the only comedy of the 1990s the user loved is the positive; the other
    candidates each miss a condition."""
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"], "title": ["A", "B", "C", "D", "E"],
                          "year": pd.array([1995, 1995, 1985, 1985, 1992], dtype="Int64"),
                          "genres": [["Comedy"], ["Drama"], ["Comedy"], ["Drama"], ["Horror"]]})
    rows = []
    for i, (y, g) in zip(items["item_id"], zip(items["year"], items["genres"], strict=True), strict=True):
        rows += [(i, "genre", g[0]), (i, "year", str(y)), (i, "decade", f"{y // 10 * 10}s")]
    attrs = pd.DataFrame(rows, columns=["item_id", "relation", "entity"])
    inter = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "e"], "rating": [5.0, 2.0, 1.0],
                          "timestamp": pd.array([1, 2, 3], dtype="Int64")})
    catalog = Catalog(items, inter, attrs)
    config = QueryConfig(n_explicit=3, n_implicit=0, n_misinformed=0, n_interest=0, n_candidates=3,
                         max_conditions=2, history_size=1)
    queries = generate_queries(catalog, config, progress=False)
    assert len(queries) >= 1
    for row in queries.itertuples():
        assert row.positives == ["a"]  # the only item rated >= 4
        assert row.history in (["b"], ["e"])
        assert len(row.candidates) == 3
        assert not set(row.candidates) & set(row.history)
        conditions = {(c["relation"], c["entity"]) for c in decode_conditions(row.conditions)}
        assert conditions <= {("genre", "Comedy"), ("decade", "1990s"), ("year", "1995")}


def _four_films(graph_rows=()) -> Catalog:
    items = pd.DataFrame({"item_id": list("abcd"), "title": list("ABCD"), "year": pd.array([1995] * 4, dtype="Int64"),
                          "genres": [["Comedy"], ["Drama"], ["Comedy"], ["Drama"]]})
    attrs = pd.DataFrame([(i, "genre", g[0]) for i, g in zip(items["item_id"], items["genres"], strict=True)]
                         + list(graph_rows), columns=["item_id", "relation", "entity"])
    inter = pd.DataFrame({"user_id": ["u", "u", "v", "v"], "item_id": ["a", "b", "c", "d"], "rating": [5.0] * 4})
    return Catalog(items, inter, attrs)


def test_a_requested_type_the_catalog_cannot_give_is_an_error():
    """A graph without any person relation (a naming slip, as often as not): implicit queries cannot
    exist. Asking for them fails naming the cause and the flags, instead of writing an empty table."""
    catalog = _four_films([("a", "language", "en"), ("b", "language", "en")])
    config = QueryConfig(n_explicit=0, n_implicit=2, n_misinformed=0, n_interest=0, n_candidates=2)
    with pytest.raises(InputError, match="person relation") as info:
        generate_queries(catalog, config, progress=False)
    assert "--relation-map" in str(info.value) and "--n-implicit 0" in str(info.value)
    assert '{"prepare": {"n_implicit": 0}}' in str(info.value)  # the same fix for rerec run and Kubeflow
    assert "language" in str(info.value)  # the relations it has


def test_a_catalog_without_a_graph_skips_the_graph_query_types(caplog):
    """Genres and years only (ml-latest-small): implicit and misinformed queries are skipped with a
    warning that says why, and the other types are built."""
    config = QueryConfig(n_explicit=4, n_implicit=2, n_misinformed=2, n_interest=0, n_candidates=2)
    with caplog.at_level("WARNING"):
        queries = generate_queries(_four_films(), config, progress=False)
    assert set(queries["type"]) == {"explicit"}
    assert set(queries.attrs["skipped_types"]) == {"implicit", "misinformed"}
    assert "no knowledge graph" in caplog.text and "implicit queries skipped" in caplog.text


def test_config_errors():
    with pytest.raises(ConfigError, match="n_candidates"):
        QueryConfig(n_candidates=1)
    with pytest.raises(ConfigError, match="hard_negative_share"):
        QueryConfig(hard_negative_share=1.5)
    with pytest.raises(ConfigError, match="max_conditions"):
        QueryConfig(max_conditions=5)


def test_phrasing_helpers():
    assert display_title("Usual Suspects, The") == "The Usual Suspects"
    assert display_title("Toy Story") == "Toy Story"
    assert join_words(["a"]) == "a"
    assert join_words(["a", "b"]) == "a and b"
    assert join_words(["a", "b", "c"]) == "a, b and c"


def test_popularity_weights_hand_computed():
    popularity = np.array([np.e - 1, np.e**2 - 1, np.e**3 - 1, 0.0])  # log1p: 1, 2, 3, 0
    w = popularity_weights(popularity, np.array([0, 2, 3]), positive=1, bandwidth=1.0)
    raw = np.exp(-0.5 * np.array([1.0, 1.0, 4.0])) + 1e-9  # gaps to log1p(pop[1]) = 2: -1, +1, -2
    np.testing.assert_allclose(w, raw / raw.sum())
    assert popularity_weights(popularity, np.array([0, 2]), positive=1, bandwidth=0.0) is None  # uniform


def test_popularity_alone_does_not_find_the_positive(catalog, queries):
    """Negatives are drawn near the positive's popularity: "the most popular candidate" is about chance
    (it answered 31.6% with uniform negatives), while the uniform draw keeps the old shortcut."""
    counts = catalog.interactions["item_id"].astype(str).value_counts()

    def popularity_acc(frame: pd.DataFrame) -> float:
        best = [max(c, key=lambda i: counts.get(str(i), 0)) for c in frame["candidates"]]
        return float(np.mean([b == p[0] for b, p in zip(best, frame["positives"], strict=True)]))

    assert popularity_acc(queries) < 1.6 / N
    uniform = generate_queries(catalog, QueryConfig(n_explicit=300, n_implicit=0, n_misinformed=0, n_interest=0,
                                                    popularity_bandwidth=0.0), progress=False)
    assert popularity_acc(uniform) > 4 / N


def _dense_neighbours(catalog: Catalog, m: int, min_rating: float) -> np.ndarray:
    """The co-interaction neighbourhoods as rerec computed them before issue 28: dense items x items
    float32 products, a stable argsort of each row, the first m kept where co-liked (the reference)."""
    items = pd.Index(catalog.items["item_id"].astype(str))
    inter = catalog.interactions
    liked = inter[inter["rating"] >= min_rating]
    users = pd.Index(np.sort(liked["user_id"].astype(str).unique()))
    matrix = np.zeros((len(users), len(items)), dtype=np.float32)
    matrix[users.get_indexer(liked["user_id"].astype(str)), items.get_indexer(liked["item_id"].astype(str))] = 1.0
    co = matrix.T @ matrix
    support = np.diag(co).copy()
    union = support[:, None] + support[None, :] - co
    jaccard = np.divide(co, union, out=np.zeros_like(co), where=union > 0)
    np.fill_diagonal(jaccard, -1.0)
    co_liked = co > 0
    np.fill_diagonal(co_liked, False)
    out = np.zeros(co.shape, dtype=bool)
    np.put_along_axis(out, np.argsort(-jaccard, axis=1, kind="stable")[:, : min(m, len(items) - 1)], True, axis=1)
    return out & co_liked


def _tied_catalog(seed: int, n_items: int = 60, n_users: int = 40) -> Catalog:
    """Few users and items: many Jaccard ties (the ranking breaks them by item order), items nobody
    liked, a user who liked everything."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(n_users) for i in range(n_items)
            if rng.random() < 0.15]
    rows += [("heavy", f"i{i}", 5.0) for i in range(0, n_items, 2)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": [f"T{i}" for i in range(n_items)]})
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    return Catalog(items=items, interactions=inter,
                   item_attributes=pd.DataFrame(columns=["item_id", "relation", "entity"]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("cells", "pairs"), [(1 << 24, 1 << 24), (120, 1 << 24), (1 << 24, 50), (61, 1)])
def test_sparse_chunked_neighbours_equal_the_dense_ranking(monkeypatch, seed, cells, pairs):
    """Sparse, chunked co-interaction (issue 28: a 50k-item catalog needed a 9.3 GiB dense matrix) gives
    the dense computation's neighbourhoods exactly, ties included, whatever the chunk sizes."""
    from rerec.data import queries as q

    monkeypatch.setattr(q, "_CHUNK_CELLS", cells)
    monkeypatch.setattr(q, "_CHUNK_PAIRS", pairs)
    catalog = _tied_catalog(seed)
    for m in (1, 3, 10, 59, 200):
        got = co_interaction_neighbours(catalog, top_m=m, min_rating=4.0)
        assert (got.to_dense() == _dense_neighbours(catalog, m, 4.0)).all(), m
        wide = co_interaction_neighbours(catalog, top_m=m, min_rating=4.0, wide=3)
        assert (wide.limit(m).to_dense() == got.to_dense()).all()
        for x in range(len(catalog.items)):
            row = wide.row(x)
            assert len(set(row.tolist())) == len(row) and x not in row.tolist()
            assert got[x, int(row[0])] if len(row) else not got.mask(x).any()


def test_neighbours_on_movielens_equal_the_dense_ranking(catalog):
    for m in (100, 300):
        assert (co_interaction_neighbours(catalog, top_m=m, min_rating=4.0).to_dense()
                == _dense_neighbours(catalog, m, 4.0)).all()


def test_query_generation_keeps_no_vector_over_all_items_per_user(catalog):
    """Per-user dense masks cost users x items (20 GB at MovieLens-25M size); users keep their own items."""
    from rerec.data.queries import _Index

    index = _Index(catalog, QueryConfig())
    for user in index.users[:50]:
        for value in vars(user).values():
            assert not (isinstance(value, np.ndarray) and value.size == index.n and index.n > len(user.items))
        assert user.mask.sum() == len(user.items) and all(user.shown[p] for p in user.liked[user.liked_split == "train"])


def test_one_film_under_two_ids_is_never_its_own_answer_or_the_positives_twin():
    """ML-100k lists some films twice (Chasing Amy as 246 and 268). With the aligned graph both ids
    share every fact, so "a movie by the writer of Chasing Amy" could be answered by Chasing Amy, and the
    positive's twin could sit among the negatives: neither may happen."""
    from rerec.data.load import load_catalog

    catalog = load_catalog(None)
    items = catalog.items
    film = (items["title"].str.lower() + "|" + items["year"].astype("string").fillna("")).to_numpy()
    film_of = dict(zip(items["item_id"], film, strict=True))
    assert len(film_of) - len(set(film)) >= 15  # the catalog does hold such twins
    config = QueryConfig(n_explicit=100, n_implicit=300, n_misinformed=100, n_interest=100, n_candidates=20, seed=3)
    queries = generate_queries(catalog, config, progress=False)
    for q in queries.itertuples():
        positive = film_of[q.positives[0]]
        named = {film_of[h] for h in q.history}
        assert positive not in named, q.query_id
        negatives = [film_of[c] for c in q.candidates if c not in q.positives]
        assert positive not in negatives and not named & set(negatives), q.query_id


def test_paraphrase_rewords_only_the_text_and_default_stays_byte_identical(catalog):
    """paraphrase = 0 (default) leaves every text as the base templates wrote it: the frame equals one made
    without the field; a share rewords that share of the texts and changes nothing else."""
    from rerec.data.phrasing import reword_request

    small = QueryConfig(n_explicit=40, n_implicit=30, n_misinformed=30, n_interest=30, n_candidates=4, seed=3)
    base = generate_queries(catalog, small, progress=False)
    assert QueryConfig().paraphrase == 0.0
    para = generate_queries(catalog, QueryConfig(**{**small.__dict__, "paraphrase": 0.5}), progress=False)
    pd.testing.assert_frame_equal(base.drop(columns="text"), para.drop(columns="text"))
    changed = base["text"] != para["text"]
    assert 0.3 < changed.mean() < 0.7
    again = generate_queries(catalog, QueryConfig(**{**small.__dict__, "paraphrase": 0.5}), progress=False)
    pd.testing.assert_frame_equal(para, again)
    titles = catalog.titles()
    for row in para[changed].itertuples():
        conditions = decode_conditions(row.conditions)
        for c in conditions:  # the same films are named
            for item in [c.get("via"), (c.get("false_premise") or {}).get("item_id")]:
                if item is not None:
                    assert display_title(titles[item]) in row.text, (row.text, titles[item])
    row = para[changed & (para["type"] == "explicit")].iloc[0]
    assert reword_request("explicit", decode_conditions(row.conditions), titles, "train",
                          np.random.default_rng(0)) is not None
    with pytest.raises(ConfigError, match="paraphrase"):
        QueryConfig(paraphrase=1.5)


def test_paraphrased_request_gives_each_query_the_words_prepare_data_wrote(catalog):
    """paraphrased_request, asked afterwards for a query of a frame prepared without paraphrases, returns the
    text prepare-data --paraphrase wrote for that query (the same share, seed and words), None for the others;
    an id not of the generated form still gets a reproducible draw."""
    from rerec.data.queries import paraphrased_request

    small = QueryConfig(n_explicit=40, n_implicit=30, n_misinformed=30, n_interest=30, n_candidates=4, seed=3)
    base = generate_queries(catalog, small, progress=False)
    para = generate_queries(catalog, QueryConfig(**{**small.__dict__, "paraphrase": 0.5}), progress=False)
    titles = catalog.titles()
    reworded = 0
    for before, after in zip(base.to_dict("records"), para.to_dict("records"), strict=True):
        text = paraphrased_request(before, titles, seed=3, share=0.5)
        assert (text or before["text"]) == after["text"], before["query_id"]
        reworded += text is not None
        assert paraphrased_request(before, titles, seed=3, share=0.0) is None
    assert 0.3 * len(base) < reworded < 0.7 * len(base)
    other = {**base.iloc[0].to_dict(), "query_id": "my-own-id"}
    once = paraphrased_request(other, titles, 3, 1.0)
    assert once is not None and paraphrased_request(other, titles, 3, 1.0) == once


def test_heldout_phrasings_share_no_template_with_training():
    """The held-out family (evaluation only) has no template and no wording of a condition in common with the
    paraphrases or the base templates: no three-word sequence of its fixed words appears in theirs."""
    import inspect
    import re

    from rerec.data import phrasing

    def trigrams(text: str) -> set[tuple[str, ...]]:
        words = re.sub(r"\{[^}]*\}", " | ", text.lower())
        out = set()
        for chunk in words.split("|"):
            w = re.findall(r"[a-z']+", chunk)
            out |= {tuple(w[i:i + 3]) for i in range(len(w) - 2)}
        return out

    heldout = set().union(*[trigrams(t) for ts in phrasing._FAMILY["heldout"].values() for t in ts])
    train = set().union(*[trigrams(t) for ts in phrasing._FAMILY["train"].values() for t in ts])
    base = trigrams(inspect.getsource(phrasing).split("# Rewording a generated request")[0])
    assert heldout and not heldout & train and not heldout & base
    assert set(phrasing._FAMILY["heldout"]) == set(phrasing._FAMILY["train"])
