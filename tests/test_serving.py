"""Serving without a registry: naming items, the catalog the model carries, the settings it is served
with, the response built from a completion, and the errors a client meets."""

from __future__ import annotations

import json

import pytest

from rerec.errors import InputError
from rerec.prompt import CatalogView, build_messages
from rerec.serving.recommender import (
    CatalogIndex,
    Recommender,
    ServingSettings,
    catalog_view_dict,
    catalog_view_from_dict,
    request_of_query,
    resolve_settings,
    to_query,
)


def small_view() -> CatalogView:
    titles = {"1": "Heat", "2": "Fargo", "3": "Casablanca", "4": "Cape Fear", "5": "Cape Fear", "6": "Matrix, The",
              "7": "Chasing Amy", "8": "Chasing Amy", "9": "Raising Arizona"}
    years = {"1": 1995, "2": 1996, "3": 1942, "4": 1962, "5": 1991, "6": 1999, "7": 1997, "8": 1997, "9": 1987}
    genres = {"1": ["Crime", "Action"], "2": ["Crime", "Drama"], "3": ["Romance"], "9": ["Comedy"]}
    attributes = {"2": {"director": {"m.coen"}, "actor": {"m.mcdormand"}, "genre": {"Crime"}},
                  "9": {"director": {"m.coen"}, "actor": {"m.mcdormand", "m.cage"}},
                  "5": {"actor": {"m.deniro"}}, "1": {"actor": {"m.deniro", "m.pacino"}}}
    return CatalogView(titles=titles, years=years, genres=genres, attributes=attributes)


@pytest.fixture(scope="module")
def tokenizer():
    from rerec.models.loading import load_tokenizer

    return load_tokenizer("smollm2")


# --- naming items ---------------------------------------------------------------------------------

def test_items_resolve_by_id_title_label_and_normalised_key():
    index = CatalogIndex(small_view())
    assert index.resolve("2", "candidates", 0) == "2"  # id first
    assert index.resolve("Fargo", "candidates", 0) == "2"
    assert index.resolve("Casablanca (1942)", "candidates", 0) == "3"  # title with its year
    assert index.resolve("the matrix", "candidates", 0) == "6"  # "Matrix, The"
    assert index.resolve("  raising arizona ", "candidates", 0) == "9"
    assert index.resolve("Cape Fear (1991)", "candidates", 0) == "5"  # the year picks one remake
    assert index.resolve(3, "candidates", 0) == "3" and index.resolve(3.0, "candidates", 0) == "3"


def test_ambiguous_and_unknown_items_are_named_with_the_fix():
    index = CatalogIndex(small_view())
    with pytest.raises(InputError, match=r"'Cape Fear' names 2 catalog items: 4 \(Cape Fear, 1962\); 5 .*"
                                         r"Fix: pass the item id, or the title with its year"):
        index.resolve("Cape Fear", "candidates", 2)
    with pytest.raises(InputError, match=r"names 2 catalog items.*Fix: pass the item id\.$"):
        index.resolve("Chasing Amy", "history", 0)  # same title, same year: only the id helps
    with pytest.raises(InputError, match=r"column 'candidates', row 1: 'Fargoo' is not in the model's catalog.*"
                                         r"close titles: 2 \(Fargo, 1996\)"):
        index.resolve("Fargoo", "candidates", 1)
    with pytest.raises(InputError, match="an entry is empty"):
        index.resolve("  ", "candidates", 0)


