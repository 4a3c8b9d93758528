"""The dual-graph reward: QAS, PAS, the whole formula by hand, and malformed completions."""

import argparse
import json
import math

import pytest
import torch

from rerec.config import add_dataclass_arguments, dataclass_from_args
from rerec.errors import ConfigError, InputError
from rerec.reward.alignment import (
    ItemEmbeddingTable,
    condition_pairs,
    preference_alignment_score,
    query_alignment_score,
)
from rerec.reward.scorer import RewardConfig, RewardScorer


class TinyGraph:
    """A hand-made item-attribute graph with the ItemAttributeGraph lookups."""

    def __init__(self, rows):
        self.by_item = {}
        for item, relation, entity in rows:
            self.by_item.setdefault(item, {}).setdefault(relation, set()).add(entity)

    def satisfies(self, item_id, relation, entity):
        return entity in self.by_item.get(item_id, {}).get(relation, ())

    def attributes_of(self, item_id):
        return {r: set(e) for r, e in self.by_item.get(item_id, {}).items()}


ROWS = [
    ("1", "director", "d1"), ("1", "genre", "crime"), ("1", "decade", "1990s"),  # Heat
    ("2", "director", "d2"), ("2", "genre", "crime"), ("2", "decade", "1990s"),  # Fargo (ground truth)
    ("3", "director", "d3"), ("3", "genre", "animation"), ("3", "decade", "1990s"),  # Toy Story
    ("4", "director", "d4"), ("4", "genre", "crime"), ("4", "decade", "1990s"),  # Casino
]
TITLES = {"1": "Heat", "2": "Fargo", "3": "Toy Story", "4": "Casino", "5": "Die Hard"}
GRAPH = TinyGraph(ROWS)
# PAS against Fargo: Heat cos 0 -> 0.5, Toy Story cos -1 -> 0, Casino cos 1/sqrt(2)
EMBEDDINGS = {"ids": ["1", "2", "3", "4"],
              "embeddings": torch.tensor([[0.0, 2.0], [3.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])}
CONDITIONS = json.dumps([
    {"relation": "genre", "entity": "crime", "text": "a crime film"},
    {"relation": "director", "entity": "d2", "via": "9", "text": "by the director of Blood Simple"},
    {"relation": "co_interaction", "entity": "u7", "text": "that fans like me watch"},  # not a graph pair
])
QUERY = {"candidates": ["1", "2", "3", "4"], "positives": ["2"], "conditions": CONDITIONS, "type": "implicit"}
CONFIG = RewardConfig(w_query=0.5, w_pref=0.25, w_format=1.0, format_bonus=0.1, format_penalty=0.5)


def scorer(config=CONFIG, **kwargs):
    kwargs.setdefault("attribute_graph", GRAPH)
    kwargs.setdefault("embeddings", EMBEDDINGS)
    return RewardScorer(config, TITLES, **kwargs)


def score_one(text, query=QUERY, **kwargs):
    return scorer(**kwargs).score([text], [query])[0]


# ---------------------------------------------------------------- QAS / PAS
def test_qas_fraction_of_checkable_conditions():
    # genre crime yes, director d2 no; the co_interaction condition is not in the graph for the truth
    assert query_alignment_score("1", CONDITIONS, GRAPH, ground_truth_item="2") == 0.5
    assert query_alignment_score("2", CONDITIONS, GRAPH, ground_truth_item="2") == 1.0
    assert query_alignment_score("3", CONDITIONS, GRAPH, ground_truth_item="2") == 0.0
    assert query_alignment_score(None, CONDITIONS, GRAPH, ground_truth_item="2") == 0.0


def test_qas_without_ground_truth_counts_every_pair():
    # 3 pairs with relation and entity: Heat meets only genre crime
    assert query_alignment_score("1", CONDITIONS, GRAPH) == pytest.approx(1 / 3)


def test_qas_falls_back_to_paper_form():
    # no conditions: |R_Heat ∩ R_Fargo| / |R_Fargo| = |{genre crime, decade 1990s}| / 3
    assert query_alignment_score("1", "[]", GRAPH, ground_truth_item="2") == pytest.approx(2 / 3)
    only_interest = [{"relation": "co_interaction", "entity": "u7"}, {"text": "something I'd like"}]
    assert query_alignment_score("3", only_interest, GRAPH, ground_truth_item="2") == pytest.approx(1 / 3)
    assert query_alignment_score("1", None, GRAPH, ground_truth_item="unknown") == 0.0
    assert query_alignment_score("1", None, GRAPH) == 0.0


def test_condition_pairs_accepts_json_lists_and_junk():
    assert condition_pairs(CONDITIONS) == [("genre", "crime"), ("director", "d2"), ("co_interaction", "u7")]
    assert condition_pairs([{"relation": "year", "entity": 1995}, {"relation": "year", "entity": 1995}]) == [
        ("year", "1995")]
    assert condition_pairs("not json") == [] and condition_pairs("") == [] and condition_pairs(None) == []


def test_pas_maps_cosine_to_unit_interval():
    table = ItemEmbeddingTable.from_saved(EMBEDDINGS)
    assert preference_alignment_score("2", "2", table) == pytest.approx(1.0)
    assert preference_alignment_score("1", "2", table) == pytest.approx(0.5)
    assert preference_alignment_score("3", "2", table) == pytest.approx(0.0)
    assert preference_alignment_score("4", "2", table) == pytest.approx((1 + 2**-0.5) / 2)
    assert preference_alignment_score("5", "2", table) == 0.0  # no embedding
    assert preference_alignment_score(None, "2", table) == 0.0


def test_embedding_table_load_and_errors(tmp_path):
    torch.save(EMBEDDINGS, tmp_path / "item_embeddings.pt")
    table = ItemEmbeddingTable.load(tmp_path)
    assert len(table) == 4 and "2" in table and table.cosine("1", "2") == pytest.approx(0.0)
    with pytest.raises(InputError, match="missing"):
        ItemEmbeddingTable.load(tmp_path / "nope")
    with pytest.raises(InputError, match="shape"):
        ItemEmbeddingTable(["a", "b"], torch.zeros(3, 2))
    with pytest.raises(InputError, match="ids"):
        ItemEmbeddingTable.from_saved({"embeddings": torch.zeros(1, 2)})


def test_qas_with_the_real_item_attribute_graph():
    import pandas as pd

    from rerec.graphs.attributes import ItemAttributeGraph

    graph = ItemAttributeGraph(pd.DataFrame(ROWS, columns=["item_id", "relation", "entity"]))
    assert query_alignment_score("1", CONDITIONS, graph, ground_truth_item="2") == 0.5
    assert query_alignment_score("1", "[]", graph, ground_truth_item="2") == pytest.approx(2 / 3)


# ---------------------------------------------------------------- the whole formula
@pytest.mark.parametrize(
    "text, ndcg, qas, pas, fmt",
    [
        ("The director matches Blood Simple. \\boxed{Fargo}", 1.0, 1.0, 1.0, 0.1),
        ("\\boxed{fargo (1996)}", 1.0, 1.0, 1.0, 0.1),
        ("\\boxed{2}", 1.0, 1.0, 1.0, 0.1),
        ("\\boxed{Heat}", 0.0, 0.5, 0.5, 0.1),
        ("\\boxed{Toy Story}", 0.0, 0.0, 0.0, 0.1),
        ("\\boxed{Casino}", 0.0, 0.5, (1 + 2**-0.5) / 2, 0.1),
    ],
)
def test_total_hand_computed(text, ndcg, qas, pas, fmt):
    b = score_one(text)
    assert (b.ndcg, b.qas, b.format) == pytest.approx((ndcg, qas, fmt))
    assert b.pas == pytest.approx(pas)
    assert b.total == pytest.approx(ndcg + 0.5 * qas + 0.25 * pas + 1.0 * fmt)
    assert b.valid


def test_fargo_total_is_the_maximum():
    b = score_one("\\boxed{Fargo}")
    assert b.total == pytest.approx(1 + 0.5 + 0.25 + 0.1)
    assert scorer().normalised(b.total) == pytest.approx(1.0)
    assert b.recommended == "2" and b.matched_items == ["2"] and b.hit == 1.0 and b.recall == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "I would recommend Fargo.",  # no box
        "\\boxed{}",  # empty box
        "\\boxed{ ; }",
        "\\boxed{Die Hard}",  # a catalog item outside the candidates
        "\\boxed{The Godfather}",  # not in the catalog at all
        "\\boxed{42}",  # a candidate number out of range
        "\\boxed{Fargo",  # truncated
        "x" * 10_000,  # a 10,000-character ramble
        "⚠️ 映画 \\boxed{🎬 東京物語}",  # unicode
        None,
    ],
)
def test_malformed_gets_the_penalty(text):
    b = score_one(text)
    assert b.total == pytest.approx(-0.5)
    assert (b.ndcg, b.qas, b.pas, b.format, b.valid, b.recommended) == (0.0, 0.0, 0.0, -0.5, False, None)
    assert scorer().normalised(b.total) == 0.0


