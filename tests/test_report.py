"""The report's contents: headline, paired differences, ranking metrics, retention, traces, safe metric names."""

import re

from rerec.eval.evaluate import flat_metrics, paired_result
from rerec.eval.report import build_blocks, render_html, render_markdown, write_report

RANKING = ["ndcg@2", "recall@2", "ndcg@3", "recall@3", "mrr"]


def row(model, kind, qtype, acc, n=10):
    """A table row as evaluate writes it: a baseline has every metric, a top-1 LLM Acc@1 and parse rate only."""
    out = {"model": model, "kind": kind, "type": qtype, "n": n}
    values = {"acc@1": acc, "parsed": 0.8}
    if kind == "baseline":
        values = {"acc@1": acc, "ndcg@2": acc + 0.1, "recall@2": acc + 0.2, "ndcg@3": acc + 0.15,
                  "recall@3": acc + 0.3, "mrr": acc + 0.12, "parsed": 1.0}
    for m, v in values.items():
        out[m], out[f"{m}_low"], out[f"{m}_high"] = v, max(0.0, v - 0.1), min(1.0, v + 0.1)
    return out


def cell(diff, low, high, n, a, b):
    return {"diff": diff, "low": low, "high": high, "n": n, "separated": low > 0 or high < 0,
            "model_score": a, "reference_score": b}


def make_report():
    table = [row(m, k, t, a) for m, k, a in (("random", "baseline", 0.1), ("rft", "llm", 0.6), ("base", "llm", 0.3),
                                             ("plain_grpo", "llm", 0.5))
             for t in ("implicit", "explicit", "all")]
    paired = [
        {"model": "rft", "reference": "plain_grpo", "metric": "acc@1", "verdict": "rft − plain_grpo: not separated.",
         "by_type": {"all": cell(0.1, -0.05, 0.25, 20, 0.6, 0.5), "explicit": cell(0.2, 0.0, 0.4, 10, 0.6, 0.4),
                     "implicit": cell(0.0, -0.2, 0.2, 10, 0.6, 0.6)}},
        {"model": "rft", "reference": "base", "metric": "acc@1", "verdict": "rft − base: rft is ahead.",
         "by_type": {"all": cell(0.3, 0.15, 0.45, 20, 0.6, 0.3)}},
    ]
    return {
        "split": "test", "n_queries": 20, "n_queries_split": 400, "n_queries_by_type": {"explicit": 10, "implicit": 10},
        "n_candidates": {"min": 4, "max": 4}, "top_k": 1, "headline": "acc@1", "ks": [2, 3], "ks_dropped": [5, 10],
        "ranking_metrics": RANKING, "base": {"model": "base", "source": "smollm2", "from_config": True},
        "models": ["random", "base", "rft", "plain_grpo"],
        "kinds": {"random": "baseline", "base": "llm", "rft": "llm", "plain_grpo": "llm"},
        "table": table,
        "by_conditions": [{"model": "rft", "n_conditions": 2, "n": 7, "acc@1": 0.5},
                          {"model": "random", "n_conditions": 1, "n": 13, "acc@1": 0.1}],
        "paired": paired,
        "llm": {m: {"n_selected": 20, "n_generated": 18, "n_closed_after_last_row": 2, "new_tokens": 900, "tokens_per_second": 9.5,
                    "seconds": 420.0, "budget_exhausted": True} for m in ("base", "rft")},
        "retention": {"base_model": "base", "models": {
            "base": {"mmlu": 0.4, "mmlu_n": 114, "mmlu_chance": 0.25, "ifeval": 0.5, "ifeval_n": 144,
                     "mmlu_ratio": 1.0, "ifeval_ratio": 1.0},
            "rft": {"mmlu": 0.36, "mmlu_n": 114, "mmlu_chance": 0.25, "ifeval": 0.45, "ifeval_n": 144,
                    "mmlu_ratio": 0.9, "ifeval_ratio": 0.9}}},
        "traces": {"rft": {
            "best": [{"query_id": "q7", "type": "implicit", "request": "by the director of Fargo",
                      "positives": ["Blood Simple"], "answered": ["Blood Simple", "Fargo"], "acc@1": 1.0,
                      "parsed": True, "completion": "Step 1: director matches.\n\\boxed{Blood Simple; Fargo}"}],
            "worst": [{"query_id": "q9", "type": "explicit", "request": "a 90s comedy", "positives": ["Clueless"],
                       "answered": [], "acc@1": 0.0, "parsed": False, "completion": "I am not sure | maybe"}]}},
        "notes": ["Stratified subset: at most 10 queries per type."],
        "config": {"n_boot": 1000},
    }


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    nxt = md.find("\n## ", start + 1)
    return md[start:nxt if nxt >= 0 else None]