def test_a_request_becomes_the_query_evaluation_renders():
    view = small_view()
    query = {"query_id": "q", "text": " something by the director of Fargo ", "candidates": ["9", "1", "3"],
             "history": ["5"], "conditions": json.dumps([{"relation": "director", "entity": "m.coen", "via": "2",
                                                          "text": "directed by the director of Fargo"}])}
    request = request_of_query(query)
    assert request == {"request": query["text"], "candidates": ["9", "1", "3"], "history": ["5"], "mentions": ["2"],
                       "liked": []}
    assert request_of_query({**query, "user_id": ""}) == request  # an anonymous query sends no user_id
    served = to_query({**request, "candidates": ["Raising Arizona", "1", "Casablanca (1942)"],
                       "history": ["Cape Fear (1991)"], "mentions": ["fargo"]}, CatalogIndex(view), 0)
    for mode in ("evidence", "titles"):
        assert build_messages(served, view, mode, max_history=3) == build_messages(query, view, mode, max_history=3)
    user = build_messages(served, view, "evidence", max_history=3)[1]["content"]
    assert "1. Raising Arizona (1987) - comedy; same director as Fargo; shares an actor with Fargo" in user
    assert "2. Heat (1995) - crime, action; shares an actor with Cape Fear" in user
    assert "I watched: Cape Fear" in user


def small_taste():
    """A hand-made taste index over small_view's items: users u1 (likes Heat over Casablanca over the
    Matrix) and u2 (the reverse); Raising Arizona (9) is liked with the Matrix (6), Fargo (2) with Casablanca (3)."""
    import numpy as np

    from rerec.taste import TasteIndex

    items = [str(i) for i in range(1, 10)]
    emb = np.zeros((9, 2), dtype=np.float32)
    emb[0], emb[2], emb[5] = (3, 0), (2, 0), (1, 0)  # Heat, Casablanca, Matrix along u1's axis
    emb[1], emb[8] = (0, 1), (0, 1)  # Fargo, Raising Arizona
    users = np.array([[1, 0], [-1, 0]], dtype=np.float32)
    # CSR rows of Jaccard neighbours (sorted by item index): 2 <-> 3 (0.5), 9 <-> 6 (0.9)
    rows = {1: ([2], [0.5]), 2: ([1], [0.5]), 5: ([8], [0.9]), 8: ([5], [0.9])}
    ptr, cols, vals = [0], [], []
    for n in range(9):
        c, v = rows.get(n, ([], []))
        cols += c
        vals += v
        ptr.append(len(cols))
    return TasteIndex(items, ["u1", "u2"], emb, users, np.arange(9, 0, -1).astype(np.float32),
                      np.asarray(ptr, dtype=np.int64), np.asarray(cols, dtype=np.int32),
                      np.asarray(vals, dtype=np.float32))


def taste_view() -> CatalogView:
    view = small_view()
    view.taste = small_taste()
    return view


def test_a_request_with_a_user_and_liked_items_renders_the_evaluated_taste_ranks():
    """The query's user and the items it says were liked (co_interaction) set the taste ranks; an item it
    names through a person ("by the director of Raising Arizona") is evidence but not taste."""
    view = taste_view()
    query = {"query_id": "q", "user_id": "u1", "text": "I loved Fargo. Something by the director of Raising Arizona?",
             "candidates": ["6", "3", "1"], "history": ["5"],
             "conditions": json.dumps([{"relation": "co_interaction", "entity": "2", "via": "2"},
                                       {"relation": "director", "entity": "m.coen", "via": "9"}])}
    request = request_of_query(query)
    assert request["mentions"] == ["2", "9"] and request["liked"] == ["2"] and request["user_id"] == "u1"
    served = to_query({**request, "candidates": ["the matrix", "Casablanca", "Heat"], "mentions": ["Raising Arizona"],
                       "liked": ["Fargo"]}, CatalogIndex(view), 0)
    assert build_messages(served, view, "evidence", max_history=3) == build_messages(query, view, "evidence",
                                                                                      max_history=3)
    user = build_messages(served, view, "evidence", max_history=3)[1]["content"]
    # Casablanca first (liked with Fargo), then u1's LightGCN order: Heat before the Matrix; the Matrix's
    # co-likes with Raising Arizona do not count (a person relation, not a liked item)
    assert "1. (taste #3) Matrix, The (1999)" in user and "2. (taste #1) Casablanca (1942) - romance" in user
    assert "3. (taste #2) Heat (1995) - crime, action; shares an actor with Cape Fear" in user


