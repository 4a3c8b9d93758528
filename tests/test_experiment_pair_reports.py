"""experiments/pair_reports.py: rows of separate evaluate reports pair by query id; ``--mean`` pools several
seeds of one arm per query (hand-computed cases); a misnamed row is a clear error."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "pair_reports.py"


def write_report(folder: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    """An evaluate output folder with only what the script reads: per_query.parquet and report.json."""
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=["model", "query_id", "type", "acc@1"]).to_parquet(folder / "per_query.parquet")
    (folder / "report.json").write_text(json.dumps({"split": "val", "config": {}}))
    return folder


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_mean_of_seeds_pairs_per_query_with_the_reference(tmp_path):
    queries = [("q0", "explicit"), ("q1", "explicit"), ("q2", "interest"), ("q3", "interest")]
    sft = [0, 1, 0, 0]
    seed_a, seed_b = [1, 1, 0, 1], [0, 1, 1]  # seed b lacks q3: it drops out of the mean
    a = write_report(tmp_path / "a", [("sft", q, t, h) for (q, t), h in zip(queries, sft, strict=True)]
                     + [("rft", q, t, h) for (q, t), h in zip(queries, seed_a, strict=True)])
    b = write_report(tmp_path / "b", [("rft", q, t, h) for (q, t), h in zip(queries[:3], seed_b, strict=True)])
    out = tmp_path / "pairs.json"
    done = run("--report", f"A={a}", "--report", f"B={b}", "--mean", "rft3=A/rft,B/rft",
               "--pair", "rft3-A/sft", "--pair", "A/rft-A/sft", "--out", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    pooled = record["pairs"]["rft3-A/sft"]
    # per query, mean over the two seeds: q0 0.5, q1 1, q2 0.5 (q3 only in seed a: left out); minus SFT 0, 1, 0
    assert pooled["all"]["n"] == 3
    assert abs(pooled["all"]["diff"] - (0.5 + 0 + 0.5) / 3) < 1e-9
    assert abs(pooled["explicit"]["diff"] - 0.25) < 1e-9 and abs(pooled["interest"]["diff"] - 0.5) < 1e-9
    assert record["pairs"]["A/rft-A/sft"]["all"]["n"] == 4  # a plain pair keeps every query both answered
    assert record["scores"]["rft3"]["all"] == round(2 / 3, 4)  # scores are written to 4 places
    assert "--mean rft3=A/rft,B/rft" in record["command"]


def test_mean_of_a_row_that_does_not_exist_names_the_rows(tmp_path):
    a = write_report(tmp_path / "a", [("sft", "q0", "explicit", 1.0), ("rft", "q0", "explicit", 0.0)])
    done = run("--report", f"A={a}", "--mean", "m=A/rft,A/rtf", "--out", str(tmp_path / "p.json"))
    assert done.returncode != 0
    assert "no rows named A/rtf" in done.stderr and "A/rft, A/sft" in done.stderr
    assert not (tmp_path / "p.json").exists()


def test_row_names_with_a_hyphen_pair_and_an_unknown_pair_names_the_rows(tmp_path):
    a = write_report(tmp_path / "a", [("lr1e-4", "q0", "explicit", 0.0), ("lr1e-4", "q1", "explicit", 1.0),
                                      ("lr2e-4", "q0", "explicit", 1.0), ("lr2e-4", "q1", "explicit", 1.0)])
    out = tmp_path / "p.json"
    done = run("--report", f"v={a}", "--pair", "v/lr2e-4-v/lr1e-4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    cell = json.loads(out.read_text())["pairs"]["v/lr2e-4-v/lr1e-4"]["all"]
    assert cell["n"] == 2 and abs(cell["diff"] - 0.5) < 1e-9
    done = run("--report", f"v={a}", "--pair", "v/lr2e-4-v/sft", "--out", str(tmp_path / "q.json"))
    assert done.returncode != 0 and "no split into two known rows" in done.stderr and "v/lr1e-4" in done.stderr


def test_check_completions_pair_as_explicit_rows(tmp_path):
    def checks(name: str, hits: list[bool]) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"qid": f"explicit-{i}", "hit": h, "completion": ""}) + "\n"
                                for i, h in enumerate(hits)))
        return path

    out = tmp_path / "p.json"
    done = run("--checks", f"a={checks('a', [True, True, False, True])}",
               "--checks", f"b={checks('b', [False, True, False, False])}", "--pair", "a/checks-b/checks",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    cell = record["pairs"]["a/checks-b/checks"]
    assert cell["all"]["n"] == 4 and abs(cell["all"]["diff"] - 0.5) < 1e-9
    assert abs(cell["explicit"]["diff"] - 0.5) < 1e-9 and record["scores"]["b/checks"]["all"] == 0.25
    assert run("--out", str(tmp_path / "none.json")).returncode != 0  # nothing to read is an error


def test_same_first_item_counts_queries_whose_answers_name_the_same_item(tmp_path):
    """Equal hits need not be equal answers: two misses may name different wrong items (hand-counted)."""
    def report(folder: Path, top1: list) -> Path:
        folder.mkdir()
        rows = [("rft", f"q{i}", "explicit", 1.0 if t == "1" else 0.0, t) for i, t in enumerate(top1)]
        pd.DataFrame(rows, columns=["model", "query_id", "type", "acc@1", "top1"]).to_parquet(
            folder / "per_query.parquet")
        (folder / "report.json").write_text(json.dumps({"split": "test", "config": {}}))
        return folder

    a = report(tmp_path / "a", ["1", "2", None, None])
    b = report(tmp_path / "b", ["1", "3", None, "4"])  # q1: both miss, other items; q2: both name none
    out = tmp_path / "p.json"
    done = run("--report", f"A={a}", "--report", f"B={b}", "--pair", "A/rft-B/rft", "--out", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["pairs"]["A/rft-B/rft"]["all"]["diff"] == 0.0  # the same hits
    assert record["same_first_item"]["A/rft-B/rft"] == {"n": 4, "same": 2}  # q0 and q2
