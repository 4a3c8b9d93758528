"""Bad dataset folders: each gets an InputError naming the file, the column, a row and the fix.

A corpus of small folders (RecBole atomic files and parquet tables), each broken in one way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rerec import cli
from rerec.data.load import load_catalog, save_catalog
from rerec.errors import InputError
from rerec.io import atomic_dir

ITEM_HEADER = ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"]
INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


def write(folder: Path, name: str, rows: list[list[str]]) -> None:
    (folder / name).write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")


def recbole_folder(folder: Path, **override: list[list[str]] | None) -> Path:
    """A valid RecBole folder; ``override`` replaces a file's rows by suffix (None deletes it)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "item": [ITEM_HEADER, ["1", "Toy Story", "1995", "Animation Comedy"], ["2", "Fargo", "1996", "Crime"],
                 ["3", "Heat", "1995", "Action"]],
        "inter": [INTER_HEADER, ["u1", "1", "5", "881250949"], ["u1", "2", "3", "881250950"],
                  ["u2", "3", "4", "881250951"]],
        "user": [["user_id:token", "age:token"], ["u1", "24"], ["u2", "53"]],
        "link": [["item_id:token", "entity_id:token"], ["1", "m.toy"], ["2", "m.fargo"]],
        "kg": [["head_id:token", "relation_id:token", "tail_id:token"], ["m.fargo", "film.film.directed_by", "m.coen"]],
    }
    files.update(override)
    for suffix, rows in files.items():
        if rows is not None:
            write(folder, f"toy.{suffix}", rows)
    return folder


def parquet_folder(folder: Path, **override: pd.DataFrame | None) -> Path:
    """A valid parquet folder (with queries); ``override`` replaces a table (None deletes it)."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "items": pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["Toy Story", "Fargo", "Heat"],
                               "year": [1995, 1996, 1995], "genres": [["Animation"], ["Crime"], ["Action"]]}),
        "interactions": pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["1", "2", "3"],
                                      "rating": [5.0, 3.0, 4.0]}),
        "item_attributes": pd.DataFrame({"item_id": ["2"], "relation": ["director"], "entity": ["m.coen"]}),
        "users": pd.DataFrame({"user_id": ["u1", "u2"]}),
        "queries": queries(),
    }
    tables.update(override)
    for name, table in tables.items():
        if table is not None:
            table.to_parquet(folder / f"{name}.parquet")
    return folder


def items_with(**columns) -> pd.DataFrame:
    """The valid folder's items table with some columns replaced."""
    base = {"item_id": ["1", "2", "3"], "title": ["Toy Story", "Fargo", "Heat"], "year": [1995, 1996, 1995],
            "genres": [["Animation"], ["Crime"], ["Action"]]}
    base.update(columns)
    return pd.DataFrame(base)


def queries(**columns) -> pd.DataFrame:
    base = {
        "query_id": ["q1", "q2"], "user_id": ["u1", "u2"], "type": ["explicit", "implicit"],
        "text": ["a 90s comedy", "by the director of Fargo"],
        "conditions": [json.dumps([{"relation": "decade", "entity": "1990s", "text": "90s"}]), "[]"],
        "positives": [["1"], ["3"]], "candidates": [["2", "1"], ["3", "1"]], "split": ["train", "test"],
    }
    base.update(columns)
    return pd.DataFrame(base)


def inter_rows(*rows: list[str]) -> list[list[str]]:
    return [INTER_HEADER, *rows]


