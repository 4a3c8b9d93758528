"""Each baseline on a small fixture with a planted answer."""

import math

import pandas as pd
import pytest
import torch

from rerec.eval.baselines import (
    LightGCNRanker,
    PopularityRanker,
    RandomRanker,
    TextMatchRanker,
    describe_items,
    embedding_rows,
)
from rerec.graphs.interaction import InteractionGraph

ITEMS = pd.DataFrame({
    "item_id": ["1", "2", "3", "4"],
    "title": ["Fargo", "Toy Story", "Apollo 13", "Heat"],
    "year": pd.array([1996, 1995, 1995, None], dtype="Int64"),
    "genres": [["Crime", "Thriller"], ["Animation", "Children"], ["Drama"], ["Action"]],
})
QUERY = {"query_id": "q1", "user_id": "u1", "type": "implicit", "text": "an animated film for children",
         "candidates": ["1", "2", "3", "4"], "conditions": "[]", "positives": ["2"]}


def graph() -> InteractionGraph:
    # item 3 is the most popular (3 users), then 1 (2 users); u1 and u4 like 4
    inter = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u2", "u3", "u4", "u1", "u4"],
                          "item_id": ["3", "3", "3", "1", "1", "2", "4", "4"]})
    return InteractionGraph.from_interactions(inter, item_ids=ITEMS["item_id"])


def test_random_is_a_seeded_permutation():
    ranker = RandomRanker(seed=1)
    ranked = ranker.rank(QUERY)
    assert sorted(ranked) == QUERY["candidates"]
    assert ranked == RandomRanker(seed=1).rank(QUERY)
    orders = {tuple(RandomRanker(seed=s).rank(QUERY)) for s in range(20)}
    assert len(orders) > 5
    # each candidate lands first with about the same frequency
    firsts = [RandomRanker(seed=s).rank({**QUERY, "query_id": f"q{s}"})[0] for s in range(400)]
    assert all(60 < firsts.count(c) < 140 for c in QUERY["candidates"])


def test_popularity_from_training_graph():
    ranker = PopularityRanker.from_graph(graph())
    assert ranker.counts == {"1": 2, "2": 1, "3": 3, "4": 2}
    # ties (1 and 4) keep the displayed order
    assert ranker.rank(QUERY) == ["3", "1", "4", "2"]
    assert ranker.rank({**QUERY, "candidates": ["4", "2", "1"]}) == ["4", "1", "2"]


def test_lightgcn_dot_product_and_fallbacks(tmp_path):
    users = {"ids": ["u1"], "embeddings": torch.tensor([[1.0, 0.0]])}
    items = {"ids": ["1", "2", "4"], "embeddings": torch.tensor([[0.2, 1.0], [0.9, 0.0], [0.5, 0.5]])}
    torch.save(users, tmp_path / "user_embeddings.pt")
    torch.save(items, tmp_path / "item_embeddings.pt")
    pop = PopularityRanker.from_graph(graph())
    ranker = LightGCNRanker.from_reward_dir(tmp_path, pop)
    # planted: u1 · item2 = 0.9 is the best; item 3 has no embedding and goes last
    assert ranker.rank(QUERY) == ["2", "4", "1", "3"]
    # unknown user -> popularity
    assert ranker.rank({**QUERY, "user_id": "stranger"}) == pop.rank(QUERY)
    assert ranker.n_fallback == 1


def test_load_embeddings_errors(tmp_path):
    from rerec.errors import InputError

    with pytest.raises(InputError, match="train-reward-gnn"):
        embedding_rows(tmp_path / "missing.pt")
    torch.save({"wrong": 1}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="ids"):
        embedding_rows(tmp_path / "bad.pt")


def test_describe_items_keeps_named_attributes_only():
    attrs = pd.DataFrame({"item_id": ["1", "1", "1"], "relation": ["director", "decade", "genre"],
                          "entity": ["m.0abc12", "1990s", "Crime"]})
    text = describe_items(ITEMS, attrs)
    assert text["1"] == "Fargo (1996). Genres: Crime, Thriller. decade: 1990s"
    assert text["4"] == "Heat. Genres: Action"
    untitled = describe_items(ITEMS, attrs, with_title=False)
    assert untitled["1"] == "A film (1996). Genres: Crime, Thriller. decade: 1990s"
    assert untitled["4"] == "A film. Genres: Action"


def bag_of_words(texts):
    vocab = ["animated", "animation", "children", "crime", "drama", "space", "action"]
    rows = torch.tensor([[float(w in t.lower()) for w in vocab] for t in texts]) + 1e-3
    return torch.nn.functional.normalize(rows, dim=1)


def test_text_match_planted_with_bag_of_words():
    ranker = TextMatchRanker(describe_items(ITEMS), bag_of_words)
    assert ranker.rank(QUERY)[0] == "2"
    assert ranker.rank({**QUERY, "text": "a tense crime story"})[0] == "1"


