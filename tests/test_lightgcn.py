"""The LightGCN reward GNN: hold-out split, ranking metrics by hand, propagation equal to PyG's
get_embedding, negative sampling, the stage on a planted graph, and ML-100k (slow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.nn.models import LightGCN

from rerec.errors import ConfigError, InputError, RerecError
from rerec.graphs.build import build_graphs
from rerec.graphs.interaction import InteractionGraph
from rerec.reward.lightgcn import (
    LightGCNConfig,
    evaluate_scores,
    load_embeddings,
    normalized_adjacency,
    propagate,
    ranking_metrics,
    sample_negatives,
    split_holdout,
    train_reward_gnn,
    users_to_score,
)


def test_split_holdout_counts_per_user_and_seed():
    # user 0 has 10 edges, user 1 has 5, user 2 has 1
    edge_user = torch.tensor([0] * 10 + [1] * 5 + [2])
    part = split_holdout(edge_user, 3, (0.1, 0.2), seed=7)
    counts = {u: np.bincount(part[edge_user == u].numpy(), minlength=3).tolist() for u in range(3)}
    assert counts == {0: [7, 1, 2], 1: [4, 0, 1], 2: [1, 0, 0]}  # floor(frac * degree) per part
    assert torch.equal(part, split_holdout(edge_user, 3, (0.1, 0.2), seed=7))
    others = [split_holdout(edge_user, 3, (0.1, 0.2), seed=s) for s in range(8)]
    assert any(not torch.equal(part, o) for o in others)  # the seed picks which edges


def test_ranking_metrics_by_hand():
    scores = torch.tensor([[9.0, 1.0, 5.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    known = torch.tensor([[True, False, False, False], [False] * 4])
    heldout = torch.tensor([[False, True, False, True], [False] * 4])  # user 2 has nothing held out
    m = ranking_metrics(scores, known, heldout, k=2)
    # item 0 is masked; top-2 = items 2, 3; one hit (item 3) at rank 2 of 2 relevant
    assert m["users"] == 1
    assert m["recall"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_evaluate_scores_matches_per_user_loop():
    gen = torch.Generator().manual_seed(0)
    n_users, n_items, k = 7, 12, 3
    scores = torch.rand(n_users, n_items, generator=gen)
    known = (torch.randint(n_users, (15,), generator=gen), torch.randint(n_items, (15,), generator=gen))
    held = (torch.randint(n_users, (10,), generator=gen), torch.randint(n_items, (10,), generator=gen))
    got = evaluate_scores(lambda users: scores[users], n_users, n_items, known, held, k, block=3)
    recalls, ndcgs = [], []
    for u in range(n_users):
        rel = {int(i) for uu, i in zip(*held, strict=True) if uu == u}
        seen = {int(i) for uu, i in zip(*known, strict=True) if uu == u}
        if not rel:
            continue
        ranked = [i for i in scores[u].argsort(descending=True).tolist() if i not in seen][:k]
        hits = [1.0 if i in rel else 0.0 for i in ranked]
        recalls.append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        ndcgs.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(len(rel), k))))
    assert got["users"] == len(recalls)
    assert got[f"recall_at_{k}"] == pytest.approx(sum(recalls) / len(recalls))
    assert got[f"ndcg_at_{k}"] == pytest.approx(sum(ndcgs) / len(ndcgs))


@pytest.mark.parametrize("seed", range(4))
def test_propagate_equals_pyg_get_embedding(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(2, 9)), int(rng.integers(2, 11))
    n = int(rng.integers(1, 30))
    df = pd.DataFrame({"user_id": rng.integers(0, n_users, n), "item_id": rng.integers(0, n_items, n)})
    g = InteractionGraph.from_interactions(df)
    torch.manual_seed(seed)
    reference = LightGCN(g.num_nodes, 8, 3)  # PyG normalises edge_index itself
    ours = LightGCN(g.num_nodes, 8, 3, normalize=False)
    ours.load_state_dict(reference.state_dict())
    adjacency = normalized_adjacency(g.edge_user, g.edge_item, g.num_users, g.num_items)
    expected = reference.get_embedding(g.edge_index)
    got = propagate(ours, adjacency)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # gradients through the custom symmetric backward equal autograd's
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    torch.testing.assert_close(ours.embedding.weight.grad, reference.embedding.weight.grad, atol=1e-5, rtol=1e-5)


def test_sample_negatives_avoids_positives():
    # each user has every item but one: resampling must find it
    n_users, n_items = 3, 4
    missing = torch.tensor([1, 3, 0])
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if i != missing[u]]
    keys = torch.sort(torch.tensor([u * n_items + i for u, i in pairs])).values
    users = torch.arange(n_users).repeat(50)
    neg = sample_negatives(users, n_items, keys, torch.Generator().manual_seed(0), tries=200)
    assert torch.equal(neg, missing[users])


# ---------------------------------------------------------------------------- stage
GROUPS = {"a": 40, "b": 20, "c": 10, "d": 10}  # taste group -> users; each group has 15 items


def planted_data(path, seed=0):
    """Four taste groups; a user likes 10 of their group's 15 items, plus one random item elsewhere.
    Group a has half the users, so popularity recommends a's items to everyone: LightGCN must find
    the groups to beat it."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, n_users in GROUPS.items():
        for u in range(n_users):
            rows += [(f"{group}u{u}", f"{group}{i}") for i in rng.choice(15, size=10, replace=False)]
            other = rng.choice([g for g in GROUPS if g != group])
            rows.append((f"{group}u{u}", f"{other}{rng.integers(15)}"))
    path.mkdir()
    items = [f"{g}{i}" for g in GROUPS for i in range(15)]
    pd.DataFrame({"item_id": items, "title": items}).to_parquet(path / "items.parquet")
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_parquet(path / "interactions.parquet")
    pd.DataFrame({"item_id": items, "relation": "genre", "entity": [i[0] for i in items]}).to_parquet(
        path / "item_attributes.parquet")
    return path