def test_without_a_known_user_the_history_folds_in_and_unknown_users_are_named():
    from rerec.serving.recommender import request_warnings

    view, index = taste_view(), CatalogIndex(taste_view())
    settings = ServingSettings(max_history=0, taste_evidence=True)
    base = {"request": "anything", "candidates": ["6", "3", "1"]}
    anonymous = to_query({**base, "history": ["Heat"]}, index, 0)
    stranger = to_query({**base, "history": ["Heat"], "user_id": "u9"}, index, 0)
    assert view.taste.query_ranks(anonymous) == view.taste.query_ranks(stranger) == \
        view.taste.ranks(["6", "3", "1"], history=["1"]) == {"1": 1, "3": 2, "6": 3}
    assert request_warnings(anonymous, settings, view.taste, 0) == []
    assert request_warnings(stranger, settings, view.taste, 0) == [
        "user_id 'u9' is not a user of the model's training graph: the taste ranks come from the 1 history "
        "item(s) instead"]
    with pytest.raises(InputError, match=r"column 'user_id', row 2: user_id 'u9' is not a user of the model's "
                                         r"training graph, and no history .*Fix: send the person's history"):
        request_warnings(to_query({**base, "user_id": "u9"}, index, 2), settings, view.taste, 2)
    known = to_query({**base, "history": ["Heat"], "user_id": "u2"}, index, 0)
    assert view.taste.query_ranks(known) == {"6": 1, "3": 2, "1": 3}  # u2's taste, not the history's
    assert request_warnings(known, settings, view.taste, 0) == [
        "history was not used: this model shows no history (it was trained with max_history 0) and reads the "
        "user's taste from user_id"]
    assert request_warnings(to_query(base, index, 0), settings, view.taste, 0) == [
        "no user_id and no history the taste index knows: the taste ranks follow the liked items' co-likes and "
        "popularity, not this person's taste"]
    assert request_warnings(known, ServingSettings(max_history=3, taste_evidence=True), view.taste, 0) == []


def test_fields_a_model_without_taste_or_history_cannot_use_are_stated_in_the_response(tokenizer, monkeypatch):
    rec, seen = _recommender(tokenizer, monkeypatch, ["\\boxed{1}"] * 2, max_history=0)
    out = rec.recommend([{"request": "x", "candidates": ["1", "2"], "history": ["Fargo"], "user_id": 7},
                         {"request": "x", "candidates": ["1", "2"]}])
    assert out[0]["warnings"] == [
        "user_id '7' was not used: this model was trained without taste evidence, so its prompt has nothing that "
        "depends on the user",
        "history was not used: this model shows no history (it was trained with max_history 0) and has no taste "
        "evidence"]
    assert out[1]["warnings"] == [] and "taste #" not in seen["prompts"][0]


def test_a_model_with_taste_evidence_shows_the_ranks_and_needs_its_index(tokenizer, monkeypatch):
    from rerec.errors import ConfigError

    rec, seen = _recommender(tokenizer, monkeypatch, ["\\boxed{1}"], view=taste_view(), taste_evidence=True)
    out = rec.recommend([{"request": "x", "candidates": ["Heat", "3"], "user_id": "u2"}])
    # listed in u2's taste order (rerec.prompt.display_order), so "\\boxed{1}" is Casablanca, the first row shown
    assert out[0]["warnings"] == [] and ("1. (taste #1) Casablanca (1942) - romance\n"
                                         "2. (taste #2) Heat (1995) - crime, action") in seen["prompts"][0]
    assert out[0]["answer"] == ["3"] and out[0]["titles"][0] == "Casablanca"
    with pytest.raises(ConfigError, match="trained and evaluated with taste evidence, but no taste index"):
        Recommender(None, tokenizer, small_view(), ServingSettings(taste_evidence=True))
    for bad in ([1], {"a": 1}, 2.5, True):
        with pytest.raises(InputError, match="not an id"):
            rec.recommend([{"request": "x", "candidates": ["1"], "user_id": bad}])


