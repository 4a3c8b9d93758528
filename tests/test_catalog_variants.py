"""Real catalogs are messy: every variant of the MovieLens contract folder (tests/catalog_variants.py)
goes through prepare-data, build-graphs and load_catalog. Valid-in-spirit variants are accepted with
each normalisation counted, and what prepare-data writes passes the later stages' validation; broken
ones are refused with one message naming the problem, no traceback and nothing written."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from rerec.cli import main
from rerec.data.load import load_catalog
from rerec.data.schema import PERSON_RELATIONS, decode_conditions
from rerec.prompt import CatalogView, build_messages
from tests.catalog_variants import BY_NAME, PREPARE_ARGS, VARIANTS, base_tables

ACCEPTED = [v.name for v in VARIANTS if v.refused is None]
REFUSED = [v.name for v in VARIANTS if v.refused is not None]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """name -> (input folder, prepared folder, graphs folder); each accepted variant prepared once."""
    root = tmp_path_factory.mktemp("variants")
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            variant = BY_NAME[name]
            folder = variant.build(root / name)
            out, graphs = root / f"{name}-prepared", root / f"{name}-graphs"
            assert main(["prepare-data", "--input", str(folder), "--out", str(out), *PREPARE_ARGS,
                         *variant.args]) == 0, name
            cache[name] = (folder, out, graphs)
        return cache[name]
    return get


def stats_of(out) -> dict:
    return json.loads((out / "stats.json").read_text())


def keys(stats: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in stats["normalisations"]:
        out[entry["key"]] = out.get(entry["key"], 0) + entry["count"]
    return out


def loader_note_keys() -> set[str]:
    """The normalisation keys rerec.data.load can record: the string key of every ``note(meta, KEY, ...)``
    call, and, where the key is a variable, the string heads of the (key, change) pairs in that function.
    Keys built at run time (f-strings: ``year_merged``, ``decade_merged``) are not seen."""
    import ast
    from pathlib import Path

    import rerec.data.load as load

    found: set[str] = set()
    for fn in ast.walk(ast.parse(Path(load.__file__).read_text(encoding="utf-8"))):
        if not isinstance(fn, ast.FunctionDef):
            continue
        calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "note"
                 and len(n.args) >= 2]
        for call in calls:
            if isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str):
                found.add(call.args[1].value)
            elif isinstance(call.args[1], ast.Name):
                found |= {t.elts[0].value for t in ast.walk(fn) if isinstance(t, ast.Tuple) and len(t.elts) == 2
                          and isinstance(t.elts[0], ast.Constant) and isinstance(t.elts[0].value, str)
                          and isinstance(t.elts[1], (ast.JoinedStr, ast.Constant))}
    return found


# Normalisations no variant folder can show, and where they are tested instead (None: not yet).
NOTES_TESTED_ELSEWHERE = {
    "repeated_genres_dropped": "tests/test_data_load.py",
    "kg_links_realigned": None,  # the embedded MovieLens-100k's link file only; its realignment is in progress
}


def test_corpus_reaches_every_normalisation():
    """Each normalisation the loader can record is shown by a variant (and checked in
    test_accepted_variant_...), or named in NOTES_TESTED_ELSEWHERE with the test that checks it. A new
    normalisation without a variant, or an exemption that went stale, fails here."""
    from pathlib import Path

    emitted = loader_note_keys()
    assert len(emitted) >= 10, emitted  # the reader found the keys at all
    shown = {key for v in VARIANTS for key in v.notes}
    assert sorted(shown - emitted) == [], "variants expecting a note the loader never records"
    assert sorted(emitted - shown - set(NOTES_TESTED_ELSEWHERE)) == [], "normalisations no variant shows"
    assert sorted(set(NOTES_TESTED_ELSEWHERE) - emitted) == [], "stale exemptions"
    root = Path(__file__).resolve().parents[1]
    for key, test_file in NOTES_TESTED_ELSEWHERE.items():
        if test_file is not None:
            assert key in (root / test_file).read_text(encoding="utf-8"), (key, test_file)
    assert len({v.name for v in VARIANTS}) == len(VARIANTS), "two variants share a name"


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_variant_prepares_validates_and_builds_graphs(name, prepared, capsys):
    variant = BY_NAME[name]
    _, out, graphs = prepared(name)
    capsys.readouterr()
    # what prepare-data wrote passes the validation of every later stage, and loads back unchanged
    catalog = load_catalog(out)
    assert catalog.meta["normalisations"] == [], "a prepared folder needs no further normalisation"
    assert main(["build-graphs", "--data", str(out), "--out", str(graphs)]) == 0
    assert {p.name for p in graphs.iterdir()} >= {"interaction_graph.pt", "item_attribute_graph.parquet",
                                                   "manifest.json"}
    stats = stats_of(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["normalisations"] == stats["normalisations"]
    for key in variant.notes:
        assert keys(stats).get(key, 0) > 0, (key, stats["normalisations"])
    if stats["queries_generated"]:
        asked = {t: n for t, n in stats["requested"].items() if t not in stats["skipped_types"]}
        assert stats["n_queries"] == sum(asked.values())
        assert stats["kg_agreement"]["verdict"] in ("agrees", "no graph"), stats["kg_agreement"]
        audit = stats["audit"]
        assert audit["negatives_in_user_items"] == audit["heldout_in_history"] == audit["heldout_named"] == 0, audit


@pytest.mark.parametrize("name", REFUSED)
def test_refused_variant_gets_one_clear_message_and_no_output(name, tmp_path, capsys):
    variant = BY_NAME[name]
    folder = variant.build(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["prepare-data", "--input", str(folder), "--out", str(out), *PREPARE_ARGS, *variant.args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert variant.refused in err and "Fix:" in err and "Traceback" not in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


# --- what each normalisation did, checked against the base tables -----------------------------------


def _items(out) -> pd.DataFrame:
    return pd.read_parquet(out / "items.parquet").set_index("item_id")


def _base_genres() -> dict[str, list[str]]:
    items = base_tables()["items"]
    return {i: list(g) for i, g in zip(items["item_id"], items["genres"], strict=True)}


def test_freebase_and_mapped_relations_share_the_recbole_vocabulary(prepared):
    vocab = {name: set(pd.read_parquet(prepared(name)[1] / "item_attributes.parquet")["relation"])
             for name in ("recbole-base", "parquet-base", "freebase-relations", "custom-relations-mapped")}
    assert vocab["freebase-relations"] == vocab["recbole-base"] == vocab["parquet-base"]
    assert set(PERSON_RELATIONS) <= vocab["custom-relations-mapped"]
    for name in ("freebase-relations", "custom-relations-mapped"):
        assert stats_of(prepared(name)[1])["by_type"]["implicit"]["n_queries"] == 20


def test_unmapped_relations_error_lists_them_and_the_flag(tmp_path, capsys):
    folder = BY_NAME["custom-relations-unmapped"].build(tmp_path / "in")
    assert main(["prepare-data", "--input", str(folder), "--out", str(tmp_path / "o"), *PREPARE_ARGS]) == 2
    err = capsys.readouterr().err
    assert "no implicit query" in err and "directedBy" in err and "--relation-map" in err and "--n-implicit 0" in err


def test_relation_map_naming_an_absent_relation_is_refused(tmp_path, capsys):
    folder = BY_NAME["custom-relations-mapped"].build(tmp_path / "in")
    code = main(["prepare-data", "--input", str(folder), "--out", str(tmp_path / "o"), *PREPARE_ARGS,
                 "--relation-map", "directedBy=director", "stars=actor"])
    err = capsys.readouterr().err
    assert code == 2 and "stars" in err and "directedBy" in err and "Traceback" not in err
    assert main(["prepare-data", "--out", str(tmp_path / "o"), "--relation-map", "director"]) == 2
    assert "FROM=TO" in capsys.readouterr().err


def test_genre_normalisations(prepared):
    base = _base_genres()
    first, second, third = list(base)[:3]
    empty = _items(prepared("empty-genre-strings")[1])
    assert empty.loc[first, "genres"].tolist() == base[first] and empty.loc[second, "genres"].tolist() == []
    assert empty.loc[third, "genres"].tolist() == base[third]
    assert keys(stats_of(prepared("empty-genre-strings")[1]))["blank_genres_dropped"] == 3
    for name in ("genres-pipe-string", "genres-comma-string", "genres-bytes"):
        items = _items(prepared(name)[1])
        assert {i: list(g) for i, g in items["genres"].items()} == base, name
    assert keys(stats_of(prepared("genres-bytes")[1]))["bytes_decoded"] == sum(map(len, base.values()))
    assert "genres_split_on_comma" not in keys(stats_of(prepared("genres-pipe-string")[1]))


def test_one_genre_row_in_item_attributes_is_merged_not_a_replacement(prepared):
    out = prepared("single-genre-attribute-row")[1]
    base = _base_genres()
    items = _items(out)
    first = next(iter(base))
    assert items.loc[first, "genres"].tolist() == [*base[first], "Cult Classic"]
    attrs = pd.read_parquet(out / "item_attributes.parquet")
    genre_rows = attrs[attrs["relation"] == "genre"]
    assert len(genre_rows) == sum(map(len, base.values())) + 1
    merged = keys(stats_of(out))["genres_merged"]
    assert merged == sum(map(len, base.values())) + 1  # every items.genres row added, one genre the other way


def test_no_genres_listed_is_no_genre(prepared):
    items = _items(prepared("recbole-no-genres-listed")[1])
    assert (items["genres"].map(len) == 0).sum() == 3
    assert not items["genres"].map(lambda g: any("(no" in x or "listed)" in x for x in g)).any()


def test_rewatches_are_deduplicated_keeping_the_latest(prepared):
    out = prepared("rewatches")[1]
    base = base_tables()["interactions"]
    inter = pd.read_parquet(out / "interactions.parquet")
    assert len(inter) == len(base) and not inter.duplicated(["user_id", "item_id"]).any()
    again = base.iloc[::7]
    merged = again.merge(inter, on=["user_id", "item_id"], suffixes=("_first", ""))
    assert (merged["timestamp"] == merged["timestamp_first"] + 86_400).all()
    assert keys(stats_of(out))["duplicate_interactions"] == len(again)
    queries = pd.read_parquet(out / "queries.parquet")
    assert all(len(set(h)) == len(h) for h in queries["history"])


def test_special_titles_are_kept_exactly(prepared):
    folder, out, _ = prepared("special-titles")
    given = pd.read_parquet(folder / "items.parquet")["title"].tolist()
    titles = _items(out)["title"].tolist()
    assert titles == given
    assert given[:9] == ["Crimes and Misdemeanors; Director's Cut", "Set {It} Off", "\\boxed{Heat}",
                         "C:\\Films\\Heat", "10", "Cape Fear", "Cape Fear", "9", "Brace } yourself {"]
    assert keys(stats_of(out)) == {}, "legitimate characters are never rewritten"


def test_control_characters_become_spaces_and_never_break_a_prompt_line(prepared):
    out = prepared("control-chars-in-titles")[1]
    titles = _items(out)["title"].tolist()[:4]
    assert titles == ["Two Lines", "Tab here", "Bell  and return", "Trailing"]  # a run of control characters: one space
    assert keys(stats_of(out))["control_characters"] == 4
    catalog = load_catalog(out)
    view = CatalogView.from_catalog(catalog)
    ids = catalog.items["item_id"].tolist()[:4]
    query = {"text": "anything", "conditions": "[]", "candidates": ids, "history": ids}
    for mode in ("titles", "evidence"):
        content = build_messages(query, view, mode)[1]["content"]
        assert len(content.splitlines()) == 3 + len(ids)  # request, history, "Candidates:", one line each


def test_users_columns_named_like_list_columns_are_kept(prepared):
    out = prepared("users-genres-history-int")[1]
    users = pd.read_parquet(out / "users.parquet")
    assert (users["genres"] == "Comedy|Drama").all()
    assert users["history"].tolist() == list(range(len(users)))
    assert users["history"].dtype == np.int64 and users["age"].dtype == np.int64


def test_native_and_iso_timestamps_become_the_same_seconds(prepared):
    base = base_tables()["interactions"]["timestamp"].tolist()
    for name in ("datetime-timestamps", "iso-timestamps"):
        inter = pd.read_parquet(prepared(name)[1] / "interactions.parquet")
        assert inter["timestamp"].tolist() == base, name
    recbole = pd.read_parquet(prepared("recbole-iso-timestamps")[1] / "interactions.parquet")
    plain = pd.read_parquet(prepared("recbole-base")[1] / "interactions.parquet")
    assert recbole["timestamp"].tolist() == plain["timestamp"].tolist()


def test_float_ids_read_as_the_integers_they_hold(prepared):
    items = pd.read_parquet(prepared("float-ids")[1] / "items.parquet")
    assert items["item_id"].tolist() == base_tables()["items"]["item_id"].tolist()


def test_recbole_item_with_two_title_columns(prepared):
    items = _items(prepared("recbole-both-title-columns")[1])
    plain = _items(prepared("recbole-base")[1])
    assert items["title"].tolist() == plain["title"].tolist()
    assert items["title_unused"].tolist() == [t.upper() for t in plain["title"]]


def test_user_queries_are_kept_and_audited(prepared):
    out = prepared("user-queries")[1]
    stats = stats_of(out)
    assert stats["queries_generated"] is False and stats["n_queries"] == 6
    assert set(stats["audit"]) >= {"negatives_in_user_items", "heldout_in_history", "heldout_named"}


@pytest.mark.parametrize("name, where", [
    ("one-fractional-id", ("interactions.parquet", "column 'item_id'", "row 58", "1.5 is not a whole number")),
    ("huge-float-ids", ("items.parquet", "column 'item_id'", "row 1")),
    ("huge-timestamp", ("interactions.parquet", "column 'timestamp'", "row 13")),
    ("recbole-huge-timestamp", ("slice.inter", "column 'timestamp'", "row 5 (line 6)")),
    ("query-condition-without-entity", ("queries.parquet", "column 'conditions'", "row 2", "query 'q1'")),
    ("query-positive-fails-condition", ("queries.parquet", "row 1", "genre = 'Nope'")),
    ("query-repeated-candidate", ("queries.parquet", "column 'candidates'", "row 4", "query 'q3'")),
    ("query-single-candidate", ("queries.parquet", "column 'candidates'", "row 5", "query 'q4'")),
    ("query-null-text", ("queries.parquet", "column 'text'", "row 6")),
])
def test_refusals_name_the_file_column_and_row(name, where, tmp_path, capsys):
    folder = BY_NAME[name].build(tmp_path / "in")
    assert main(["prepare-data", "--input", str(folder), "--out", str(tmp_path / "o"), *PREPARE_ARGS]) == 2
    err = capsys.readouterr().err
    for fragment in where:
        assert fragment in err, (fragment, err)
    if name == "one-fractional-id":
        assert "references are unknown" not in err


def test_normalisations_are_logged(tmp_path, caplog):
    from rerec.data.prepare import PrepareConfig, prepare_data

    folder = BY_NAME["rewatches"].build(tmp_path / "in")
    with caplog.at_level(logging.WARNING, logger="rerec.data.load"):
        prepare_data(folder, tmp_path / "out", PrepareConfig(n_explicit=5, n_implicit=0, n_misinformed=0,
                                                            n_interest=0, n_candidates=4), progress=False)
    assert any("re-watches" in r.getMessage() for r in caplog.records)


def test_prepare_refuses_to_write_a_folder_that_fails_validation(tmp_path, monkeypatch):
    """The reload check is real: a writer that produced an invalid table is caught before --out exists."""
    from rerec.data import load, prepare
    from rerec.errors import RerecError

    real = load.save_catalog

    def broken(catalog, out_dir):
        catalog.item_attributes = pd.concat([catalog.item_attributes, pd.DataFrame(
            {"item_id": [catalog.items["item_id"].iloc[0]], "relation": ["genre"], "entity": [""]})])
        return real(catalog, out_dir)

    monkeypatch.setattr(load, "save_catalog", broken)
    folder = BY_NAME["parquet-base"].build(tmp_path / "in")
    with pytest.raises(RerecError, match="fails its own validation"):
        prepare.prepare_data(folder, tmp_path / "out", prepare.PrepareConfig(n_explicit=5, n_implicit=0,
                                                                             n_misinformed=0, n_interest=0),
                             progress=False)
    assert not (tmp_path / "out").exists()


def test_generated_queries_of_a_variant_are_consistent_with_its_tables(prepared):
    """Conditions name relations of the prepared table; misinformed traps are candidates, never history."""
    out = prepared("freebase-relations")[1]
    queries = pd.read_parquet(out / "queries.parquet")
    relations = set(pd.read_parquet(out / "item_attributes.parquet")["relation"]) | {"co_interaction"}
    for row in queries.itertuples():
        for cond in decode_conditions(row.conditions):
            assert cond["relation"] in relations
            if "false_premise" in cond:
                assert cond["false_premise"]["item_id"] in row.candidates
                assert cond["false_premise"]["item_id"] not in row.history


@pytest.mark.parametrize("name", ["special-titles", "control-chars-in-titles", "parquet-base", "recbole-base"])
def test_every_gold_trace_scores_as_its_own_positive(name, prepared):
    """The SFT target of every query, in every trace style, is read back as the query's positive by the
    evaluation's ranking and earns the reward's NDCG of 1: titles with ';', braces, backslashes,
    '\\boxed{', films titled "10" or "9" and remakes sharing a title included."""
    from rerec.prompt import answer_ranking, candidate_lines
    from rerec.reward.scorer import RewardScorer
    from rerec.train.traces import STYLES, synthesize_trace

    _, out, _ = prepared(name)
    catalog = load_catalog(out)
    view = CatalogView.from_catalog(catalog)
    scorer = RewardScorer(titles=view.titles, years=view.years)
    queries = catalog.queries.to_dict("records")
    texts, rows = [], []
    for query in queries:
        lines = candidate_lines(query, view)
        for style in STYLES:
            text = synthesize_trace(query, view, style=style, candidate_lines=lines).text
            assert answer_ranking(text, query, view).ranked == [str(query["positives"][0])], (style, text)
            texts.append(text)
            rows.append(query)
    assert all(b.ndcg == 1.0 and b.valid for b in scorer.score(texts, rows))
    if name == "special-titles":  # the unusual titles are really among the answers checked
        unusual = {i for i, t in view.titles.items() if any(c in t for c in ";{}\\") or t in ("10", "9", "Cape Fear")}
        assert sum(str(q["positives"][0]) in unusual for q in queries) >= 3
