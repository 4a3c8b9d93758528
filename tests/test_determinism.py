"""Same seed and config, same results on CPU: queries (real MovieLens-100k), graphs, LightGCN metrics
and embeddings. A different seed must change the queries, so that the test can fail."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rerec.data.prepare import PrepareConfig, prepare_data
from rerec.graphs.build import build_graphs
from rerec.io import tree_sha256

torch.set_num_threads(1)

SMALL = dict(n_explicit=60, n_implicit=40, n_misinformed=30, n_interest=30)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    outs = {}
    for name, seed in (("a", 0), ("b", 0), ("other_seed", 1)):
        prepare_data(None, root / name, PrepareConfig(seed=seed, **SMALL), progress=False)
        outs[name] = root / name
    return outs


def test_same_seed_same_queries_and_manifest(prepared):
    a, b = prepared["a"], prepared["b"]
    qa, qb = pd.read_parquet(a / "queries.parquet"), pd.read_parquet(b / "queries.parquet")
    assert len(qa) == sum(SMALL.values())
    pd.testing.assert_frame_equal(qa, qb)
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["files"] == mb["files"]  # sha256 of every table and stats.json
    assert tree_sha256(a) == tree_sha256(b)  # byte for byte, the manifest included


def test_other_seed_other_queries(prepared):
    qa = pd.read_parquet(prepared["a"] / "queries.parquet")
    qo = pd.read_parquet(prepared["other_seed"] / "queries.parquet")
    assert not qa["text"].equals(qo["text"])
    ma, mo = (json.loads((prepared[p] / "manifest.json").read_text()) for p in ("a", "other_seed"))
    assert ma["files"]["queries.parquet"]["sha256"] != mo["files"]["queries.parquet"]["sha256"]
    assert ma["files"]["items.parquet"] == mo["files"]["items.parquet"]  # the catalog does not depend on it


def test_same_data_same_graphs(prepared, tmp_path):
    m1 = build_graphs(prepared["a"], tmp_path / "g1")
    m2 = build_graphs(prepared["b"], tmp_path / "g2")
    assert m1["outputs"] == m2["outputs"] and m1["inputs"] == m2["inputs"] and m1["counts"] == m2["counts"]
    t1, t2 = tree_sha256(tmp_path / "g1"), tree_sha256(tmp_path / "g2")
    assert {k: v for k, v in t1.items() if k != "manifest.json"} == {k: v for k, v in t2.items() if k != "manifest.json"}
    m3 = build_graphs(prepared["other_seed"], tmp_path / "g3")  # other val/test pairs are left out
    assert m3["outputs"]["interaction_graph.pt"] != m1["outputs"]["interaction_graph.pt"]


def planted(path, seed=0):
    """Three taste groups of users, each liking most of its group's 12 items."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, n_users in (("a", 30), ("b", 15), ("c", 10)):
        for u in range(n_users):
            rows += [(f"{g}u{u}", f"{g}{i}") for i in rng.choice(12, size=8, replace=False)]
    items = [f"{g}{i}" for g in "abc" for i in range(12)]
    path.mkdir()
    pd.DataFrame({"item_id": items, "title": items}).to_parquet(path / "items.parquet")
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_parquet(path / "interactions.parquet")
    pd.DataFrame({"item_id": items, "relation": "genre", "entity": [i[0] for i in items]}).to_parquet(
        path / "item_attributes.parquet")
    return path


def test_same_seed_same_lightgcn_metrics_and_embeddings(tmp_path):
    from rerec.reward import lightgcn

    build_graphs(planted(tmp_path / "data"), tmp_path / "graphs")
    config = dict(embedding_dim=8, num_layers=2, epochs=12, batch_size=128, lr=0.02, valid_fraction=0.2,
                  test_fraction=0.2, k=5, eval_every=2, patience=100, threads=1)
    runs = []
    for name, seed in (("r1", 0), ("r2", 0), ("r3", 1)):
        metrics = lightgcn.train_reward_gnn(tmp_path / "graphs", tmp_path / name,
                                            lightgcn.LightGCNConfig(seed=seed, **config))
        metrics.pop("train_seconds")
        runs.append(metrics)
    assert runs[0] == runs[1]  # held-out Recall/NDCG, the loss history, best epoch: all equal
    assert runs[0]["history"][-1]["loss"] > 0
    h1, h2 = tree_sha256(tmp_path / "r1"), tree_sha256(tmp_path / "r2")
    for name in (lightgcn.ITEM_EMBEDDINGS, lightgcn.USER_EMBEDDINGS):
        assert h1[name] == h2[name]
    assert runs[2]["history"] != runs[0]["history"]  # another seed really changes training
