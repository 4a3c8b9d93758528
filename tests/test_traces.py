"""Trace synthesis invariants: the boxed answer is the positive, every stated fact is true of the graph."""

import re

import pytest
from test_prompt import small_view

from rerec.answer import format_answer, parse_answer
from rerec.data.schema import decode_conditions, encode_conditions
from rerec.prompt import answer_ranking, candidate_lines
from rerec.train.traces import (
    PROSE_STYLES,
    STYLES,
    check_label,
    condition_label,
    no_fit_query,
    synthesize_trace,
)


def queries() -> list[dict]:
    base = {"candidates": ["3", "2", "5", "4", "6"], "history": ["6"]}
    return [
        {**base, "query_id": "explicit", "type": "explicit", "text": "A comedy from the 1980s?", "positives": ["2"],
         "conditions": encode_conditions([
             {"relation": "genre", "entity": "Comedy", "text": "a comedy"},
             {"relation": "decade", "entity": "1980s", "text": "from the 1980s"}])},
        {**base, "query_id": "implicit", "type": "implicit", "text": "By the director of Fargo?", "positives": ["2"],
         "conditions": encode_conditions([{"relation": "director", "entity": "m.coen", "via": "1",
                                           "text": "by the director of Fargo"}])},
        {**base, "query_id": "misinformed", "type": "misinformed", "positives": ["4"],
         "text": "Another comedy like Heat.",
         "conditions": encode_conditions([{"relation": "genre", "entity": "Comedy", "text": "comedy",
                                           "false_premise": {"item_id": "3", "text": "like Heat"}}])},
        {**base, "query_id": "interest", "type": "interest", "text": "I loved Fargo.", "positives": ["5"],
         "conditions": encode_conditions([{"relation": "co_interaction", "entity": "1", "via": "1",
                                           "text": "loved Fargo"}])},
    ]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("index", range(4))
def test_trace_answer_is_the_positive_and_facts_are_true(style, index):
    view, query = small_view(), queries()[index]
    trace = synthesize_trace(query, view, style=style)
    parsed = parse_answer(trace.text)
    assert parsed.ok and parsed.items == [view.title(query["positives"][0])]
    assert answer_ranking(trace.text, query, view).ranked == [query["positives"][0]]
    assert trace.text.rstrip().endswith("}")  # the box is the last thing written
    for fact in trace.facts:
        assert view.satisfies(fact.item_id, fact.relation, fact.entity) == fact.holds, fact
    # every candidate said to be ruled out really lacks a condition, and the positive is never ruled out
    negated = [f for f in trace.facts if not f.holds]
    assert query["positives"][0] not in {f.item_id for f in negated if f.item_id in query["candidates"]}


def test_ruled_out_sentences_match_recorded_facts():
    view, query = small_view(), queries()[0]
    trace = synthesize_trace(query, view, style="eliminate")
    named = re.findall(r"(\w[\w' .]*?) is not (a comedy|from the 1980s)", trace.text)
    assert named, trace.text
    assert len(named) == len([f for f in trace.facts if not f.holds])
    by_name = {view.name(c): c for c in query["candidates"]}
    for name, phrase in named:
        relation, entity = ("genre", "Comedy") if phrase == "a comedy" else ("decade", "1980s")
        assert not view.satisfies(by_name[name.strip()], relation, entity)


def test_misinformed_premise_is_noticed_only_when_false():
    view, query = small_view(), queries()[2]
    trace = synthesize_trace(query, view, style="direct")
    assert "the request is wrong about Heat" in trace.text
    true_premise = {**query, "conditions": query["conditions"].replace('"item_id": "3"', '"item_id": "2"')}
    assert "wrong" not in synthesize_trace(true_premise, view, style="direct").text  # Raising Arizona is a comedy


def test_interest_queries_make_no_claims_about_unknown_relations():
    trace = synthesize_trace(queries()[3], small_view(), style="checklist")
    assert trace.facts == [] and "is not" not in trace.text


