"""bench/sft_step.py end to end on the tiny model: it builds the SFT stage's trainer on prepared data,
times both arms on the same batches and reports one JSON line."""

import json

from conftest import load_script

from rerec.experiments.provenance import ROOT


def load_bench():
    return load_script(ROOT / "bench" / "sft_step.py", "bench_sft_step")


def test_sft_step_bench_reports_both_arms_with_identical_gradients(tmp_path, monkeypatch, capsys):
    # the bench points MLflow at a throw-away folder for its prepare-data run; monkeypatch restores the variable
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    out = tmp_path / "sft_step.json"
    assert load_bench().main(["--model", "tiny", "--steps", "2", "--threads", "1", "--out", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["trl_default_gradient_checkpointing"] is True  # what the stage switches off
    assert line["stage_gradient_checkpointing"] is False
    assert line["speedup"] > 0 and line["checkpointing_step_s"] > 0 and line["plain_step_s"] > 0
    assert line["max_abs_grad_diff"] < 1e-6  # the recomputed forward is the same computation
    full = json.loads(out.read_text())
    assert full["provenance"]["commit"] and len(full["records"]) == 2 * 3  # 2 arms x (warm-up + 2 steps)
