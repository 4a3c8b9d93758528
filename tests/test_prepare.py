"""Splits (hand-computed and on generated queries) and the prepare-data stage end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rerec.cli import main
from rerec.data.load import load_catalog
from rerec.data.prepare import PrepareConfig, prepare_data, query_statistics
from rerec.data.splits import assign_pair_splits
from rerec.errors import ConfigError, InputError
from rerec.io import file_sha256

SMALL = ["--n-explicit", "40", "--n-implicit", "30", "--n-misinformed", "20", "--n-interest", "20",
         "--n-candidates", "8", "--seed", "3"]


def test_pair_splits_hand_case_shares_and_seed():
    # 10 pairs at 0.8/0.1/0.1: cuts at round(8) and round(9); which pair gets which is a seeded permutation
    split = assign_pair_splits(10, (0.8, 0.1, 0.1), seed=0)
    assert sorted(split) == ["test"] + ["train"] * 8 + ["val"]
    order = np.random.default_rng([0, 7]).permutation(10)
    expected = np.empty(10, dtype=object)
    expected[order] = ["train"] * 8 + ["val", "test"]
    assert split == expected.tolist()
    assert split == assign_pair_splits(10, (0.8, 0.1, 0.1), seed=0)
    many = pd.Series(assign_pair_splits(1000, (0.7, 0.2, 0.1), seed=1)).value_counts()
    assert (many["train"], many["val"], many["test"]) == (700, 200, 100)
    assert assign_pair_splits(1000, (0.7, 0.2, 0.1), seed=1) != assign_pair_splits(1000, (0.7, 0.2, 0.1), seed=2)


def test_pair_splits_edges():
    assert assign_pair_splits(0) == []
    assert assign_pair_splits(4, (1.0, 0.0, 0.0)) == ["train"] * 4
    assert sorted(assign_pair_splits(3, (0.0, 0.0, 1.0))) == ["test"] * 3
    with pytest.raises(ConfigError, match="sum"):
        assign_pair_splits(5, (0.8, 0.3, 0.1))
    with pytest.raises(ConfigError, match="fractions"):
        PrepareConfig(train_fraction=0.9, val_fraction=0.2, test_fraction=0.1)


def test_query_statistics_hand_computed():
    queries = pd.DataFrame({
        "type": ["explicit", "explicit", "interest"], "n_conditions": [1, 3, 2],
        "candidates": [["a", "b"], ["a", "b", "c", "d"], ["a", "b", "c"]], "split": ["train", "test", "train"],
    })
    stats = query_statistics(queries)
    assert stats["by_type"]["explicit"] == {"n_queries": 2, "by_n_conditions": {"1": 1, "3": 1},
                                            "avg_candidates": 3.0,
                                            "split_share": {"train": 0.5, "val": 0.0, "test": 0.5}}
    assert stats["by_type"]["all"]["n_queries"] == 3
    assert stats["n_by_split"] == {"train": 2, "val": 0, "test": 1}
    assert "implicit" not in stats["by_type"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "data"
    assert main(["prepare-data", "--out", str(out), *SMALL]) == 0
    return out


def test_cli_end_to_end_writes_every_file(prepared, capsys):
    names = {p.name for p in prepared.iterdir()}
    assert names == {"items.parquet", "interactions.parquet", "item_attributes.parquet", "users.parquet",
                     "queries.parquet", "stats.json", "manifest.json"}
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["config"]["n_candidates"] == 8
    assert manifest["files"]["items.parquet"]["rows"] == 1682
    assert manifest["files"]["interactions.parquet"]["rows"] == 100_000
    assert manifest["files"]["users.parquet"]["rows"] == 943
    assert manifest["files"]["queries.parquet"]["rows"] == 110
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == file_sha256(prepared / name), name
        if "rows" in entry:
            assert pq.read_metadata(prepared / name).num_rows == entry["rows"]
    stats = json.loads((prepared / "stats.json").read_text())
    assert stats["by_type"]["explicit"]["n_queries"] == 40 and stats["by_type"]["all"]["avg_candidates"] == 8
    assert sum(stats["n_by_split"].values()) == 110 and stats["n_by_split"]["train"] > stats["n_by_split"]["test"]


def test_prepared_folder_loads_back_and_keeps_its_queries(prepared, tmp_path):
    catalog = load_catalog(prepared)  # the loader validates queries (positives among candidates, ...)
    queries = catalog.queries
    assert len(queries) == 110 and set(queries["split"]) == {"train", "val", "test"}
    train = queries[queries["split"] == "train"]
    held_out = queries[queries["split"] != "train"]
    train_pairs = set(zip(train["user_id"], train["positives"].str[0], strict=True))
    assert not train_pairs & set(zip(held_out["user_id"], held_out["positives"].str[0], strict=True))
    # a folder that already has queries keeps them (here with a different seed that would change them)
    out = tmp_path / "again"
    result = prepare_data(prepared, out, PrepareConfig(seed=99), progress=False)
    assert result["manifest"]["queries_generated"] is False
    again = pq.read_table(out / "queries.parquet").to_pandas()
    original = pq.read_table(prepared / "queries.parquet").to_pandas()
    assert again["query_id"].tolist() == original["query_id"].tolist()
    assert again["text"].tolist() == original["text"].tolist()
    assert again["split"].tolist() == original["split"].tolist()


def test_bad_input_leaves_nothing_behind(prepared, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    items = pd.read_parquet(prepared / "items.parquet").drop(columns=["title"])
    items.to_parquet(bad / "items.parquet")
    for name in ("interactions.parquet", "item_attributes.parquet"):
        (bad / name).write_bytes((prepared / name).read_bytes())
    out = tmp_path / "out"
    with pytest.raises(InputError, match="title"):
        prepare_data(bad, out, PrepareConfig(), progress=False)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    # through the CLI: one message, non-zero exit, an existing output untouched
    out.mkdir()
    (out / "keep.txt").write_text("old")
    assert main(["prepare-data", "--input", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "items.parquet" in err and "title" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_help_explains_inputs_and_outputs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare-data", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--input", "--out", "queries.parquet", "manifest.json", "RecBole", "--n-candidates",
                 "--train-fraction"):
        assert word in text