def test_several_boxes_score_the_last():
    b = score_one("\\boxed{Heat}? No: the director is d2, \\boxed{Fargo}")
    assert b.parsed.n_boxes == 2 and b.recommended == "2" and b.total == pytest.approx(1.85)


def test_repeated_item_is_invalid_format_but_keeps_its_rank():
    b = score_one("\\boxed{Fargo; Fargo}")
    assert b.ndcg == 1.0 and not b.valid
    assert b.total == pytest.approx(1 + 0.5 + 0.25 - 0.5)


def test_list_longer_than_top_k_is_invalid_and_cut_at_k():
    b = score_one("\\boxed{Heat; Fargo}")
    assert b.ndcg == 0.0 and not b.valid and b.recommended == "1"
    assert b.total == pytest.approx(0.0 + 0.5 * 0.5 + 0.25 * 0.5 - 0.5)


def test_first_item_outside_candidates_means_no_recommendation():
    config = RewardConfig(top_k=2, w_query=0.5, w_pref=0.25, format_bonus=0.1, format_penalty=0.5)
    b = score_one("\\boxed{Die Hard; Fargo}", config=config)
    assert b.matched_items == [None, "2"] and b.recommended is None and not b.valid
    assert b.ndcg == pytest.approx(1 / math.log2(3)) and b.qas == 0.0 and b.pas == 0.0
    assert b.total == pytest.approx(1 / math.log2(3) - 0.5)