FAST = dict(embedding_dim=16, num_layers=2, epochs=40, batch_size=256, lr=0.02, valid_fraction=0.2,
            test_fraction=0.2, k=5, eval_every=2, patience=6, seed=0)


def test_users_to_score_samples_users_with_held_out_edges():
    """Users 0..3; users 1, 2 and 3 have held-out edges. Two of them are kept, with all their edges in
    every part, and nothing of the others; 0 (or a cap above three) keeps every edge."""
    t = torch.tensor
    edges = {"train": (t([0, 1, 1, 2, 3]), t([5, 6, 7, 8, 9])), "valid": (t([1, 2]), t([0, 1])),
             "test": (t([3]), t([2]))}
    assert users_to_score(edges, 4, 0, seed=0) is edges and users_to_score(edges, 4, 3, seed=0) is edges
    scored = users_to_score(edges, 4, 2, seed=0)
    kept = set(scored["valid"][0].tolist()) | set(scored["test"][0].tolist())
    assert len(kept) == 2 and kept <= {1, 2, 3}
    assert set(scored["train"][0].tolist()) == kept
    assert sorted(scored["train"][1].tolist()) == sorted(i for u, i in zip([0, 1, 1, 2, 3], [5, 6, 7, 8, 9], strict=True)
                                                         if u in kept)
    assert users_to_score(edges, 4, 2, seed=0)["valid"][0].tolist() == scored["valid"][0].tolist()


def test_time_budget_stops_within_an_epoch_and_keeps_validated_weights(tmp_path):
    """At MovieLens-25M size one epoch outlasts any budget: the deadline is checked after every batch,
    and the weights trained so far are validated (before: the epoch ran to its end and, off an
    evaluation epoch, the saved weights were the random initial ones, best_epoch 0)."""
    graphs = tmp_path / "graphs"
    build_graphs(planted_data(tmp_path / "data"), graphs)
    config = LightGCNConfig(**{**FAST, "batch_size": 8, "max_seconds": 1e-6})
    metrics = train_reward_gnn(graphs, tmp_path / "reward", config)
    assert metrics["stopped"] == "max_seconds" and metrics["epochs_run"] == 1
    [record] = metrics["history"]
    assert 0 < record["fraction_of_epoch"] < 1 and "valid_recall_at_5" in record
    assert metrics["best_epoch"] == 1 and metrics["best_valid_recall_at_k"] >= 0