def test_headline_table_compares_every_row_on_acc_at_1():
    md = render_markdown(build_blocks(make_report(), {}))
    head = section(md, "Acc@1 by query type")
    assert "| model | kind | n | explicit | implicit | all | parse rate |" in head
    assert re.findall(r"^\| (\w+) \|", head, flags=re.M) == ["model", "random", "base", "rft", "plain_grpo"]
    assert "| rft | llm | 10 | 0.600 [0.500, 0.700] | 0.600 [0.500, 0.700] | 0.600 [0.500, 0.700] | 0.80 |" in head
    assert "| random | baseline | 10 | 0.100 [0.000, 0.200] |" in head and head.count("| – |") == 1  # no parse rate
    assert "NDCG" not in head and "Recall" not in head
    assert md.index("## How to read this") < md.index("## Acc@1 by query type") < md.index("## Paired differences")


def test_ranking_table_holds_full_rankers_only():
    """A top-1 LLM's NDCG would be its Acc@1 again: LLM rows stay out of the ranking table; K >= 4 is gone."""
    md = render_markdown(build_blocks(make_report(), {}))
    ranking = section(md, "Ranking metrics (full rankings)")
    assert "| model | kind | n | NDCG@2 | Recall@2 | NDCG@3 | Recall@3 | MRR |" in ranking
    assert re.findall(r"^\| (\w+) \|", ranking, flags=re.M) == ["model", "random"]
    assert "| random | baseline | 10 | 0.200 [0.100, 0.300] | 0.300 [0.200, 0.400] |" in ranking
    assert "@5" not in md and "@10" not in md
    # an LLM answering 2 items appears, judged at K = 2 only
    report = make_report()
    top2 = row("rft", "llm", "all", 0.6) | {"ndcg@2": 0.7, "ndcg@2_low": 0.6, "ndcg@2_high": 0.8,
                                              "recall@2": 0.8, "recall@2_low": 0.7, "recall@2_high": 0.9}
    report["table"] = [r for r in report["table"] if not (r["model"] == "rft" and r["type"] == "all")] + [top2]
    report["top_k"] = 2
    ranking = section(render_markdown(build_blocks(report, {})), "Ranking metrics (full rankings)")
    assert "| rft | llm | 10 | 0.700 [0.600, 0.800] | 0.800 [0.700, 0.900] | – | – | – |" in ranking


def test_how_to_read_says_how_each_metric_is_computed_and_which_split():
    md = render_markdown(build_blocks(make_report(), {}))
    how = section(md, "How to read this")
    assert "the **test** split" in how and "each showing 4 candidates" in how
    assert "first answer item only" in how and "boxing every candidate earns nothing extra" in how
    assert "LLMs are left out" in how and "K ≥ 4 (the candidate count) is not reported" in how
    assert "Paired difference" in how and "*not separated*" in how
    assert "zero-shot model smollm2" in how and "1000 resamples" in how
    report = make_report() | {"top_k": 3, "n_candidates": {"min": 20, "max": 20}}
    how = section(render_markdown(build_blocks(report, {})), "How to read this")
    assert "its first 3 answer items" in how and "only at K ≤ 3" in how and "K ≥ 20" in how


def test_paired_section():
    md = render_markdown(build_blocks(make_report(), {}))
    paired = section(md, "Paired differences in Acc@1")
    assert "- rft − plain_grpo: not separated." in paired and "- rft − base: rft is ahead." in paired
    # n shared by every comparison goes to the header (all: 20), else into each cell (rft - base has no explicit)
    assert "| model − reference | all (n=20) | explicit | implicit |" in paired
    assert "| rft − plain_grpo | +0.100 [-0.050, +0.250] | +0.200 [+0.000, +0.400] (n=10) |" in paired
    assert "| rft − base | +0.300 [+0.150, +0.450] | – | – |" in paired
    report = make_report() | {"paired": []}
    assert "Paired differences" not in render_markdown(build_blocks(report, {}))