def test_top_k_mode_hand_computed():
    config = RewardConfig(top_k=3, w_query=0.5, w_pref=0.25, format_bonus=0.1, format_penalty=0.5)
    b = score_one("\\boxed{Heat; Fargo; Toy Story}", config=config)
    assert b.valid and b.matched_items == ["1", "2", "3"] and b.recall == 1.0
    assert b.ndcg == pytest.approx(1 / math.log2(3))
    assert b.total == pytest.approx(1 / math.log2(3) + 0.5 * 0.5 + 0.25 * 0.5 + 0.1)


def test_echoed_prompt_gets_a_defined_reward():
    prompt = ("Recommend a crime film by the director of Blood Simple.\nCandidates:\n1. Heat\n2. Fargo\n"
              "3. Toy Story\n4. Casino\nThink step by step, then answer with \\boxed{Title}.")
    b = score_one(prompt)
    assert b.parsed.items == ["Title"] and b.recommended is None and b.total == pytest.approx(-0.5)


def test_conversational_completion():
    b = score_one([{"role": "assistant", "content": "\\boxed{Fargo}"}])
    assert b.recommended == "2" and b.total == pytest.approx(1.85)


def test_ablations_and_missing_graphs_drop_terms_and_range():
    no_qas = scorer(RewardConfig(w_query=0.5, w_pref=0.25, format_bonus=0.1, format_penalty=0.5, use_qas=False))
    b = no_qas.score(["\\boxed{Heat}"], [QUERY])[0]
    assert b.qas == 0.0 and b.total == pytest.approx(0.25 * 0.5 + 0.1)
    assert no_qas.bounds == pytest.approx((-0.5, 1 + 0.25 + 0.1))
    bare = RewardScorer(CONFIG, TITLES)  # no graphs: NDCG + format only
    assert not bare.qas_on and not bare.pas_on
    assert bare.score(["\\boxed{Fargo}"], [QUERY])[0].total == pytest.approx(1.1)
    assert bare.bounds == pytest.approx((-0.5, 1.1))