def test_catalog_view_round_trips_through_json_for_prompts():
    view = small_view()
    data = json.loads(json.dumps(catalog_view_dict(view)))
    assert all(set(rels) <= {"director", "actor", "writer", "producer"} for rels in data["attributes"].values())
    back = catalog_view_from_dict(data)
    query = {"text": "x", "candidates": ["9", "1", "5", "6"], "history": ["2"], "conditions": "[]"}
    assert build_messages(query, back, "evidence") == build_messages(query, view, "evidence")
    assert back.titles == view.titles and back.years == view.years


def test_catalog_view_of_another_format_is_refused():
    with pytest.raises(Exception, match="register the model again"):
        catalog_view_from_dict({"format": "something/0", "items": []})


# --- settings -------------------------------------------------------------------------------------

def test_settings_come_from_the_evaluation_then_training_then_profile(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {
        "profile": "smollm2", "context_mode": "evidence", "max_history": 2, "max_new_tokens": 200}}))
    settings, notes = resolve_settings(tmp_path)
    assert settings == ServingSettings(context_mode="evidence", max_history=2, max_prompt_tokens=320,
                                       max_new_tokens=200, batch_size=8, n_candidates=4,
                                       taste_evidence=True)  # 320, 4, taste: smollm2
    report = {"config": {"context_mode": "titles", "max_history": 2, "max_prompt_tokens": 400, "max_new_tokens": 150,
                         "batch_size": 16, "n_candidates": 0}}
    settings, notes = resolve_settings(tmp_path, report, {"batch_size": 4, "max_history": None})
    assert settings == ServingSettings(context_mode="titles", max_history=2, max_prompt_tokens=400, max_new_tokens=150,
                                       batch_size=4, n_candidates=4, taste_evidence=True)
    assert any("context_mode: trained with 'evidence', evaluated with 'titles'" in n for n in notes)
    assert "batch_size=4 (given)" in notes[0] and "context_mode='titles' (evaluation report)" in notes[0]


def test_settings_saved_under_the_old_names_are_read_as_the_new_ones(tmp_path):
    """Every stage names the prompt's context ``context_mode`` and the completion limit ``max_new_tokens``. What was
    saved before says ``max_completion_tokens`` (an RFT training config), ``mode`` (an evaluation report's config, a
    registered model's ``model_config``): read as the new names, silently (a saved file cannot be fixed); a person's
    overrides under an old name are read with a FutureWarning; both names at once are refused."""
    import warnings

    from rerec.errors import ConfigError

    old, new = tmp_path / "old", tmp_path / "new"
    for folder, train in ((old, {"context_mode": "evidence", "max_completion_tokens": 200}),
                          (new, {"context_mode": "evidence", "max_new_tokens": 200})):
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"config": {"profile": "smollm2", **train}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about a saved file
        assert resolve_settings(old)[0].max_new_tokens == 200
        assert resolve_settings(old, {"config": {"mode": "titles", "max_history": 2}}) == \
            resolve_settings(new, {"config": {"context_mode": "titles", "max_history": 2}})
        registered = {"mode": "titles", "max_history": 2, "max_prompt_tokens": 300, "max_new_tokens": 64,
                      "batch_size": 4, "n_candidates": 4}
        assert ServingSettings.from_dict(registered) == ServingSettings(
            context_mode="titles", max_history=2, max_prompt_tokens=300, max_new_tokens=64, batch_size=4,
            n_candidates=4)
    with pytest.warns(FutureWarning, match="'mode' is deprecated and will be removed; use 'context_mode'"):
        assert resolve_settings(new, None, {"mode": "titles"})[0].context_mode == "titles"
    with pytest.raises(ConfigError, match="'mode' and 'context_mode' are one option"):
        resolve_settings(new, None, {"mode": "titles", "context_mode": "evidence"})


