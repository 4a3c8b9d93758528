"""Taste evidence (rerec.taste): ranks computed by hand on a small graph, and how prompts and traces use it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from rerec.errors import ConfigError
from rerec.graphs.interaction import InteractionGraph
from rerec.prompt import CatalogView, build_messages, candidate_lines
from rerec.reward.lightgcn import ITEM_EMBEDDINGS, USER_EMBEDDINGS, save_embeddings
from rerec.taste import TasteIndex, attach_taste, liked_references, taste_source
from rerec.train.traces import synthesize_trace

# Liking users per item:  a: u1 u2 u3   b: u1 u2   c: u3 u4   d: u4   e: u1
LIKES = [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c"), ("u4", "c"),
         ("u4", "d"), ("u1", "e")]


@pytest.fixture()
def folders(tmp_path):
    graph = InteractionGraph.from_interactions(pd.DataFrame(LIKES, columns=["user_id", "item_id"]))
    graph.save(tmp_path / "graphs")
    reward = tmp_path / "reward"
    reward.mkdir()
    # item embeddings on one axis: a=1, b=2, c=3, d=4, e=5; user u9 prefers large, u8 small
    save_embeddings(reward / ITEM_EMBEDDINGS, list("abcde"), torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]]))
    save_embeddings(reward / USER_EMBEDDINGS, ["u8", "u9"], torch.tensor([[-1.0], [1.0]]))
    return tmp_path / "graphs", reward


def test_jaccard_by_hand(folders):
    taste = TasteIndex.build(InteractionGraph.load(folders[0]), folders[1])
    # a & b: {u1,u2} / {u1,u2,u3} = 2/3; a & c: {u3} / {u1..u4} = 1/4; a & d: 0; a & e: 1/3
    assert taste.jaccard("b", ["a"]) == pytest.approx(2 / 3)
    assert taste.jaccard("c", ["a"]) == pytest.approx(1 / 4)
    assert taste.jaccard("d", ["a"]) == 0.0
    assert taste.jaccard("e", ["a", "b"]) == pytest.approx(1 / 3 + 1 / 2)
    assert taste.jaccard("a", ["a"]) == 0.0  # never an item with itself
    assert taste.jaccard("zzz", ["a"]) == 0.0


def test_ranks_co_likes_first_then_lightgcn_then_popularity(folders, tmp_path):
    taste = TasteIndex.build(InteractionGraph.load(folders[0]), folders[1])
    # named a: b (2/3) > e (1/3) > c (1/4) > d (0)
    assert taste.ranks(list("dcbe"), user_id="u8", named=["a"]) == {"b": 1, "e": 2, "c": 3, "d": 4}
    # nothing named: LightGCN; u9 likes large coordinates, u8 small
    assert taste.ranks(list("bcd"), user_id="u9") == {"d": 1, "c": 2, "b": 3}
    assert taste.ranks(list("bcd"), user_id="u8") == {"b": 1, "c": 2, "d": 3}
    # an unknown user with a history folds the history in: mean of e (5) -> prefers large
    assert taste.ranks(list("bd"), user_id="nobody", history=["e"]) == {"d": 1, "b": 2}
    # neither: popularity (a 3 likes, c 2, d 1), ties keep the shown order
    assert taste.ranks(list("dca")) == {"a": 1, "c": 2, "d": 3}
    again = TasteIndex.load(taste.save(tmp_path / "saved"))
    assert again.ranks(list("dcbe"), user_id="u8", named=["a"]) == {"b": 1, "e": 2, "c": 3, "d": 4}


def test_co_likes_count_only_ratings_that_are_likes(folders, tmp_path):
    # the same edges, but u2 rated b 2 and u3 rated c 1: those are not likes
    rated = pd.DataFrame(LIKES, columns=["user_id", "item_id"])
    rated["rating"] = [5, 4, 4, 4, 2, 1, 5, 4, 3]
    graph = InteractionGraph.from_interactions(rated)
    taste = TasteIndex.build(graph, folders[1])
    # likes (>= 4): a: u1 u2 u3   b: u1   c: u4   d: u4   (e: u1 rated 3, not a like)
    assert taste.jaccard("b", ["a"]) == pytest.approx(1 / 3)  # {u1} / {u1,u2,u3}
    assert taste.jaccard("c", ["a"]) == 0.0                    # u3's 1-star rating of c is no co-like
    assert taste.jaccard("d", ["c"]) == pytest.approx(1.0)     # {u4} / {u4}
    assert taste.jaccard("e", ["a"]) == 0.0
    # popularity still counts every interaction (a 3, b 2, c 2, d 1, e 1)
    assert taste.popularity.tolist() == [3.0, 2.0, 2.0, 1.0, 1.0]
    # min_rating=None counts every edge, as a graph without ratings does
    everything = TasteIndex.build(graph, folders[1], min_rating=None)
    assert everything.jaccard("b", ["a"]) == pytest.approx(2 / 3)
    assert everything.jaccard("c", ["a"]) == pytest.approx(1 / 4)


def test_liked_edges_by_hand():
    import numpy as np

    from rerec.graphs.interaction import liked_edges

    assert liked_edges(np.array([4.0, 3.5, np.nan, 5.0]), 4.0, 4).tolist() == [True, False, True, True]
    assert liked_edges(None, 4.0, 2).tolist() == [True, True]
    assert liked_edges(np.array([1.0]), None, 1).tolist() == [True]


def test_a_small_top_k_keeps_the_strongest_neighbours(folders):
    taste = TasteIndex.build(InteractionGraph.load(folders[0]), folders[1], top_k=1)
    assert taste.jaccard("b", ["a"]) == pytest.approx(2 / 3)   # a's strongest neighbour
    assert taste.jaccard("c", ["a"]) == 0.0                    # beyond the kept neighbour


def test_liked_references_are_co_interaction_and_bare_mentions_only():
    query = {"conditions": [{"relation": "co_interaction", "entity": "x", "via": "x"},
                            {"relation": "director", "entity": "m.1", "via": "y"},
                            {"via": "z"}]}
    assert liked_references(query) == ["x", "z"]


def _view(folders):
    items = pd.DataFrame({"item_id": list("abcde"), "title": ["Alpha", "Beta", "Gamma", "Delta", "Eps"],
                          "year": [1990, 1991, 1992, 1993, 1994],
                          "genres": [["Comedy"], ["Comedy"], ["Comedy"], ["Drama"], ["Comedy"]]})
    attrs = pd.DataFrame({"item_id": list("abcde"), "relation": ["genre"] * 5,
                          "entity": ["Comedy", "Comedy", "Comedy", "Drama", "Comedy"]})
    return attach_taste(CatalogView.from_tables(items, attrs), *folders)


def test_prompt_lines_carry_the_taste_rank(folders):
    view = _view(folders)
    query = {"query_id": "q", "user_id": "u9", "text": "Viewers who liked Alpha watch what?", "candidates": list("dcb"),
             "positives": ["b"], "conditions": [{"relation": "co_interaction", "entity": "a", "via": "a"}]}
    lines = candidate_lines(query, view)
    assert lines == ["1. (taste #3) Delta (1993) - drama", "2. (taste #2) Gamma (1992) - comedy",
                     "3. (taste #1) Beta (1991) - comedy"]
    assert "taste #1" in build_messages(query, view)[1]["content"]
    view.taste = None
    assert "taste" not in "\n".join(candidate_lines(query, view))  # off: the lines are as before


def test_traces_choose_by_taste_when_the_graph_cannot_decide(folders):
    view = _view(folders)
    query = {"query_id": "q", "user_id": "u9", "text": "t", "candidates": list("dcb"), "positives": ["b"],
             "conditions": [{"relation": "co_interaction", "entity": "a", "via": "a"}]}
    trace = synthesize_trace(query, view, style="scan", candidate_lines=candidate_lines(query, view))
    assert trace.text.splitlines() == ["By taste: (taste #1) Beta (1991) - comedy.", "\\boxed{Beta}"]


def test_traces_say_when_the_shown_evidence_does_not_pick_the_answer(folders):
    """u9's LightGCN order is d, c, b. Among the comedies c and b, c ranks first: a query answered by c is
    supported by what the prompt shows, one answered by b is not; with nothing checkable (interest) the
    whole list is the pool, and a positive that is not taste #1 is not supported either."""
    view = _view(folders)
    comedy = {"query_id": "q", "user_id": "u9", "text": "a comedy", "candidates": list("dcb"),
              "conditions": [{"relation": "genre", "entity": "Comedy"}]}
    assert synthesize_trace({**comedy, "positives": ["c"]}, view, style="scan").evidence_picks_answer
    assert not synthesize_trace({**comedy, "positives": ["b"]}, view, style="scan").evidence_picks_answer
    liked_a = {"query_id": "q", "user_id": "u9", "text": "t", "candidates": list("dcb"),
               "conditions": [{"relation": "co_interaction", "entity": "a", "via": "a"}]}  # ranks b, c, d
    assert synthesize_trace({**liked_a, "positives": ["b"]}, view, style="scan").evidence_picks_answer
    assert not synthesize_trace({**liked_a, "positives": ["c"]}, view, style="scan").evidence_picks_answer
    one_fits = {**comedy, "candidates": list("dc"), "positives": ["c"]}  # one fits: the checks decide
    assert synthesize_trace(one_fits, view, style="scan").evidence_picks_answer
    view.taste = None  # no taste shown: nothing to contradict
    assert synthesize_trace({**comedy, "positives": ["b"]}, view, style="scan").evidence_picks_answer