def test_normalised_is_min_max_of_the_range():
    s = scorer()
    assert s.bounds == pytest.approx((-0.5, 1.85))
    assert s.normalised(0.475) == pytest.approx((0.475 + 0.5) / 2.35)
    assert s.normalised(99.0) == 1.0 and s.normalised(-99.0) == 0.0


def test_paper_fallback_for_interest_queries_with_several_positives():
    query = {"candidates": ["1", "2", "3", "4"], "positives": ["2", "4"], "conditions": "[]", "type": "interest"}
    b = score_one("\\boxed{Heat}", query=query)
    # best over positives: |R_Heat ∩ R_Fargo|/3 = 2/3 = |R_Heat ∩ R_Casino|/3; PAS best is Casino's
    assert b.qas == pytest.approx(2 / 3) and b.pas == pytest.approx((1 + 2**-0.5) / 2)


def test_batch_equals_one_by_one_and_reuses_query_context():
    texts = ["\\boxed{Fargo}", "\\boxed{Heat}", "no", "\\boxed{3}", "\\boxed{Fargo; Fargo}"] * 4
    s = scorer()
    batch = s.score(texts, [dict(QUERY) for _ in texts])
    single = [scorer().score([t], [QUERY])[0] for t in texts]
    assert [b.total for b in batch] == pytest.approx([b.total for b in single])
    assert len(s._contexts) == 1


def test_parquet_style_arrays_are_accepted():
    import numpy as np

    query = {"candidates": np.array(["1", "2", "3", "4"]), "positives": np.array(["2"]), "conditions": CONDITIONS}
    assert score_one("\\boxed{Fargo}", query=query).total == pytest.approx(1.85)


def test_trl_reward_function_signature():
    s = scorer()
    rewards = s(prompts=["p", "p"], completions=["\\boxed{Fargo}", "nothing"],
                candidates=[QUERY["candidates"]] * 2, positives=[["2"]] * 2, conditions=[CONDITIONS] * 2)
    assert rewards == pytest.approx([1.85, -0.5])
    assert s.__name__ == "dual_graph_reward"


def test_bad_queries_and_configs_raise_user_errors():
    with pytest.raises(InputError, match="candidates"):
        scorer().score(["\\boxed{Fargo}"], [{"positives": ["2"]}])
    with pytest.raises(InputError, match="one query per completion"):
        scorer().score(["a", "b"], [QUERY])
    with pytest.raises(ConfigError, match="w_query"):
        RewardConfig(w_query=-1)
    with pytest.raises(ConfigError, match="top_k"):
        RewardConfig(top_k=0)


def test_config_is_cli_ready():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, RewardConfig)
    config = dataclass_from_args(RewardConfig, parser.parse_args(["--w-pref", "0.3", "--use-qas", "false",
                                                                  "--ndcg-k", "5"]))
    assert (config.w_pref, config.use_qas, config.k) == (0.3, False, 5)
    assert RewardConfig().k == 1


def test_embedding_fallback_in_the_scorer_batches_once():
    class Embedder:
        calls = []

        def encode(self, texts):
            self.calls.append(list(texts))
            table = {"Fargo": [1.0, 0.0], "Fargo-ish film": [0.95, 0.05]}
            rows = [torch.tensor(table.get(t, [0.0, 1.0])) for t in texts]
            return torch.nn.functional.normalize(torch.stack(rows), dim=1)

    embedder = Embedder()
    s = scorer(embedder=embedder)
    texts = ["\\boxed{Fargo-ish film}", "\\boxed{Fargo-ish film}", "\\boxed{Fargo}"]
    out = s.score(texts, [QUERY] * 3)
    assert [b.recommended for b in out] == ["2", "2", "2"] and out[0].match_kinds == ["embedding"]
    assert embedder.calls[0] == ["Fargo-ish film"]  # one batch of the distinct unmatched items