def test_taste_evidence_comes_from_the_training_config_unless_evaluated_otherwise(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"profile": "tiny", "taste_evidence": True}}))
    settings, notes = resolve_settings(tmp_path)
    assert settings.taste_evidence is True and "taste_evidence=True (training config)" in notes[0]
    settings, notes = resolve_settings(tmp_path, {"config": {"taste_evidence": False}})
    assert settings.taste_evidence is False
    assert any("taste_evidence: trained with True, evaluated with False" in n for n in notes)
    assert ServingSettings.from_dict(settings.to_dict()) == settings


def test_decade_evidence_comes_from_the_training_config_and_old_folders_keep_their_prompts(tmp_path):
    from unittest.mock import patch

    from rerec.models.profiles import PROFILES, get_profile

    on = get_profile("smollm2").replace(name="decades", decade_evidence=True)
    with patch.dict(PROFILES, {"decades": on}):
        (tmp_path / "metrics.json").write_text(json.dumps({"config": {"profile": "decades"}}))
        settings, notes = resolve_settings(tmp_path)  # trained before the setting existed, though its profile has it now
    assert settings.decade_evidence is False and "decade_evidence=False (trained before decade evidence)" in notes[0]
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"profile": "smollm2", "decade_evidence": True}}))
    settings, notes = resolve_settings(tmp_path)
    assert settings.decade_evidence is True and "decade_evidence=True (training config)" in notes[0]
    assert ServingSettings.from_dict(settings.to_dict()) == settings
    assert ServingSettings.from_dict({"context_mode": "evidence"}).decade_evidence is False  # registered before


def test_a_model_with_decade_evidence_is_served_the_lines_it_was_trained_on(tokenizer, monkeypatch):
    rec, seen = _recommender(tokenizer, monkeypatch, ["\\boxed{1}"], decade_evidence=True)
    rec.recommend([{"request": "x", "candidates": ["Heat", "Fargo (1996)"]}])
    assert "Heat (1995) - 1990s; crime, action" in seen["prompts"][0]
    rec, seen = _recommender(tokenizer, monkeypatch, ["\\boxed{1}"])
    rec.recommend([{"request": "x", "candidates": ["Heat", "Fargo (1996)"]}])
    assert "Heat (1995) - crime, action" in seen["prompts"][0]


def test_sft_folders_name_their_completion_limit_max_new_tokens(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"profile": "tiny", "max_new_tokens": 64}}))
    assert resolve_settings(tmp_path)[0].max_new_tokens == 64


# --- the response and the errors, on fixed completions ----------------------------------------------

def _recommender(tokenizer, monkeypatch, completions, view=None, **settings):
    from rerec.eval import generate as G

    seen = {}

    def fake(model, tok, prompts, **kwargs):
        seen.update(prompts=list(prompts), **kwargs)
        return G.GenerationResult(list(completions[: len(prompts)]), n_new_tokens=1, seconds=1.0)

    monkeypatch.setattr(G, "generate_completions", fake)
    return Recommender(None, tokenizer, view or small_view(), ServingSettings(**settings)), seen


def test_answered_items_come_first_then_the_rest_in_the_order_given(tokenizer, monkeypatch):
    completions = [
        "1. Casablanca is a romance.\n\\boxed{Casablanca; 2}",  # the case: matches "Casablanca (1942)"
        "I am not sure.",  # no answer: nothing is chosen, every candidate is appended
        "\\boxed{Vertigo; Heat}",  # an item naming no candidate stays a miss in `matched`
    ]
    rec, seen = _recommender(tokenizer, monkeypatch, completions, max_new_tokens=7, batch_size=3)
    requests = [{"request": "an old romance", "candidates": ["Heat", "Fargo (1996)", "3"]},
                {"request": "anything", "candidates": ["1", "2"]},
                {"request": "crime", "candidates": ["2", "Heat"], "history": ["9"]}]
    out = rec.recommend(requests)
    assert seen["max_new_tokens"] == 7 and seen["batch_size"] == 3 and len(seen["prompts"]) == 3
    assert out[0]["answer"] == ["3", "2"] and out[0]["ranked"] == ["3", "2", "1"]
    assert out[0]["titles"] == ["Casablanca", "Fargo", "Heat"] and out[0]["matched"] == ["3", "2"]
    assert out[0]["answer_items"] == ["Casablanca", "2"] and out[0]["parsed"] is True
    assert out[0]["reasoning"] == "1. Casablanca is a romance."
    assert out[1] == {"answer": [], "ranked": ["1", "2"], "titles": ["Heat", "Fargo"], "answer_items": [],
                      "matched": [], "parsed": False, "reasoning": "I am not sure.", "completion": "I am not sure.",
                      "warnings": []}
    assert out[2]["matched"] == [None, "1"] and out[2]["answer"] == ["1"] and out[2]["ranked"] == ["1", "2"]
    rec.recommend(requests, {"max_new_tokens": 9, "batch_size": 1})
    assert seen["max_new_tokens"] == 9 and seen["batch_size"] == 1