def test_sft_leaves_out_traces_the_prompt_does_not_support(folders):
    from rerec.models.loading import load_tokenizer
    from rerec.train.sft import SFTWarmupConfig, sft_examples

    view = _view(folders)
    rows = [{"query_id": f"q{p}", "user_id": "u9", "text": "a comedy", "candidates": list("dcb"), "positives": [p],
             "conditions": [{"relation": "genre", "entity": "Comedy"}], "history": []} for p in "cb"]
    tokenizer = load_tokenizer("smollm2")
    cfg = SFTWarmupConfig(profile="smollm2", n_candidates=3, min_candidates=3).resolved()
    counts: dict = {}
    kept = sft_examples(rows, view, tokenizer, cfg, counts=counts)
    assert counts == {"n_unfaithful_dropped": 1} and len(kept) == 1
    assert kept[0]["completion"].endswith("\\boxed{Gamma}")
    cfg.faithful_only = False
    assert len(sft_examples(rows, view, tokenizer, cfg)) == 2


def test_traces_check_conditions_then_choose_among_the_fitting_by_taste(folders):
    view = _view(folders)
    # comedy: c and b fit, d does not; u9's LightGCN order is d, c, b, so c is the fitting one it prefers. The
    # list is not in taste order (prompts always are, rerec.prompt.display_order): every row is checked
    query = {"query_id": "q", "user_id": "u9", "text": "a comedy", "candidates": list("bdc"), "positives": ["c"],
             "conditions": [{"relation": "genre", "entity": "Comedy"}]}
    lines = candidate_lines(query, view)
    text = synthesize_trace(query, view, style="scan", candidate_lines=lines).text.splitlines()
    assert text[0] == "Wanted: comedy."
    assert text[1] == f"{lines[0]}: comedy yes - fits." and text[2] == f"{lines[1]}: comedy no - no."
    assert text[3] == f"{lines[2]}: comedy yes - fits."  # every row: several fit, so the scan does not stop early
    assert text[4] == "Fit: 1, 3."
    assert text[5] == "By taste: (taste #2) Gamma (1992) - comedy." and text[6] == "\\boxed{Gamma}"


