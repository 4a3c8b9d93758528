"""The dual graphs: interaction graph (ids, edge_index, CSR, leakage rule, I/O), item-attribute graph,
the build-graphs stage and its manifest."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.utils import is_undirected

from rerec.errors import ConfigError, InputError, RerecError
from rerec.graphs.attributes import ItemAttributeGraph
from rerec.graphs.build import GraphConfig, build_graphs, excluded_pairs, verify_manifest
from rerec.graphs.interaction import InteractionGraph


def hand_interactions() -> pd.DataFrame:
    # users a, b; items x, y; (a, x) twice: the later row (rating 5) is kept.
    return pd.DataFrame({
        "user_id": ["a", "b", "a", "a"],
        "item_id": ["y", "y", "x", "x"],
        "rating": [4.0, 3.0, 1.0, 5.0],
        "timestamp": [10, 11, 12, 13],
    })


def test_hand_graph_edge_index_and_csr():
    g = InteractionGraph.from_interactions(hand_interactions())
    assert g.user_ids == ["a", "b"] and g.item_ids == ["x", "y"]
    # nodes: a=0 b=1 x=2 y=3
    assert g.edge_user.tolist() == [0, 0, 1] and g.edge_item.tolist() == [0, 1, 1]
    assert g.rowptr.tolist() == [0, 2, 3, 4, 6]
    assert g.col.tolist() == [2, 3, 3, 0, 0, 1]
    assert g.edge_index.tolist() == [[0, 0, 1, 2, 3, 3], [2, 3, 3, 0, 0, 1]]
    assert g.rating.tolist() == [5.0, 4.0, 3.0]  # duplicate (a, x): latest rating wins
    assert g.timestamp.tolist() == [13, 10, 11]
    assert g.items_of_user(0).tolist() == [0, 1]
    assert g.num_interactions == 3 and g.num_nodes == 4


def test_duplicate_without_timestamp_keeps_last_row():
    df = pd.DataFrame({"user_id": [1, 1], "item_id": [7, 7], "rating": [2.0, 4.0]})
    g = InteractionGraph.from_interactions(df)
    assert g.user_ids == ["1"] and g.item_ids == ["7"]  # ids become strings
    assert g.rating.tolist() == [4.0] and g.timestamp is None


def test_exclusion_of_val_test_pairs_keeps_ids():
    queries = pd.DataFrame({
        "user_id": ["a", "b", "a"],
        "positives": [["x"], ["y"], ["y"]],
        "split": ["val", "train", "test"],
    })
    pairs = excluded_pairs(queries, ["val", "test"])
    assert sorted(map(tuple, pairs.to_numpy())) == [("a", "x"), ("a", "y")]
    g = InteractionGraph.from_interactions(hand_interactions(), exclude_pairs=pairs)
    # only (b, y) survives; a and x keep their nodes so ids never shift
    assert g.user_ids == ["a", "b"] and g.item_ids == ["x", "y"]
    assert list(zip(g.edge_user.tolist(), g.edge_item.tolist(), strict=True)) == [(1, 1)]
    assert g.n_excluded == 3  # both (a, x) rows and the (a, y) row
    # tuples work too, and unknown ids in the pairs are ignored
    g2 = InteractionGraph.from_interactions(hand_interactions(), exclude_pairs=[("a", "x"), ("zz", "x")])
    assert g2.num_interactions == 2 and g2.n_excluded == 2


def test_item_universe_and_min_rating():
    g = InteractionGraph.from_interactions(hand_interactions(), item_ids=["z", "x"], min_rating=3.5)
    assert g.item_ids == ["x", "y", "z"]  # cold item z gets a node
    assert g.rowptr.diff().tolist() == [2, 0, 1, 1, 0]  # b's only rating (3.0) is below 3.5
    with pytest.raises(InputError, match="item_id"):
        InteractionGraph.from_interactions(pd.DataFrame({"user_id": ["a"]}))


def loop_reference(df: pd.DataFrame, excluded: set) -> tuple[list[str], list[str], list[list[int]]]:
    """Plain-Python construction: sorted ids, adjacency lists of the symmetric graph."""
    users = sorted({str(u) for u in df["user_id"]})
    items = sorted({str(i) for i in df["item_id"]})
    pairs = {(str(u), str(i)) for u, i in zip(df["user_id"], df["item_id"], strict=True)} - excluded
    adjacency: list[list[int]] = [[] for _ in range(len(users) + len(items))]
    for u, i in pairs:
        ui, ii = users.index(u), len(users) + items.index(i)
        adjacency[ui].append(ii)
        adjacency[ii].append(ui)
    return users, items, [sorted(a) for a in adjacency]


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_match_loop_reference(seed, tmp_path):
    rng = random.Random(seed)
    n_users, n_items, n_rows = rng.randint(1, 12), rng.randint(1, 15), rng.randint(1, 80)
    df = pd.DataFrame({
        "user_id": [f"u{rng.randrange(n_users)}" for _ in range(n_rows)],
        "item_id": [f"i{rng.randrange(n_items)}" for _ in range(n_rows)],
        "timestamp": [rng.randrange(1000) for _ in range(n_rows)],
    })
    rows = df.sample(frac=0.3, random_state=seed)
    excluded = {(u, i) for u, i in zip(rows["user_id"], rows["item_id"], strict=True)}
    g = InteractionGraph.from_interactions(df, exclude_pairs=sorted(excluded))
    users, items, adjacency = loop_reference(df, excluded)
    assert g.user_ids == users and g.item_ids == items
    rowptr, col = g.csr
    got = [col[rowptr[n]: rowptr[n + 1]].tolist() for n in range(g.num_nodes)]
    assert got == adjacency
    ei = g.edge_index
    assert ei.shape == (2, sum(map(len, adjacency)))
    assert torch.equal(ei[1], col)
    assert is_undirected(ei, num_nodes=g.num_nodes)
    assert (ei[0] < g.num_users).eq(ei[1] >= g.num_users).all()  # bipartite: every edge user<->item
    # round trip through torch.save / torch.load(weights_only=True)
    path = g.save(tmp_path)
    back = InteractionGraph.load(tmp_path)
    assert path.name == "interaction_graph.pt"
    assert back.user_ids == g.user_ids and back.item_ids == g.item_ids
    assert torch.equal(back.edge_index, g.edge_index) and torch.equal(back.timestamp, g.timestamp)
    assert back.n_excluded == g.n_excluded
    # each kept edge carries the latest timestamp of its (user, item) rows
    kept = df[[(u, i) not in excluded for u, i in zip(df["user_id"], df["item_id"], strict=True)]]
    latest = kept.groupby(["user_id", "item_id"])["timestamp"].max()
    got_ts = {(g.user_ids[u], g.item_ids[i]): t for u, i, t in
              zip(g.edge_user.tolist(), g.edge_item.tolist(), g.timestamp.tolist(), strict=True)}
    assert got_ts == latest.to_dict()


def test_edge_index_feeds_pyg_lightgcn():
    from torch_geometric.nn.models import LightGCN

    g = InteractionGraph.from_interactions(hand_interactions())
    model = LightGCN(g.num_nodes, embedding_dim=4, num_layers=2)
    out = model.get_embedding(g.edge_index)
    assert out.shape == (4, 4) and torch.isfinite(out).all()


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(InputError, match="missing"):
        InteractionGraph.load(tmp_path)
    torch.save({"something": torch.zeros(1)}, tmp_path / "interaction_graph.pt")
    with pytest.raises(InputError, match="not an interaction graph"):
        InteractionGraph.load(tmp_path)


# ---------------------------------------------------------------------------- attribute graph
def attribute_table() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": ["1", "1", "1", "2", "2", "2", "3", "1", None],
        "relation": ["director", "actor", "genre", "director", "actor", "actor", "genre", "genre", "genre"],
        "entity": ["m.coen", "m.mcd", "Comedy", "m.coen", "m.mcd", "m.buscemi", "Drama", "Comedy", "x"],
    })


def test_attribute_queries():
    g = ItemAttributeGraph(attribute_table())
    assert len(g) == 7  # one duplicate and one null row dropped
    assert g.satisfies("1", "director", "m.coen")
    assert not g.satisfies("1", "director", "m.mcd")  # entity exists, wrong relation
    assert not g.satisfies("9", "genre", "Comedy")  # unknown item
    assert g.attributes_of("2") == {"director": {"m.coen"}, "actor": {"m.mcd", "m.buscemi"}}
    assert g.attributes_of("missing") == {}
    assert g.shared_entities("1", "2") == {"actor": {"m.mcd"}, "director": {"m.coen"}}
    assert g.shared_entities("1", "3") == {}
    assert g.items_with("actor", "m.mcd") == {"1", "2"}
    assert g.items_with("actor", "nobody") == set()
    # returned sets are copies: mutating them does not change the graph
    g.items_with("actor", "m.mcd").add("3")
    assert not g.satisfies("3", "actor", "m.mcd")
    assert g.relations == ["actor", "director", "genre"]


def test_attribute_tensor_views():
    g = ItemAttributeGraph(attribute_table())
    assert g.entity_ids == ["Comedy", "Drama", "m.buscemi", "m.coen", "m.mcd"]
    edges = g.edge_index_dict(item_ids=["2", "1"])  # item 3 is outside this numbering
    assert edges["director"].tolist() == [[1, 0], [3, 3]]
    assert edges["actor"].tolist() == [[1, 0, 0], [4, 2, 4]]
    assert edges["genre"].tolist() == [[1], [0]]
    data = g.to_hetero_data()
    assert data["item"].num_nodes == 3 and data["entity"].num_nodes == 5
    assert data["entity", "rev_genre", "item"].edge_index.tolist() == [[0, 1], [0, 2]]


def test_attribute_save_load_round_trip(tmp_path):
    g = ItemAttributeGraph(attribute_table())
    g.save(tmp_path)
    back = ItemAttributeGraph.load(tmp_path)
    pd.testing.assert_frame_equal(back.table, g.table)
    assert back.attributes_of("2") == g.attributes_of("2")
    meta = json.loads((tmp_path / "item_attribute_graph.json").read_text())
    assert meta["rows"] == 7 and meta["rows_per_relation"] == {"actor": 3, "director": 2, "genre": 2}
    with pytest.raises(InputError, match="relation"):
        ItemAttributeGraph(pd.DataFrame({"item_id": ["1"], "entity": ["e"]}))


# ---------------------------------------------------------------------------- stage
def write_data_dir(path, with_queries=True):
    path.mkdir()
    pd.DataFrame({"item_id": ["x", "y", "z"], "title": ["X", "Y", "Z"]}).to_parquet(path / "items.parquet")
    hand_interactions().to_parquet(path / "interactions.parquet")
    attribute_table().dropna().to_parquet(path / "item_attributes.parquet")
    if with_queries:
        pd.DataFrame({
            "query_id": ["q1", "q2", "q3"], "user_id": ["a", "b", "b"],
            "positives": [["x"], ["y"], ["x"]], "split": ["test", "train", "val"],
        }).to_parquet(path / "queries.parquet")
    return path


def test_build_graphs_stage(tmp_path):
    data = write_data_dir(tmp_path / "data")
    manifest = build_graphs(data, tmp_path / "graphs", GraphConfig())
    counts = manifest["counts"]
    assert counts == {
        "users": 2, "items": 3, "interactions_in": 4, "edges": 2, "directed_edges": 4,
        "excluded_pairs": 2, "excluded_interactions": 2, "attribute_rows": 7, "attribute_items": 3,
        "relations": 3, "entities": 5,
    }
    assert sorted(p.name for p in (tmp_path / "graphs").iterdir()) == [
        "interaction_graph.pt", "item_attribute_graph.json", "item_attribute_graph.parquet", "manifest.json"]
    assert set(manifest["inputs"]) == {"interactions.parquet", "item_attributes.parquet", "items.parquet",
                                       "queries.parquet"}
    assert verify_manifest(tmp_path / "graphs") == manifest
    g = InteractionGraph.load(tmp_path / "graphs")
    assert (g.user_ids, g.item_ids) == (["a", "b"], ["x", "y", "z"])
    assert list(zip(g.edge_user.tolist(), g.edge_item.tolist(), strict=True)) == [(0, 1), (1, 1)]
    # the temporary folder of atomic_dir is gone
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_verify_manifest_names_corrupted_file(tmp_path):
    out = tmp_path / "graphs"
    build_graphs(write_data_dir(tmp_path / "data"), out)
    with open(out / "item_attribute_graph.parquet", "ab") as f:
        f.write(b"\0")
    with pytest.raises(RerecError, match="item_attribute_graph.parquet.*does not match"):
        verify_manifest(out)
    (out / "item_attribute_graph.parquet").unlink()
    with pytest.raises(RerecError, match="item_attribute_graph.parquet.*missing"):
        verify_manifest(out)
    with pytest.raises(RerecError, match="no graph manifest"):
        verify_manifest(tmp_path)


def test_build_graphs_bad_input_leaves_nothing(tmp_path):
    data = write_data_dir(tmp_path / "data", with_queries=False)
    pd.DataFrame({"user_id": ["a"]}).to_parquet(data / "interactions.parquet")
    with pytest.raises(InputError, match="interactions.parquet.*item_id"):
        build_graphs(data, tmp_path / "graphs")
    assert not (tmp_path / "graphs").exists()
    with pytest.raises(InputError, match="does not exist"):
        build_graphs(tmp_path / "nope", tmp_path / "graphs")
    with pytest.raises(ConfigError, match="holdout"):
        GraphConfig(exclude_splits=["holdout"])


def test_cli_build_graphs(tmp_path, capsys):
    from rerec.cli import main

    data = write_data_dir(tmp_path / "data")
    assert main(["build-graphs", "--data", str(data), "--out", str(tmp_path / "g")]) == 0
    assert "2 users, 3 items, 2 edges" in capsys.readouterr().out
    assert main(["build-graphs", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "g2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build-graphs", "--help"])
    assert exit_info.value.code == 0
    assert "manifest.json" in capsys.readouterr().out


def test_movielens_graph_counts_and_exclusion():
    from rerec.paths import movielens_100k_dir

    inter = pd.read_csv(movielens_100k_dir() / "ml-100k.inter", sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    g = InteractionGraph.from_interactions(inter)
    assert (g.num_users, g.num_items, g.num_interactions) == (943, 1682, 100_000)
    assert int(np.diff(g.rowptr.numpy())[: g.num_users].min()) >= 20  # ML-100k: >= 20 ratings a user
    held = inter.sample(n=1000, random_state=0)[["user_id", "item_id"]]
    g2 = InteractionGraph.from_interactions(inter, exclude_pairs=held)
    assert g2.num_interactions == 99_000 and g2.n_excluded == 1000
    assert (g2.user_ids, g2.item_ids) == (g.user_ids, g.item_ids)
    edges = set(zip((g2.user_ids[u] for u in g2.edge_user.tolist()),
                    (g2.item_ids[i] for i in g2.edge_item.tolist()), strict=True))
    assert not edges & set(zip(held["user_id"].astype(str), held["item_id"].astype(str), strict=True))


@pytest.mark.slow
def test_movielens_attribute_graph_matches_catalog():
    from rerec.data.load import load_catalog

    catalog = load_catalog(None)
    g = ItemAttributeGraph(catalog.item_attributes)
    items = catalog.items.set_index("item_id")
    # the named genre attribute agrees with the item table, both ways
    comedies = {i for i, genres in items["genres"].items() if "Comedy" in list(genres)}
    assert comedies and g.items_with("genre", "Comedy") == comedies
    assert {"actor", "director", "genre", "year", "decade"} <= set(g.relations)
    # two films of one director share that director
    director_rows = catalog.item_attributes[catalog.item_attributes["relation"] == "director"]
    entity, films = next((e, grp["item_id"].tolist()) for e, grp in director_rows.groupby("entity") if len(grp) >= 2)
    assert entity in g.shared_entities(films[0], films[1])["director"]
    assert all(g.satisfies(f, "director", entity) for f in films)