def test_text_match_never_reads_conditions_or_positives():
    ranker = TextMatchRanker(describe_items(ITEMS), bag_of_words)
    planted = {**QUERY, "conditions": '[{"relation": "genre", "entity": "Drama"}]', "positives": ["3"]}
    assert ranker.rank(planted) == ranker.rank(QUERY)


def test_text_match_with_minilm():
    from rerec.reward.embedder import TextEmbedder

    embedder = TextEmbedder()
    ranker = TextMatchRanker(describe_items(ITEMS), embedder.encode)
    assert ranker.rank({**QUERY, "text": "a cartoon for kids"})[0] == "2"
    assert ranker.rank({**QUERY, "text": "astronauts stranded in space"})[0] == "3"


def test_text_match_precompute_batches_items_once():
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return bag_of_words(texts)

    ranker = TextMatchRanker(describe_items(ITEMS), counting)
    ranker.precompute([QUERY, {**QUERY, "candidates": ["4", "1"]}])
    assert calls == [4]
    assert ranker.rank(QUERY)[0] == "2" and calls == [4, 1]  # only the request is embedded now


def test_zscore_by_hand():
    from rerec.eval.baselines import zscore

    # mean 2, population std sqrt(2/3)
    assert zscore([1.0, 2.0, 3.0]) == pytest.approx([-1.224744871, 0.0, 1.224744871])
    assert zscore([5.0, 5.0]) == [0.0, 0.0]  # no spread: no information, not a division by zero


def hybrid_fixture(tmp_path, weight):
    from rerec.eval.baselines import HybridRanker

    # u1 · items: "1" -> 0.0, "2" -> 0.3, "4" -> 0.9; "3" has no embedding (takes the lowest known, 0.0)
    users = {"ids": ["u1"], "embeddings": torch.tensor([[1.0, 0.0]])}
    items = {"ids": ["1", "2", "4"], "embeddings": torch.tensor([[0.0, 1.0], [0.3, 0.0], [0.9, 0.5]])}
    torch.save(users, tmp_path / "user_embeddings.pt")
    torch.save(items, tmp_path / "item_embeddings.pt")
    pop = PopularityRanker.from_graph(graph())
    text = {"1": 0.1, "2": 0.9, "3": 0.5, "4": 0.5}  # cosine similarities, planted

    class Text(TextMatchRanker):
        def scores(self, query):
            return [text[c] for c in query["candidates"]]

    return HybridRanker(Text({}, bag_of_words), LightGCNRanker.from_reward_dir(tmp_path, pop), weight=weight)


def test_hybrid_is_the_z_scored_sum_by_hand(tmp_path):
    hybrid = hybrid_fixture(tmp_path, weight=1.0)
    # text [0.1, 0.9, 0.5, 0.5]: mean 0.5, std sqrt(0.08) = 0.282843 -> z [-1.414214, 1.414214, 0, 0]
    # lightgcn [0.0, 0.3, 0.0, 0.9] (item 3 at the floor 0.0): mean 0.3, std sqrt(0.135) = 0.367423
    #   -> z [-0.816497, 0, -0.816497, 1.632993]
    expected = [-1.414214 - 0.816497, 1.414214 + 0.0, 0.0 - 0.816497, 0.0 + 1.632993]
    assert hybrid.scores(QUERY) == pytest.approx(expected, abs=1e-5)
    # 4 (1.633) edges 2 (1.414): LightGCN's favourite wins where text match is indifferent about it
    assert hybrid.rank(QUERY) == ["4", "2", "3", "1"]
    # weight 0.5: 2 -> 1.414, 4 -> 0.816, 3 -> -0.408, 1 -> -1.822
    half = hybrid_fixture(tmp_path, weight=0.5)
    assert half.scores(QUERY) == pytest.approx([-1.414214 - 0.408248, 1.414214, -0.408248, 0.816497], abs=1e-5)
    assert half.rank(QUERY) == ["2", "4", "3", "1"]
    # weight 0 is text match (ties 3 and 4 in the displayed order)
    assert hybrid_fixture(tmp_path, weight=0.0).rank(QUERY) == ["2", "3", "4", "1"]


def test_hybrid_never_reads_conditions_or_positives(tmp_path):
    hybrid = hybrid_fixture(tmp_path, weight=1.0)
    planted = {**QUERY, "conditions": '[{"relation": "genre", "entity": "Drama"}]', "positives": ["3"]}
    assert hybrid.rank(planted) == hybrid.rank(QUERY)


def test_hybrid_unknown_user_uses_popularity(tmp_path):
    hybrid = hybrid_fixture(tmp_path, weight=1.0)
    # popularity counts 1: 2, 2: 1, 3: 3, 4: 2 -> log1p -> the preference part
    stranger = {**QUERY, "user_id": "stranger"}
    assert hybrid.lightgcn.scores(stranger) == pytest.approx([math.log(3), math.log(2), math.log(4), math.log(3)])
