"""Prompts: evidence and titles modes, and the round trip prompt -> formatted answer -> parsed -> item."""

import pandas as pd
import pytest

from rerec.answer import format_answer, parse_answer
from rerec.data.schema import encode_conditions
from rerec.errors import ConfigError
from rerec.prompt import CatalogView, answer_ranking, build_messages, decade_of, shrink_candidates


def small_view() -> CatalogView:
    items = pd.DataFrame({
        "item_id": ["1", "2", "3", "4", "5", "6"],
        "title": ["Fargo", "Raising Arizona", "Heat", "Toy Story", "Usual Suspects, The", "Casino"],
        "year": pd.array([1996, 1987, 1995, 1995, 1995, None], dtype="Int64"),
        "genres": [["Crime", "Drama"], ["Comedy"], ["Action", "Crime"], ["Animation", "Comedy"], ["Crime"], ["Drama"]],
    })
    attrs = pd.DataFrame([
        ("1", "director", "m.coen"), ("2", "director", "m.coen"), ("3", "director", "m.mann"),
        ("1", "actor", "m.a1"), ("1", "actor", "m.a2"), ("5", "actor", "m.a1"), ("5", "actor", "m.a2"),
        ("4", "actor", "m.hanks"), ("2", "genre", "Comedy"), ("4", "genre", "Comedy"), ("3", "genre", "Action"),
        ("2", "decade", "1980s"), ("3", "decade", "1990s"), ("4", "decade", "1990s"), ("5", "decade", "1990s"),
    ], columns=["item_id", "relation", "entity"])
    inter = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u1"], "item_id": ["3", "3", "3", "4"]})
    return CatalogView.from_tables(items, attrs, inter)


def implicit_query() -> dict:
    return {
        "query_id": "q1", "type": "implicit", "text": "Something by the director of Fargo?",
        "conditions": encode_conditions([{"relation": "director", "entity": "m.coen",
                                          "text": "by the director of Fargo", "via": "1"}]),
        "positives": ["2"], "candidates": ["3", "2", "5", "4"], "history": ["4", "6"],
    }


def test_evidence_mode_lists_shared_entities_with_named_items():
    view = small_view()
    user = build_messages(implicit_query(), view, mode="evidence", max_history=1)[1]["content"]
    lines = user.splitlines()
    assert lines[0] == "Request: Something by the director of Fargo?"
    assert lines[1] == "I watched: Casino"  # only the last history item (max_history=1)
    assert "2. Raising Arizona (1987) - comedy; same director as Fargo" in lines
    assert "3. Usual Suspects, The (1995) - crime; shares 2 actors with Fargo" in lines
    assert lines[-1].startswith("4. Toy Story (1995) - animation, comedy")  # no evidence shared with Fargo/Casino


def test_decade_evidence_names_each_dated_candidates_decade_after_its_year():
    view = small_view()
    view.decades = True
    query = {**implicit_query(), "candidates": ["3", "2", "6"]}
    lines = build_messages(query, view, mode="evidence", include_history=False)[1]["content"].splitlines()
    assert lines[-3:] == ["1. Heat (1995) - 1990s; action, crime",
                          "2. Raising Arizona (1987) - 1980s; comedy; same director as Fargo",
                          "3. Casino - drama"]  # no year in the catalog: no decade either
    view.decades = False  # the default: the lines as before
    assert build_messages(query, view, mode="evidence", include_history=False)[1]["content"].splitlines()[-3] == \
        "1. Heat (1995) - action, crime"


@pytest.mark.parametrize(("year", "decade"), [(1941, "1940s"), (1990, "1990s"), (1999, "1990s"), (2000, "2000s")])
def test_decade_of(year, decade):
    assert decade_of(year) == decade


def test_titles_mode_lists_titles_only_and_system_states_format():
    messages = build_messages(implicit_query(), small_view(), mode="titles", include_history=False)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "\\boxed{" in messages[0]["content"]
    user = messages[1]["content"]
    assert "I watched" not in user
    assert user.splitlines()[-4:] == ["1. Heat", "2. Raising Arizona", "3. Usual Suspects, The", "4. Toy Story"]


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="evidence"):
        build_messages(implicit_query(), small_view(), mode="graph")


@pytest.mark.parametrize("answer", ["Raising Arizona", "raising arizona (1987)", "2"])
def test_round_trip_formatted_answer_parses_to_positive(answer):
    view, query = small_view(), implicit_query()
    build_messages(query, view)
    completion = "Raising Arizona is by the director of Fargo.\n" + format_answer([answer])
    assert parse_answer(completion).items == [answer]
    assert answer_ranking(completion, query, view).ranked == ["2"]


def test_unparseable_or_unknown_answers_match_nothing():
    view, query = small_view(), implicit_query()
    assert answer_ranking("I think Raising Arizona", query, view).ranked == []
    assert answer_ranking(format_answer(["Jaws"]), query, view).ranked == [None]  # a boxed miss keeps its place


def test_shrink_candidates_keeps_positive_and_hardest_negatives_in_order():
    view = small_view()
    query = {**implicit_query(), "candidates": ["3", "2", "5", "4", "6", "1"],
             "conditions": encode_conditions([{"relation": "genre", "entity": "Comedy", "text": "a comedy"}])}
    shown = shrink_candidates(query, 2, view, seed=0)
    assert shown["candidates"] == ["2", "4"]  # Toy Story is the only negative that is a comedy
    again = shrink_candidates(query, 3, view, seed=1)
    assert "2" in again["candidates"] and len(again["candidates"]) == 3
    assert again["candidates"] == [c for c in query["candidates"] if c in again["candidates"]]
    assert shrink_candidates(query, 3, view, seed=1) == again  # deterministic


def test_shrink_candidates_keeps_a_misinformed_querys_trap():
    # "a comedy like Heat": Heat (3) is the false premise and meets no condition, while Toy Story (4)
    # meets the comedy condition: ranked by conditions met alone, Heat is the first negative cut
    view = small_view()
    query = {"query_id": "m1", "type": "misinformed", "positives": ["2"], "candidates": ["5", "4", "3", "2", "6"],
             "conditions": encode_conditions([
                 {"relation": "genre", "entity": "Comedy", "text": "a comedy",
                  "false_premise": {"item_id": "3", "text": "like Heat"}},
                 {"relation": "decade", "entity": "1980s", "text": "from the 80s"}])}
    for seed in range(5):
        assert shrink_candidates(query, 2, view, seed=seed)["candidates"] == ["3", "2"]
        assert shrink_candidates(query, 3, view, seed=seed)["candidates"] == ["4", "3", "2"]
    without_trap = {**query, "conditions": encode_conditions([{"relation": "genre", "entity": "Comedy"},
                                                              {"relation": "decade", "entity": "1980s"}])}
    assert "3" not in shrink_candidates(without_trap, 2, view, seed=0)["candidates"]
    # a trap that is no candidate (or is the positive) takes no slot
    elsewhere = {**query, "candidates": ["5", "4", "2", "6"]}
    assert shrink_candidates(elsewhere, 2, view, seed=0)["candidates"] == ["4", "2"]


def test_render_prompt_uses_chat_template_with_generation_prompt():
    from rerec.models.loading import load_tokenizer
    from rerec.prompt import render_prompt

    tok = load_tokenizer("smollm2")
    text = render_prompt(tok, build_messages(implicit_query(), small_view()))
    assert text.startswith("<|im_start|>system\nYou recommend one movie")
    assert text.endswith("<|im_start|>assistant\n")
    assert "same director as Fargo" in text