def test_a_trace_that_runs_past_the_last_candidate_is_cut_there_and_asked_for_its_answer(tokenizer, monkeypatch):
    """The issue's runaway: every row "no", then rows 3, 4, ... repeating until the token limit. The trace is cut
    where row 3 of 2 candidates starts, the box is opened, and what the model then writes is its answer: closed,
    said in a warning. A trace that answered by itself, or ran out inside its rows, is left as it was."""
    from rerec.eval import generate as G

    runaway = "Wanted: crime.\n1. Heat - crime: crime no - no.\n2. Fargo - crime: crime no - no.\n3. Heat - crime"
    calls = []

    def fake(model, tok, prompts, **kwargs):
        calls.append((list(prompts), kwargs))
        if len(calls) == 1:
            return G.GenerationResult([runaway, "\\boxed{Heat}", "1. Heat - no.\n2. Fargo"], 9, 1.0)
        return G.GenerationResult(["Fargo}"], 2, 0.5)

    monkeypatch.setattr(G, "generate_completions", fake)
    rec = Recommender(None, tokenizer, small_view(), ServingSettings(max_new_tokens=7, batch_size=3))
    out = rec.recommend([{"request": "crime", "candidates": ["Heat", "Fargo"]}] * 3)
    assert len(calls) == 2 and len(calls[1][0]) == 1  # only the runaway is asked again
    cut = runaway[: runaway.index("3. Heat")] + "\\boxed{"
    first_prompt = tokenizer.encode(rec.ranker().prompts([rec.queries([{"request": "crime", "candidates": ["Heat", "Fargo"]}])[0]])[0],
                                    add_special_tokens=False)
    assert calls[1][0][0] == first_prompt + tokenizer.encode(cut, add_special_tokens=False)
    assert calls[1][1]["max_new_tokens"] == G.CLOSING_NEW_TOKENS
    assert out[0]["completion"] == cut + "Fargo}" and out[0]["answer"] == ["2"] and out[0]["parsed"] is True
    assert any("ran past the last candidate" in w for w in out[0]["warnings"])
    assert out[1]["answer"] == ["1"] and out[1]["warnings"] == []
    assert out[2]["parsed"] is False and out[2]["completion"] == "1. Heat - no.\n2. Fargo"


def test_past_last_row_finds_the_row_after_the_last_candidate_only():
    from rerec.eval.generate import past_last_row

    text = "Wanted: drama.\n1. A (1995) - no.\n2. B - no.\n3. A (1995) - no."
    assert past_last_row(text, 2) == text.index("3. A")
    assert past_last_row(text, 3) is None  # row 3 of 3 is a candidate's row
    assert past_last_row("Released in 1995. 3. A", 2) is None  # only at the start of a line
    assert past_last_row("1. A\n13. B", 2) is None and past_last_row("1. A", 0) is None


