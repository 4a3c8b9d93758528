"""The report's contents: tables, figures, retention, traces, safe metric names."""

import re

from rerec.eval.evaluate import flat_metrics
from rerec.eval.report import build_blocks, render_markdown, write_report


def row(model, kind, qtype, acc, n=10):
    out = {"model": model, "kind": kind, "type": qtype, "n": n}
    for m, v in {"acc@1": acc, "ndcg@10": min(1.0, acc + 0.2), "recall@10": 1.0 if kind == "baseline" else acc,
                 "parsed": 1.0 if kind == "baseline" else 0.8}.items():
        out[m], out[f"{m}_low"], out[f"{m}_high"] = v, max(0.0, v - 0.1), min(1.0, v + 0.1)
    return out


def make_report():
    table = [row(m, k, t, a) for m, k, a in (("random", "baseline", 0.1), ("rerec", "llm", 0.6), ("base", "llm", 0.3))
             for t in ("implicit", "explicit", "all")]
    return {
        "split": "test", "n_queries": 20, "n_queries_split": 400, "n_queries_by_type": {"explicit": 10, "implicit": 10},
        "ks": [10], "models": ["random", "base", "rerec"],
        "kinds": {"random": "baseline", "base": "llm", "rerec": "llm"},
        "table": table,
        "by_conditions": [{"model": "rerec", "n_conditions": 2, "n": 7, "acc@1": 0.5},
                          {"model": "random", "n_conditions": 1, "n": 13, "acc@1": 0.1}],
        "llm": {m: {"n_selected": 20, "n_generated": 18, "new_tokens": 900, "tokens_per_second": 9.5,
                    "seconds": 420.0, "budget_exhausted": True} for m in ("base", "rerec")},
        "retention": {"base_model": "base", "models": {
            "base": {"mmlu": 0.4, "mmlu_n": 114, "mmlu_chance": 0.25, "ifeval": 0.5, "ifeval_n": 144,
                     "mmlu_ratio": 1.0, "ifeval_ratio": 1.0},
            "rerec": {"mmlu": 0.36, "mmlu_n": 114, "mmlu_chance": 0.25, "ifeval": 0.45, "ifeval_n": 144,
                      "mmlu_ratio": 0.9, "ifeval_ratio": 0.9}}},
        "traces": {"rerec": {
            "best": [{"query_id": "q7", "type": "implicit", "request": "by the director of Fargo",
                      "positives": ["Blood Simple"], "answered": ["Blood Simple"], "acc@1": 1.0, "parsed": True,
                      "completion": "Step 1: director matches.\n\\boxed{Blood Simple}"}],
            "worst": [{"query_id": "q9", "type": "explicit", "request": "a 90s comedy", "positives": ["Clueless"],
                       "answered": [], "acc@1": 0.0, "parsed": False, "completion": "I am not sure | maybe"}]}},
        "notes": ["Stratified subset: at most 10 queries per type."],
    }


def test_markdown_tables_in_model_and_type_order():
    md = render_markdown(build_blocks(make_report(), {}))
    assert md.index("### explicit queries") < md.index("### implicit queries") < md.index("### all queries")
    section = md[md.index("### explicit queries"):md.index("### implicit queries")]
    assert re.findall(r"^\| (\w+) \|", section, flags=re.M) == ["model", "random", "base", "rerec"]
    assert "| rerec | llm | 10 | 0.600 [0.500, 0.700] | 0.800 [0.700, 0.900] |" in section
    assert "| 0.800 |" in section  # parse rate without an interval
    assert "- Stratified subset: at most 10 queries per type." in md
    assert "| rerec | – | 0.500 (n=7) |" in md  # per number of conditions
    assert "| base | 18/20 | 900 | 9.5 | 420 | yes |" in md


def test_retention_and_traces():
    md = render_markdown(build_blocks(make_report(), {}))
    assert "base model **base**" in md
    assert "| rerec | 0.360 (n=114, chance 0.25) | 0.90 | 0.450 (n=144) | 0.90 |" in md
    assert "### rerec: best — implicit query q7 (Acc@1 1, parsed yes)" in md
    assert "```text\nStep 1: director matches.\n\\boxed{Blood Simple}\n```" in md
    assert "Answered: (nothing matched)" in md


def test_write_report_files_and_html(tmp_path):
    paths = write_report(make_report(), tmp_path)
    for t in ("explicit", "implicit", "all"):
        png = tmp_path / "plots" / f"type_{t}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plots" / "retention.png").is_file()
    md = (tmp_path / "report.md").read_text()
    assert "![Acc@1 and NDCG@10 on implicit queries](plots/type_implicit.png)" in md
    assert "![MMLU and IFEval accuracy](plots/retention.png)" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "<th>Acc@1</th>" in page and "<b>test</b>" in page
    assert "I am not sure | maybe" in page  # completions are escaped, not parsed
    assert set(paths) >= {"report.md", "report.html", "retention", "type_all"}


def test_flat_metrics_are_mlflow_safe():
    metrics = flat_metrics(make_report())
    assert metrics["rerec/implicit/acc_at_1"] == 0.6
    assert metrics["rerec/implicit/ndcg_at_10"] == 0.8
    assert metrics["rerec/conditions_2/acc_at_1"] == 0.5
    assert metrics["rerec/retention/mmlu_ratio"] == 0.9
    assert all(re.fullmatch(r"[A-Za-z0-9_\-./ ]+", k) for k in metrics)