# (case id, folder builder, file name in message, column (None: none applies), row label (None: none))
CASES = [
    ("recbole-missing-column",
     lambda p: recbole_folder(p, inter=[["user_id:token", "rating:float"], ["u1", "5"]]),
     "toy.inter", "item_id", None),
    ("recbole-missing-title-column",
     lambda p: recbole_folder(p, item=[["item_id:token", "class:token_seq"], ["1", "Comedy"]]),
     "toy.item", "title", None),
    ("recbole-non-numeric-rating",
     lambda p: recbole_folder(p, inter=inter_rows(["u1", "1", "5", "1"], ["u1", "2", "abc", "2"])),
     "toy.inter", "rating", "2 (line 3)"),
    ("recbole-non-numeric-year",
     lambda p: recbole_folder(p, item=[ITEM_HEADER, ["1", "Toy Story", "199x", "Animation"], ["2", "Fargo", "", "Crime"],
                                       ["3", "Heat", "1995", "Action"]]),
     "toy.item", "release_year", "1 (line 2)"),
    ("recbole-fractional-timestamp",
     lambda p: recbole_folder(p, inter=inter_rows(["u1", "1", "5", "1.5"])),
     "toy.inter", "timestamp", "1 (line 2)"),
    ("recbole-duplicate-item",
     lambda p: recbole_folder(p, item=[ITEM_HEADER, ["1", "Toy Story", "1995", "Animation"], ["2", "Fargo", "1996", "Crime"],
                                       ["3", "Heat", "1995", "Action"], ["2", "Fargo again", "1996", "Crime"]]),
     "toy.item", "item_id", "4 (line 5)"),
    ("recbole-duplicate-user",
     lambda p: recbole_folder(p, user=[["user_id:token"], ["u1"], ["u2"], ["u1"]]),
     "toy.user", "user_id", "3 (line 4)"),
    ("recbole-unknown-user",
     lambda p: recbole_folder(p, inter=inter_rows(["u1", "1", "5", "1"], ["u9", "2", "3", "2"])),
     "toy.inter", "user_id", "2 (line 3)"),
    ("recbole-unknown-item",
     lambda p: recbole_folder(p, inter=inter_rows(["u1", "1", "5", "1"], ["u2", "3", "3", "2"], ["u2", "42", "3", "3"])),
     "toy.inter", "item_id", "3 (line 4)"),
    ("recbole-empty-interactions",
     lambda p: recbole_folder(p, inter=inter_rows()),
     "toy.inter", None, None),
    ("recbole-empty-file",
     lambda p: recbole_folder(p, item=[[""]]),
     "toy.item", None, None),
    ("recbole-null-user-id",
     lambda p: recbole_folder(p, inter=inter_rows(["u1", "1", "5", "1"], ["", "2", "3", "2"])),
     "toy.inter", "user_id", "2 (line 3)"),
    ("recbole-null-item-id",
     lambda p: recbole_folder(p, item=[ITEM_HEADER, ["1", "Toy Story", "1995", "Animation"], [" ", "Fargo", "1996", "Crime"]]),
     "toy.item", "item_id", "2 (line 3)"),
    ("recbole-null-title",
     lambda p: recbole_folder(p, item=[ITEM_HEADER, ["1", "", "1995", "Animation"]]),
     "toy.item", "movie_title", "1 (line 2)"),
    ("recbole-link-unknown-item",
     lambda p: recbole_folder(p, link=[["item_id:token", "entity_id:token"], ["1", "m.toy"], ["77", "m.x"]]),
     "toy.link", "item_id", "2 (line 3)"),
    ("recbole-kg-missing-column",
     lambda p: recbole_folder(p, kg=[["head_id:token", "tail_id:token"], ["m.fargo", "m.coen"]]),
     "toy.kg", "relation_id", None),
    ("recbole-kg-without-link",
     lambda p: recbole_folder(p, link=None),
     "toy.kg", None, None),
    ("recbole-too-many-fields",
     lambda p: recbole_folder(p, inter=inter_rows(["u1", "1", "5", "1"], ["u1", "2", "3", "2", "extra"])),
     "toy.inter", None, "2 (line 3)"),
    ("recbole-duplicate-header",
     lambda p: recbole_folder(p, user=[["user_id:token", "user_id:float"], ["u1", "1"]]),
     "toy.user", "user_id", None),
    ("parquet-missing-column",
     lambda p: parquet_folder(p, items=pd.DataFrame({"item_id": ["1", "2", "3"]})),
     "items.parquet", "title", None),
    ("parquet-non-numeric-rating",
     lambda p: parquet_folder(p, interactions=pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["1", "2"],
                                                            "rating": ["4", "great"]})),
     "interactions.parquet", "rating", "2"),
    ("parquet-non-numeric-year",
     lambda p: parquet_folder(p, items=pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["a", "b", "c"],
                                                     "year": ["1995", "1996", "MCMXCV"]})),
     "items.parquet", "year", "3"),
    ("parquet-null-item-id",
     lambda p: parquet_folder(p, items=pd.DataFrame({"item_id": ["1", None, "3"], "title": ["a", "b", "c"]})),
     "items.parquet", "item_id", "2"),
    ("parquet-duplicate-user",
     lambda p: parquet_folder(p, users=pd.DataFrame({"user_id": ["u1", "u2", "u2"]})),
     "users.parquet", "user_id", "3"),
    ("parquet-empty-items",
     lambda p: parquet_folder(p, items=pd.DataFrame({"item_id": pd.Series([], dtype=str),
                                                     "title": pd.Series([], dtype=str)})),
     "items.parquet", None, None),
    ("parquet-unknown-user",
     lambda p: parquet_folder(p, interactions=pd.DataFrame({"user_id": ["u1", "zz"], "item_id": ["1", "2"]})),
     "interactions.parquet", "user_id", "2"),
    ("parquet-attribute-unknown-item",
     lambda p: parquet_folder(p, item_attributes=pd.DataFrame({"item_id": ["2", "9"], "relation": ["actor", "actor"],
                                                               "entity": ["a", "b"]})),
     "item_attributes.parquet", "item_id", "2"),
    ("parquet-missing-required-file",
     lambda p: parquet_folder(p, item_attributes=None),
     "item_attributes.parquet", None, None),
    ("parquet-unreadable",
     lambda p: (parquet_folder(p), (p / "interactions.parquet").write_bytes(b"not parquet at all"), p)[-1],
     "interactions.parquet", None, None),
    ("queries-positive-unknown-item",
     lambda p: parquet_folder(p, queries=queries(positives=[["1"], ["99"]], candidates=[["2", "1"], ["99", "1"]])),
     "queries.parquet", "positives", "2"),
    ("queries-candidate-unknown-item",
     lambda p: parquet_folder(p, queries=queries(candidates=[["2", "1", "55"], ["3", "1"]])),
     "queries.parquet", "candidates", "1"),
    ("queries-positive-not-candidate",
     lambda p: parquet_folder(p, queries=queries(candidates=[["2", "1"], ["2", "1"]])),
     "queries.parquet", "positives", "2"),
    ("queries-no-positive",
     lambda p: parquet_folder(p, queries=queries(positives=[["1"], []])),
     "queries.parquet", "positives", "2"),
    ("queries-duplicate-id",
     lambda p: parquet_folder(p, queries=queries(query_id=["q1", "q1"])),
     "queries.parquet", "query_id", "2"),
    ("queries-unknown-type",
     lambda p: parquet_folder(p, queries=queries(type=["explicit", "vague"])),
     "queries.parquet", "type", "2"),
    ("queries-bad-conditions",
     lambda p: parquet_folder(p, queries=queries(conditions=["[]", "{not json"])),
     "queries.parquet", "conditions", "2"),
    ("queries-missing-column",
     lambda p: parquet_folder(p, queries=queries().drop(columns="split")),
     "queries.parquet", "split", None),
    # Tracebacks before (issue 22); each names its value, file, column and row now.
    ("parquet-fractional-float-id",
     lambda p: parquet_folder(p, interactions=pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": [1.0, 2.0, 1.5]})),
     "interactions.parquet", "item_id", "3"),
    ("parquet-float-id-beyond-2^53",
     lambda p: parquet_folder(p, items=pd.DataFrame({"item_id": [1.0, 2.0, 2.0**60], "title": ["a", "b", "c"]})),
     "items.parquet", "item_id", "3"),
    ("parquet-timestamp-overflow",
     lambda p: parquet_folder(p, interactions=pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["1", "2", "3"],
                                                            "timestamp": [1.0, 1e30, 2.0]})),
     "interactions.parquet", "timestamp", "2"),
    ("parquet-date-not-a-date",
     lambda p: parquet_folder(p, interactions=pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["1", "2", "3"],
                                                            "timestamp": ["2024-01-01", "2024-01-02", "soon"]})),
     "interactions.parquet", "timestamp", "3"),
    ("recbole-timestamp-overflow",
     lambda p: recbole_folder(p, inter=inter_rows(["u1", "1", "5", "1"], ["u1", "2", "3", "1e30"])),
     "toy.inter", "timestamp", "2 (line 3)"),
    ("parquet-fractional-item-id",
     lambda p: parquet_folder(p, items=pd.DataFrame({"item_id": [1.0, 2.5, 3.0], "title": ["a", "b", "c"]})),
     "items.parquet", "item_id", "2"),
    ("queries-condition-without-relation",
     lambda p: parquet_folder(p, queries=queries(conditions=["[]", json.dumps([{"entity": "m.coen"}])])),
     "queries.parquet", "conditions", "2"),
    ("queries-condition-without-entity",
     lambda p: parquet_folder(p, queries=queries(conditions=[json.dumps([{"relation": "decade"}]), "[]"])),
     "queries.parquet", "conditions", "1"),
    ("queries-positive-fails-its-condition",
     lambda p: parquet_folder(p, queries=queries(conditions=[json.dumps([{"relation": "decade", "entity": "1980s"}]),
                                                             "[]"])),
     "queries.parquet", "conditions", "1"),
    ("queries-via-unknown-item",
     lambda p: parquet_folder(p, queries=queries(conditions=["[]", json.dumps(
         [{"relation": "co_interaction", "entity": "9", "via": "9"}])])),
     "queries.parquet", "conditions", "2"),
    ("queries-false-premise-unknown-item",
     lambda p: parquet_folder(p, queries=queries(conditions=["[]", json.dumps(
         [{"relation": "co_interaction", "entity": "2", "false_premise": {"item_id": "77"}}])])),
     "queries.parquet", "conditions", "2"),
    ("queries-repeated-candidate",
     lambda p: parquet_folder(p, queries=queries(candidates=[["2", "1", "2"], ["3", "1"]])),
     "queries.parquet", "candidates", "1"),
    ("queries-single-candidate",
     lambda p: parquet_folder(p, queries=queries(candidates=[["2", "1"], ["3"]])),
     "queries.parquet", "candidates", "2"),
    ("queries-null-text",
     lambda p: parquet_folder(p, queries=queries(text=["a 90s comedy", None])),
     "queries.parquet", "text", "2"),
    ("queries-null-conditions",
     lambda p: parquet_folder(p, queries=queries(conditions=[None, "[]"])),
     "queries.parquet", "conditions", "1"),
    ("parquet-look-alike-titles",  # a decomposed accent: the same title and year once composed (issue 28)
     lambda p: parquet_folder(p, items=items_with(title=["Toy Story", "Cafe\u0301 Society", "Café Society"],
                                                   year=[1995, 2016, 2016])),
     "items.parquet", "title", "3"),
    ("parquet-format-character-twin",
     lambda p: parquet_folder(p, items=items_with(title=["Heat\u200b", "Fargo", "Heat"], year=[1995, 1996, 1995])),
     "items.parquet", "title", "3"),
    ("parquet-negative-year",
     lambda p: parquet_folder(p, items=items_with(year=[1995, -500, 1995])),
     "items.parquet", "year", "2"),
    ("recbole-five-digit-year",
     lambda p: recbole_folder(p, item=[ITEM_HEADER, ["1", "Toy Story", "1995", "Animation"],
                                       ["2", "Fargo", "99999", "Crime"], ["3", "Heat", "1995", "Action"]]),
     "toy.item", "release_year", "2 (line 3)"),
    ("parquet-item-ids-differ-by-whitespace",
     lambda p: parquet_folder(p, items=items_with(item_id=["1", "2", " 2"])),
     "items.parquet", "item_id", "3"),
    ("parquet-user-ids-differ-by-whitespace",
     lambda p: parquet_folder(p, users=pd.DataFrame({"user_id": ["u1", "u2", "u1 "]})),
     "users.parquet", "user_id", "3"),
    ("queries-history-holds-positive",
     lambda p: parquet_folder(p, queries=queries(history=[["3", "1"], []])),
     "queries.parquet", "history", "1"),
    ("queries-history-holds-candidate",
     lambda p: parquet_folder(p, queries=queries(history=[["3"], ["1"]])),
     "queries.parquet", "history", "2"),
    ("parquet-reserved-relation",
     lambda p: parquet_folder(p, item_attributes=pd.DataFrame({"item_id": ["2"], "relation": ["co_interaction"],
                                                               "entity": ["1"]})),
     "item_attributes.parquet", "relation", None),
]