@pytest.mark.parametrize("request_, message", [
    ({"request": "x", "candidates": []}, "row 0: the candidate list is empty"),
    ({"request": "x"}, "the candidate list is empty"),
    ({"request": "x", "candidates": ["Heat", "Vertigo"]}, "'Vertigo' is not in the model's catalog"),
    ({"request": "x", "candidates": ["1", "Heat"]}, "candidates 1 and 2 are the same item"),
    ({"request": "x", "candidates": ["1"], "history": ["Nope"]}, "column 'history', row 0: 'Nope'"),
    ({"request": "", "candidates": ["1"]}, "the request text is missing or empty"),
    ({"request": "x", "candidates": "Heat"}, "candidates is str 'Heat', not a list"),
    ({"request": "x", "candidates": ["1"], "user": "u1"}, "unknown field(s) 'user'"),
])
def test_bad_requests_are_refused_with_what_to_fix(tokenizer, monkeypatch, request_, message):
    rec, seen = _recommender(tokenizer, monkeypatch, ["\\boxed{1}"])
    with pytest.raises(InputError, match="Fix: ") as caught:
        rec.recommend([request_])
    assert message in str(caught.value) and not seen  # refused before generating


def test_bad_params_are_refused(tokenizer, monkeypatch):
    rec, _ = _recommender(tokenizer, monkeypatch, ["\\boxed{1}"])
    request = [{"request": "x", "candidates": ["1"]}]
    with pytest.raises(InputError, match="unknown param"):
        rec.recommend(request, {"temperature": 0.7})
    for bad in (0, -3, 2.5, "many", True):
        with pytest.raises(InputError, match="not a whole number of at least 1"):
            rec.recommend(request, {"max_new_tokens": bad})


def test_a_prompt_over_the_limit_is_refused_not_cut(tokenizer, monkeypatch):
    rec, seen = _recommender(tokenizer, monkeypatch, ["\\boxed{1}"] * 2, max_prompt_tokens=120, n_candidates=4)
    request = {"request": "a crime film", "candidates": [str(i) for i in range(1, 10)]}
    n = len(tokenizer.encode(rec.ranker().prompts(rec.queries([request]))[0], add_special_tokens=False))
    assert n > 120
    with pytest.raises(InputError, match=rf"row 0: the prompt is {n} tokens, over the model's limit of 120.*"
                                         r"send fewer candidates \(it was trained with 4 candidates a prompt\).*"
                                         rf'"max_prompt_tokens": {n}'):
        rec.recommend([request])
    assert not seen
    assert rec.recommend([request], {"max_prompt_tokens": n})[0]["answer"] == ["1"]


def test_register_refuses_a_missing_data_folder_before_logging(tiny_hf_model, tmp_path):
    from rerec.errors import RerecError
    from rerec.registry.register import RegisterConfig, register

    with pytest.raises(RerecError, match="--data .*no such folder, so nothing was registered"):
        register(tiny_hf_model, tmp_path / "report.json", RegisterConfig(), data_dir=tmp_path / "missing")


def test_register_refuses_a_taste_model_without_its_graphs_and_reward(tiny_hf_model, tmp_path):
    from rerec.errors import RerecError
    from rerec.registry.register import RegisterConfig, register

    (tmp_path / "graphs").mkdir()
    with pytest.raises(RerecError, match=r"--reward \(not given\): the model was evaluated with taste evidence.*"
                                         "nothing was registered"):
        register(tiny_hf_model, tmp_path / "report.json", RegisterConfig(), serving={"taste_evidence": True},
                 graphs_dir=tmp_path / "graphs")


def test_registered_models_find_their_names_in_rerec_serving():
    """Models registered before rerec.serving became a package carry a pyfunc.py that imports these names from
    ``rerec.serving``; loaded where this rerec is already imported (``rerec recommend --model models:/...``),
    that code runs against this package."""
    import rerec.serving as package
    from rerec.serving import recommender

    for name in ("GENERATION_PARAMS", "REQUEST_COLUMNS", "RESPONSE_COLUMNS", "CatalogIndex", "Recommender",
                 "ServingSettings", "read_catalog_view"):
        assert getattr(package, name) is getattr(recommender, name), name