def test_taste_evidence_without_the_reward_folder_is_refused():
    with pytest.raises(ConfigError, match="--reward"):
        taste_source(True, None)
    assert taste_source(False, None) is None


def test_prompts_list_the_candidates_in_taste_order(folders):
    """display_order sorts by the user's taste rank (u9's LightGCN order is d, c, b), is idempotent, leaves a
    view without taste alone, and shrink_candidates and the evaluation's ranker number the rows that way, so a
    boxed number means the row the model saw."""
    from rerec.eval.generate import LLMRanker
    from rerec.prompt import display_order, shrink_candidates

    view = _view(folders)
    query = {"query_id": "q", "user_id": "u9", "text": "a comedy", "candidates": list("bcd"), "positives": ["c"],
             "conditions": [{"relation": "genre", "entity": "Comedy"}]}
    ordered = display_order(query, view)
    assert ordered["candidates"] == list("dcb") and query["candidates"] == list("bcd")  # a copy
    assert display_order(ordered, view)["candidates"] == list("dcb")
    assert shrink_candidates(query, 3, view)["candidates"] == list("dcb")
    assert candidate_lines(ordered, view)[0] == "1. (taste #1) Delta (1993) - drama"

    class Tok:
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
            return messages[1]["content"]

    ranker = LLMRanker(name="m", model=None, tokenizer=Tok(), view=view, max_history=0)
    assert "1. (taste #1) Delta" in ranker.prompts([query])[0]
    view.taste = None
    assert display_order(query, view)["candidates"] == list("bcd")


def test_in_taste_order_the_scan_stops_at_the_first_row_that_fits(folders):
    view = _view(folders)
    # comedy: c and b fit; in u9's taste order (d, c, b) the scan checks d, stops at c, the favourite that fits
    query = {"query_id": "q", "user_id": "u9", "text": "a comedy", "candidates": list("dcb"), "positives": ["c"],
             "conditions": [{"relation": "genre", "entity": "Comedy"}]}
    lines = candidate_lines(query, view)
    trace = synthesize_trace(query, view, style="scan", candidate_lines=lines)
    assert trace.text.splitlines() == ["Wanted: comedy.", f"{lines[0]}: comedy no - no.",
                                       f"{lines[1]}: comedy yes - fits.", "\\boxed{Gamma}"]
    assert trace.evidence_picks_answer