def test_planted_graph_lightgcn_beats_popularity(tmp_path):
    graphs = tmp_path / "graphs"
    build_graphs(planted_data(tmp_path / "data"), graphs)
    out = tmp_path / "reward"
    metrics = train_reward_gnn(graphs, out, LightGCNConfig(**FAST))
    light, pop = metrics["lightgcn"], metrics["popularity"]
    assert metrics["evaluated_on"] == "test" and metrics["eval_users"] == 80
    assert light["recall_at_5"] > pop["recall_at_5"] + 0.1, metrics
    assert light["ndcg_at_5"] > pop["ndcg_at_5"], metrics
    assert metrics["beats_popularity"]
    assert sorted(p.name for p in out.iterdir()) == ["item_embeddings.pt", "manifest.json", "metrics.json",
                                                     "user_embeddings.pt"]
    ids, emb = load_embeddings(out)  # the folder means the item embeddings
    assert ids == sorted(f"{g}{i}" for g in GROUPS for i in range(15)) and emb.shape == (60, 16)
    user_ids, user_emb = load_embeddings(out / "user_embeddings.pt")
    assert len(user_ids) == 80 and user_emb.shape == (80, 16)
    # item embeddings cluster by group: mean cosine within a group beats across groups
    unit = torch.nn.functional.normalize(emb, dim=1)
    cos = unit @ unit.T
    group = torch.tensor([ord(i[0]) for i in ids])
    same = group[:, None] == group[None, :]
    assert cos[same].mean() > cos[~same].mean() + 0.2
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["lightgcn"] == light and len(saved["history"]) == saved["epochs_run"]
    assert saved["best_epoch"] <= saved["epochs_run"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"item_embeddings.pt", "user_embeddings.pt", "metrics.json"}


def test_refuses_corrupted_graphs_and_bad_config(tmp_path):
    graphs = tmp_path / "graphs"
    build_graphs(planted_data(tmp_path / "data"), graphs)
    with open(graphs / "interaction_graph.pt", "ab") as f:
        f.write(b"junk")
    with pytest.raises(RerecError, match="interaction_graph.pt"):
        train_reward_gnn(graphs, tmp_path / "reward", LightGCNConfig(**FAST))
    assert not (tmp_path / "reward").exists()
    with pytest.raises(ConfigError, match="fraction"):
        LightGCNConfig(valid_fraction=0.6)
    with pytest.raises(InputError, match="not found"):
        load_embeddings(tmp_path / "nothing.pt")


def test_cli_help_and_run(tmp_path, capsys):
    from rerec.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train-reward-gnn", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "item_embeddings.pt" in text and "--embedding-dim" in text
    graphs = tmp_path / "graphs"
    build_graphs(planted_data(tmp_path / "data"), graphs)
    args = ["train-reward-gnn", "--graphs", str(graphs), "--out", str(tmp_path / "r"), "--epochs", "2",
            "--embedding-dim", "8", "--k", "5", "--batch-size", "512"]
    assert main(args) == 0
    assert "popularity" in capsys.readouterr().out


@pytest.mark.slow
def test_movielens_100k_lightgcn_beats_popularity(tmp_path):
    from rerec.data.load import load_catalog, save_catalog

    save_catalog(load_catalog(None), tmp_path / "data")
    build_graphs(tmp_path / "data", tmp_path / "graphs")
    metrics = train_reward_gnn(tmp_path / "graphs", tmp_path / "reward", LightGCNConfig(epochs=20))
    assert metrics["counts"]["users"] == 943 and metrics["eval_users"] == 943
    light, pop = metrics["lightgcn"], metrics["popularity"]
    # LightGCN must clearly beat popularity on real data, with a margin that leaves room for seeds
    assert light["recall_at_20"] > pop["recall_at_20"] * 1.2, metrics
    assert light["ndcg_at_20"] > pop["ndcg_at_20"], metrics