def test_styles_vary_and_seeded_choice_is_deterministic():
    view = small_view()
    picked = {synthesize_trace({**queries()[0], "query_id": f"q{i}"}, view, seed=0).style for i in range(30)}
    assert picked == set(PROSE_STYLES)  # table is opted into, never picked by default
    assert synthesize_trace(queries()[1], view, seed=3).text == synthesize_trace(queries()[1], view, seed=3).text


@pytest.mark.parametrize("with_lines", [False, True])
@pytest.mark.parametrize("index", range(3))
def test_table_checks_every_candidate_in_order(index, with_lines):
    view, query = small_view(), queries()[index]
    lines = candidate_lines(query, view, "evidence", max_history=0) if with_lines else None
    trace = synthesize_trace(query, view, style="table", candidate_lines=lines)
    wanted = re.search(r"^Wanted: (.+)\.$", trace.text, flags=re.M).group(1).split("; ")
    rows = re.findall(r"^(\d+\. .+): (.+) - (fits|no)\.$", trace.text, flags=re.M)
    conditions = decode_conditions(query["conditions"])
    assert wanted == [condition_label(c, view) for c in conditions]
    shown = lines or [f"{i}. {view.title(c)}" for i, c in enumerate(query["candidates"], start=1)]
    assert [r[0] for r in rows] == shown, trace.text  # every candidate, as the prompt lists it, in order
    for (_, checks, verdict), item in zip(rows, query["candidates"], strict=True):
        said = [c.rsplit(" ", 1) for c in checks.split(", ")]
        assert [label for label, _ in said] == [check_label(c, view) for c in conditions]
        truth = [f.holds for f in trace.facts if f.item_id == item and f.relation != "premise"][-len(wanted):]
        assert [answer == "yes" for _, answer in said] == truth  # each yes/no is the graph's
        assert (verdict == "fits") == all(truth)
    assert query["positives"][0] in {c for (_, _, v), c in zip(rows, query["candidates"], strict=True) if v == "fits"}
    premise_facts = 1 if "request is wrong" in trace.text else 0
    assert len(trace.facts) == premise_facts + len(wanted) * len(query["candidates"])  # every check recorded


def test_a_multi_hop_condition_is_wanted_in_the_prompts_words_and_checked_by_its_relation():
    view, query = small_view(), queries()[1]  # by the director of Fargo; Raising Arizona (2) shares him
    lines = candidate_lines(query, view, "evidence", max_history=0)
    body = synthesize_trace(query, view, style="table", candidate_lines=lines).text.splitlines()
    assert body[0] == "Wanted: same director as Fargo."
    assert "same director as Fargo" in lines[1]  # what the Wanted line names is the evidence the prompt shows
    assert body[2] == lines[1] + ": director yes - fits."
    assert body[1] == lines[0] + ": director no - no."
    assert "director" not in lines[0]


@pytest.mark.parametrize("index", range(3))
def test_scan_stops_at_the_positive_and_boxes_the_row_above(index):
    view, query = small_view(), queries()[index]
    lines = candidate_lines(query, view, "evidence", max_history=0)
    table = synthesize_trace(query, view, style="table", candidate_lines=lines).text.splitlines()
    scan = synthesize_trace(query, view, style="scan", candidate_lines=lines)
    at = list(query["candidates"]).index(query["positives"][0])
    body = scan.text.splitlines()
    head = len(table) - 1 - len(query["candidates"])  # notes and the "Wanted" line
    assert body[:-1] == table[:head + at + 1]  # the table's rows, cut after the positive's
    assert body[-2].startswith(lines[at]) and body[-2].endswith(" - fits.")
    # (generated queries have one fitting candidate, the positive; this fixture may have more)
    assert all(row.endswith(" - no.") for row, c in zip(body[head:-2], query["candidates"], strict=False)
               if not all(view.satisfies(c, k["relation"], str(k["entity"]))
                          for k in decode_conditions(query["conditions"])))
    assert body[-1] == table[-1] == format_answer([view.title(query["positives"][0])])
    wanted = re.search(r"^Wanted: (.+)\.$", scan.text, flags=re.M).group(1).split("; ")
    premise_facts = 1 if "request is wrong" in scan.text else 0
    assert scan.style == "scan" and len(scan.facts) == premise_facts + (at + 1) * len(wanted)  # rows checked