def test_paired_result_is_the_recorded_cell_or_none():
    report = make_report()
    assert paired_result(report, "rft", "plain_grpo") == {"diff": 0.1, "low": -0.05, "high": 0.25, "n": 20,
                                                          "separated": False, "model_score": 0.6,
                                                          "reference_score": 0.5}
    assert paired_result(report, "rft", "plain_grpo", type="explicit")["diff"] == 0.2
    assert paired_result(report, "plain_grpo", "rft") is None  # never swapped
    assert paired_result(report, "rft", "champion") is None
    assert paired_result(report, "rft", "base", type="implicit") is None
    assert paired_result({"split": "val"}, "rft", "base") is None  # a report without the key
    report["paired"][1]["by_type"]["all"] = {"diff": None, "low": None, "high": None, "n": 0, "separated": False,
                                             "model_score": None, "reference_score": None}
    assert paired_result(report, "rft", "base") is None  # no common query


def test_retention_and_traces():
    md = render_markdown(build_blocks(make_report(), {}))
    assert "zero-shot base model **base**" in md
    assert "| rft | 0.360 (n=114, chance 0.25) | 0.90 | 0.450 (n=144) | 0.90 |" in md
    assert "### rft: best — implicit query q7 (Acc@1 1, parsed yes)" in md
    assert "Answered: Blood Simple; Fargo (scored: the first 1)" in md
    assert "```text\nStep 1: director matches.\n\\boxed{Blood Simple; Fargo}\n```" in md
    assert "Answered: (nothing matched)" in md
    assert "| rft | – | 0.500 (n=7) |" in md  # per number of conditions
    assert "| base | 18/20 | 2 | 900 | 9.5 | 420 | yes |" in md
    assert "- Stratified subset: at most 10 queries per type." in md


def test_write_report_files_and_html(tmp_path):
    paths = write_report(make_report(), tmp_path)
    for name in ("headline", "paired", "retention"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "report.md").read_text()
    assert "![Acc@1 by query type with 95% intervals](plots/headline.png)" in md
    assert "![MMLU and IFEval accuracy](plots/retention.png)" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "<th>Acc@1</th>" not in page and "<th>all</th>" in page and "<b>test</b>" in page
    assert "<h2>Paired differences in Acc@1</h2>" in page and "<h2>How to read this</h2>" in page
    assert "<i>not separated</i>" in page
    assert "I am not sure | maybe" in page  # completions are escaped, not parsed
    assert "<td>0.600 [0.500,&nbsp;0.700]</td>" in page  # a cell wraps before its interval, never inside
    assert set(paths) >= {"report.md", "report.html", "retention", "headline", "paired"}


def test_html_escapes_text_and_keeps_markup_out_of_completions(tmp_path):
    page = render_html([("p", "a <b>tag</b> and **bold**"), ("pre", "*not italic* <x>")], tmp_path)
    assert "a &lt;b&gt;tag&lt;/b&gt; and <b>bold</b>" in page and "<pre>*not italic* &lt;x&gt;</pre>" in page


def test_flat_metrics_are_mlflow_safe():
    metrics = flat_metrics(make_report())
    assert metrics["rft/implicit/acc_at_1"] == 0.6
    assert "rft/implicit/ndcg_at_2" not in metrics  # an LLM is not judged on it
    assert metrics["random/all/ndcg_at_2"] == 0.2 and metrics["random/all/mrr"] == 0.22
    assert metrics["rft/conditions_2/acc_at_1"] == 0.5
    assert metrics["rft/retention/mmlu_ratio"] == 0.9
    assert metrics["paired/rft-plain_grpo/all/acc_at_1_diff"] == 0.1
    assert metrics["paired/rft-plain_grpo/explicit/acc_at_1_low"] == 0.0
    assert all(re.fullmatch(r"[A-Za-z0-9_\-./ ]+", k) for k in metrics)