# ---------------------------------------------------------------- reward and evaluation agree
def test_an_unknown_first_item_is_a_miss_in_the_reward_and_in_evaluation():
    import pandas as pd

    from rerec.prompt import CatalogView, answer_ranking

    view = CatalogView.from_tables(pd.DataFrame({"item_id": list(TITLES), "title": list(TITLES.values())}))
    text = "\\boxed{Casablanca; Fargo}"
    breakdown = score_one(text, config=RewardConfig(top_k=2))
    assert breakdown.matched_items == [None, "2"] and breakdown.recommended is None
    assert breakdown.hit == 1.0 and breakdown.ndcg == pytest.approx(1 / math.log2(3))  # Fargo at rank 2
    assert score_one(text).ndcg == 0.0 and not score_one(text).valid  # top-1 mode: NDCG@1 reads the first item
    assert answer_ranking(text, QUERY, view).top1 is None  # evaluation's Acc@1 reads the same first item


def test_boxing_every_candidate_earns_nothing_extra():
    every = score_one("\\boxed{Heat; Fargo; Toy Story; Casino}")
    right = score_one("\\boxed{Fargo}")
    assert every.ndcg == 0.0 and not every.valid and every.total < right.total


def test_reward_and_evaluation_read_the_same_recommendation_on_random_completions():
    import random

    import pandas as pd

    from rerec.answer import format_answer
    from rerec.prompt import CatalogView, answer_ranking

    view = CatalogView.from_tables(pd.DataFrame({"item_id": list(TITLES), "title": list(TITLES.values())}))
    rng = random.Random(0)
    pieces = ["Heat", "fargo", "The Fargo", "2", "#3", "4. Casino", "Die Hard", "Casablanca", "", "1. Fargo"]
    texts = []
    for _ in range(300):
        items = [rng.choice(pieces) for _ in range(rng.randint(0, 3))]
        texts.append(rng.choice(["", "Step 1. fine\n"]) + (format_answer(items) if items else "no box"))
    breakdowns = scorer().score(texts, [QUERY] * len(texts))
    for text, b in zip(texts, breakdowns, strict=True):
        answer = answer_ranking(text, QUERY, view)
        assert b.matched_items == answer.ranked and b.recommended == answer.top1, text


@pytest.mark.parametrize("weights, right, wrong, invalid, bounds", [
    # rerec: 1 + 0.5 QAS + 0.5 PAS + 1.0 x (+0.1 / -0.5); Heat: QAS 1/2 (crime, not by d2), PAS 1/2
    ("rerec", 1 + 0.5 + 0.5 + 0.1, 0.5 * 0.5 + 0.5 * 0.5 + 0.1, -0.5, (-0.5, 2.1)),
    # paper: NDCG@1 + 0.01 QAS + 0.01 PAS + 0.1 x (+0.5 / -0.5)
    ("paper", 1 + 0.01 + 0.01 + 0.05, 0.01 * 0.5 + 0.01 * 0.5 + 0.05, -0.05, (-0.05, 1.07)),
])
def test_weight_presets_by_hand(weights, right, wrong, invalid, bounds):
    s = scorer(RewardConfig(weights=weights))
    totals = [b.total for b in s.score(["\\boxed{Fargo}", "\\boxed{Heat}", "no box"], [QUERY] * 3)]
    assert totals == pytest.approx([right, wrong, invalid])
    assert s.bounds == pytest.approx(bounds)  # the curriculum's r_hat follows the weights
    assert s.normalised(wrong) == pytest.approx((wrong - bounds[0]) / (bounds[1] - bounds[0]))
    assert s.config_dict()["weights"] == weights and s.config_dict()["w_format"] is not None


def test_explicit_weights_override_the_preset():
    config = RewardConfig(weights="paper", w_query=0.5, format_bonus=0.2)
    assert config.w_query == 0.5 and config.w_pref is None  # unset until resolved
    resolved = config.resolved()
    assert (resolved.w_query, resolved.w_pref, resolved.w_format, resolved.format_bonus, resolved.format_penalty) == \
        (0.5, 0.01, 0.1, 0.2, 0.5)
    assert resolved.resolved() == resolved
    b = scorer(config).score(["\\boxed{Heat}"], [QUERY])[0]
    assert b.total == pytest.approx(0.5 * 0.5 + 0.01 * 0.5 + 0.1 * 0.2)
    with pytest.raises(ConfigError, match="unknown reward weighting 'papr'"):
        RewardConfig(weights="papr")