def test_no_fit_query_drops_the_match_and_answers_the_closest():
    view, query = small_view(), queries()[0]  # comedy from the 1980s; the match is 2 (Raising Arizona)
    nf = no_fit_query(query, view)
    # left: Heat (action, 1990s) 0 met, Usual Suspects (1990s) 0, Toy Story (comedy, 1990s) 1, Casino 0
    assert nf["candidates"] == ["3", "5", "4", "6"] and nf["positives"] == ["4"] and nf["no_fit"]
    assert no_fit_query(queries()[1], view)["positives"] == ["3"]  # nobody by the Coens left: the first shown
    assert no_fit_query(queries()[2], view) is None  # Raising Arizona is a comedy too: the list still has a match
    assert no_fit_query(queries()[3], view) is None  # nothing the graph decides
    assert no_fit_query({**query, "candidates": ["2", "4"]}, view) is None  # one candidate would be left


@pytest.mark.parametrize("style", ["table", "scan"])
def test_a_list_without_a_match_is_checked_row_by_row_and_the_closest_boxed(style):
    view = small_view()
    nf = no_fit_query(queries()[0], view)
    lines = candidate_lines(nf, view, "evidence", max_history=0)
    trace = synthesize_trace(nf, view, style=style, candidate_lines=lines)
    body = trace.text.splitlines()
    assert body[0] == "Wanted: comedy; 1980s."
    assert [row.split(": ")[0] for row in body[1:5]] == lines  # every candidate, none skipped
    assert all(row.endswith(" - no.") for row in body[1:5])
    assert body[5] == f"None fits every condition; the closest is {view.name('4')}."
    assert body[6] == format_answer([view.title("4")]) and len(body) == 7
    for fact in trace.facts:
        assert view.satisfies(fact.item_id, fact.relation, fact.entity) == fact.holds, fact


def test_table_falls_back_to_direct_without_decidable_conditions():
    trace = synthesize_trace(queries()[3], small_view(), style="table")
    assert trace.style == "direct" and trace.facts == []


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="unknown trace style"):
        synthesize_trace(queries()[0], small_view(), styles=("table", "poem"))


def test_derived_decades_name_the_candidates_own_decade_before_the_check():
    view, query = small_view(), queries()[0]  # a comedy from the 1980s
    lines = candidate_lines(query, view, "evidence", max_history=0)
    plain = synthesize_trace(query, view, style="table", candidate_lines=lines)
    derived = synthesize_trace(query, view, style="table", candidate_lines=lines, derive_decades=True)
    assert derived.facts == plain.facts and derived.answer_id == plain.answer_id
    rows = re.findall(r"^(\d+\. .+): (.+) - (fits|no)\.$", derived.text, flags=re.M)
    assert len(rows) == len(query["candidates"])
    for (_, checks, _), item in zip(rows, query["candidates"], strict=True):
        genre, decade = checks.split(", ")
        own = sorted(view.attributes.get(item, {}).get("decade", ["?"]))[0]
        if own == "?":  # the graph records no decade for Casino: nothing to derive, the check as before
            assert decade == "1980s no", derived.text
        else:
            assert decade == f"({own}) 1980s {'yes' if own == '1980s' else 'no'}", derived.text
        assert genre.startswith("comedy ")  # other checks are written as before
    assert derived.text.count("s) 1980s ") == len(rows) - 1
    assert re.sub(r"\(\d{4}s\) ", "", derived.text) == plain.text  # nothing else differs
