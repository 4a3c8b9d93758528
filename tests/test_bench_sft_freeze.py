"""bench/sft_freeze.py end to end on the tiny model: both arms on the same batches, the frozen arm training
fewer parameters with the same gradients where both train, one JSON line."""

import json

from conftest import load_script

from rerec.experiments.provenance import ROOT


def test_sft_freeze_bench_reports_both_arms_with_equal_top_layer_gradients(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    out = tmp_path / "sft_freeze.json"
    bench = load_script(ROOT / "bench" / "sft_freeze.py", "bench_sft_freeze")
    argv = ["--model", "tiny", "--steps", "2", "--threads", "1", "--freeze-layers", "2", "--out", str(out)]
    assert bench.main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < line["frozen_trainable_params"] < line["all_layers_trainable_params"]
    assert line["speedup"] > 0 and line["all_layers_step_s"] > 0 and line["frozen_step_s"] > 0
    assert line["max_abs_grad_diff"] < 1e-6  # freezing a layer changes no gradient above it
    full = json.loads(out.read_text())
    assert full["provenance"]["commit"] and len(full["records"]) == 2 * 3  # 2 arms x (warm-up + 2 steps)
