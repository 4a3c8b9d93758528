"""bench/sft_decisions.py end to end on the tiny model: both arms score the same traces, one JSON line."""

import json

from conftest import load_script

from rerec.experiments.provenance import ROOT


def load_bench():
    return load_script(ROOT / "bench" / "sft_decisions.py", "bench_sft_decisions")


def test_sft_decisions_bench_times_both_arms_on_the_same_traces(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    out = tmp_path / "sft_decisions.json"
    assert load_bench().main(["--model", "tiny", "--traces", "4", "--reps", "1", "--threads", "1",
                              "--out", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["speedup"] > 0 and line["float32_s"] > 0 and line["bf16_autocast_s"] > 0
    for arm in ("accuracy_float32", "accuracy_bf16_autocast"):  # the same decisions counted in both arms
        assert line[arm]["n_answer"] == line["traces"] == 4
    assert line["accuracy_float32"]["n_check"] == line["accuracy_bf16_autocast"]["n_check"] > 0
    full = json.loads(out.read_text())
    assert full["provenance"]["commit"] and len(full["records"]) == 2 * 2  # 2 arms x (warm-up + 1 rep)
