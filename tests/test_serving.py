"""Serving without a registry: naming items, the catalog the model carries, the settings it is served
with, the response built from a completion, and the errors a client meets."""

from __future__ import annotations

import json

import pytest

from rerec.errors import InputError
from rerec.prompt import CatalogView, build_messages
from rerec.serving import (
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
    assert request == {"request": query["text"], "candidates": ["9", "1", "3"], "history": ["5"], "mentions": ["2"]}
    served = to_query({**request, "candidates": ["Raising Arizona", "1", "Casablanca (1942)"],
                       "history": ["Cape Fear (1991)"], "mentions": ["fargo"]}, CatalogIndex(view), 0)
    for mode in ("evidence", "titles"):
        assert build_messages(served, view, mode, max_history=3) == build_messages(query, view, mode, max_history=3)
    user = build_messages(served, view, "evidence", max_history=3)[1]["content"]
    assert "1. Raising Arizona (1987) - comedy; same director as Fargo; shares an actor with Fargo" in user
    assert "2. Heat (1995) - crime, action; shares an actor with Cape Fear" in user
    assert "I watched: Cape Fear" in user


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
        "profile": "smollm2", "context_mode": "evidence", "max_history": 2, "max_completion_tokens": 200}}))
    settings, notes = resolve_settings(tmp_path)
    assert settings == ServingSettings(mode="evidence", max_history=2, max_prompt_tokens=320, max_new_tokens=200,
                                       batch_size=8, n_candidates=4)  # 320 and 4: the smollm2 profile
    report = {"config": {"mode": "titles", "max_history": 2, "max_prompt_tokens": 400, "max_new_tokens": 150,
                         "batch_size": 16, "n_candidates": 0}}
    settings, notes = resolve_settings(tmp_path, report, {"batch_size": 4, "max_history": None})
    assert settings == ServingSettings(mode="titles", max_history=2, max_prompt_tokens=400, max_new_tokens=150,
                                       batch_size=4, n_candidates=4)
    assert any("mode: trained with 'evidence', evaluated with 'titles'" in n for n in notes)
    assert "batch_size=4 (given)" in notes[0] and "mode='titles' (evaluation report)" in notes[0]


def test_sft_folders_name_their_completion_limit_max_new_tokens(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"profile": "tiny", "max_new_tokens": 64}}))
    assert resolve_settings(tmp_path)[0].max_new_tokens == 64


# --- the response and the errors, on fixed completions ----------------------------------------------

def _recommender(tokenizer, monkeypatch, completions, **settings):
    from rerec.eval import generate as G

    seen = {}

    def fake(model, tok, prompts, **kwargs):
        seen.update(prompts=list(prompts), **kwargs)
        return G.GenerationResult(list(completions[: len(prompts)]), n_new_tokens=1, seconds=1.0)

    monkeypatch.setattr(G, "generate_completions", fake)
    return Recommender(None, tokenizer, small_view(), ServingSettings(**settings)), seen


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
                      "matched": [], "parsed": False, "reasoning": "I am not sure.", "completion": "I am not sure."}
    assert out[2]["matched"] == [None, "1"] and out[2]["answer"] == ["1"] and out[2]["ranked"] == ["1", "2"]
    rec.recommend(requests, {"max_new_tokens": 9, "batch_size": 1})
    assert seen["max_new_tokens"] == 9 and seen["batch_size"] == 1


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
    from rerec.registry import RegisterConfig, register

    with pytest.raises(RerecError, match="--data .*no such folder, so nothing was registered"):
        register(tiny_hf_model, tmp_path / "report.json", RegisterConfig(), data_dir=tmp_path / "missing")