@pytest.mark.parametrize(("build", "file", "column", "row"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_folder_is_rejected_with_file_column_row_and_fix(tmp_path, build, file, column, row):
    folder = build(tmp_path / "data")
    with pytest.raises(InputError) as info:
        load_catalog(folder)
    message = str(info.value)
    assert file in message, message
    assert info.value.file and info.value.file.endswith(file) or file in info.value.problem
    if column is not None:
        assert f"column '{column}'" in message, message
    if row is not None:
        assert f"row {row}:" in message, message
    assert "Fix: " in message, message
    assert "\n" not in message


def test_good_folders_load(tmp_path):
    """The corpus's base folders are valid, so each case fails only for its own defect."""
    recbole = load_catalog(recbole_folder(tmp_path / "r"))
    assert len(recbole.items) == 3 and len(recbole.interactions) == 3
    parquet = load_catalog(parquet_folder(tmp_path / "p"))
    assert parquet.queries["positives"].tolist() == [["1"], ["3"]]


def test_non_utf8_file_names_line(tmp_path):
    folder = recbole_folder(tmp_path / "data")
    text = (folder / "toy.item").read_bytes().replace(b"Fargo", "Färgo".encode("latin-1"))
    (folder / "toy.item").write_bytes(text)
    with pytest.raises(InputError) as info:
        load_catalog(folder)
    message = str(info.value)
    assert "toy.item" in message and "row 2 (line 3)" in message and "UTF-8" in message and "Fix:" in message


def test_unreadable_file(tmp_path):
    folder = recbole_folder(tmp_path / "data", user=None)
    (folder / "toy.user").mkdir()  # exists but cannot be read as a file (root ignores chmod)
    with pytest.raises(InputError) as info:
        load_catalog(folder)
    assert "toy.user" in str(info.value) and "cannot be read" in str(info.value) and "Fix:" in str(info.value)


def test_missing_year_tokens_are_null_not_errors(tmp_path):
    folder = recbole_folder(tmp_path / "data", item=[ITEM_HEADER, ["1", "Toy Story", "unknown", "Animation"],
                                                     ["2", "Fargo", "", "Crime"], ["3", "Heat", "1995", "Action"]])
    years = load_catalog(folder).items["year"]
    assert years.isna().tolist() == [True, True, False]


def test_nothing_half_written_on_bad_input(tmp_path):
    bad = recbole_folder(tmp_path / "data", inter=inter_rows(["u1", "1", "oops", "1"]))
    out = tmp_path / "out"
    with pytest.raises(InputError), atomic_dir(out) as tmp:
        save_catalog(load_catalog(recbole_folder(tmp_path / "good")), tmp)  # a partial write first
        load_catalog(bad)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "good"]


@pytest.mark.parametrize("case", ["recbole-non-numeric-rating", "parquet-unknown-user", "queries-positive-not-candidate"])
def test_cli_prints_one_clear_error_without_traceback(tmp_path, capsys, case):
    _, build, file, column, row = next(c for c in CASES if c[0] == case)
    folder = build(tmp_path / "data")
    assert cli.main(["validate-data", str(folder)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.startswith("rerec validate-data: error: ")
    for part in (file, f"column '{column}'", f"row {row}", "Fix:"):
        assert part in captured.err, captured.err


def test_cli_accepts_a_good_folder(tmp_path, capsys):
    assert cli.main(["validate-data", str(parquet_folder(tmp_path / "p"))]) == 0
    out = capsys.readouterr().out
    assert "valid (parquet)" in out and "queries" in out


def test_prepare_data_cli_rejects_bad_input_cleanly(tmp_path, capsys):
    bad = recbole_folder(tmp_path / "data", inter=inter_rows(["u1", "1", "5", "1"], ["u9", "2", "3", "2"]))
    out = tmp_path / "out"
    assert cli.main(["prepare-data", "--input", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "toy.inter" in err and "column 'user_id'" in err and "Fix:" in err
    assert not out.exists()


def test_look_alike_titles_are_refused_naming_both_items_and_what_differs(tmp_path):
    folder = parquet_folder(tmp_path / "p", items=items_with(title=["Toy Story", "Cafe\u0301 Society", "Café Society"],
                                                              year=[1995, 2016, 2016]))
    with pytest.raises(InputError) as info:
        load_catalog(folder)
    message = str(info.value)
    assert "items '2' (row 2) and '3'" in message and "Cafe\\u0301 Society" in message, message
    assert "become one title 'Café Society' (2016)" in message and "differ visibly" in message


def test_titles_are_nfc_without_format_characters_and_the_change_is_counted(tmp_path):
    """Decomposed accents and invisible format characters (U+200B, U+200F, U+202E) are normalised and
    counted; distinct years keep two look-alike titles apart (the year tells them apart)."""
    titles = ["Cafe\u0301 Society", "Fa\u200brgo", "\u202eHeat\u200f"]
    catalog = load_catalog(parquet_folder(tmp_path / "p", items=items_with(title=titles)))
    assert catalog.items["title"].tolist() == ["Café Society", "Fargo", "Heat"]
    [entry] = [n for n in catalog.meta["normalisations"] if n["key"] == "title_unicode"]
    assert entry["count"] == 3 and entry["table"] == "items.parquet"
    remakes = items_with(title=["Cafe\u0301 Society", "Café Society", "Heat"], year=[1995, 2016, 1995])
    assert load_catalog(parquet_folder(tmp_path / "q", items=remakes)).items["title"].tolist()[:2] == [
        "Café Society", "Café Society"]
    # a clean catalog is not touched and reports nothing
    plain = load_catalog(parquet_folder(tmp_path / "r"))
    assert not [n for n in plain.meta["normalisations"] if n["key"] == "title_unicode"]


def test_ids_differing_only_by_whitespace_say_so(tmp_path):
    folder = parquet_folder(tmp_path / "p", items=items_with(item_id=["1", "2", " 2"]))
    with pytest.raises(InputError) as info:
        load_catalog(folder)
    message = str(info.value)
    assert "'2' (row 2) and ' 2' differ only by whitespace" in message, message


@pytest.mark.parametrize("year", [-500, 0, 99999, 3000])
def test_years_outside_four_digits_are_refused(tmp_path, year):
    with pytest.raises(InputError) as info:
        load_catalog(parquet_folder(tmp_path / "p", items=items_with(year=[1995, year, 1995])))
    assert f"year {year} is not a four-digit calendar year" in str(info.value)
    assert "leave year empty" in str(info.value)


@pytest.mark.parametrize(("splits", "missing"), [(["train", "train"], "no val and no test"),
                                                 (["train", "test"], "no val"), (["val", "test"], "no train")])
def test_prepare_data_refuses_user_queries_without_every_split(tmp_path, capsys, splits, missing):
    """User queries all in train used to pass prepare-data and fail at sft-warmup with a fix about
    --val-fraction, which does not apply to queries a user brings."""
    folder = parquet_folder(tmp_path / "p", queries=queries(split=splits))
    out = tmp_path / "out"
    assert cli.main(["prepare-data", "--input", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the queries have {missing} split" in err and "queries.parquet" in err and "column 'split'" in err
    assert "set split to 'val' on some queries" in err and "Traceback" not in err
    assert not out.exists()
