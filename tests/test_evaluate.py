"""Batched generation, the LLM ranker, and evaluate() end to end on a small fixture with a tiny
randomly initialised model."""

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from rerec.data.schema import Catalog, encode_conditions
from rerec.errors import ConfigError

TITLES = ["Fargo", "Toy Story", "Apollo 13", "Heat", "Babe", "Casino", "Clueless", "Seven"]
TYPES = ["explicit", "implicit", "misinformed", "interest"]


def make_catalog() -> Catalog:
    items = pd.DataFrame({"item_id": [str(i) for i in range(1, 9)], "title": TITLES,
                          "year": pd.array([1996, 1995, 1995, 1995, 1995, 1995, 1995, 1995], dtype="Int64"),
                          "genres": [["Crime"], ["Animation"], ["Drama"], ["Action"], ["Children"], ["Crime"],
                                     ["Comedy"], ["Thriller"]]})
    users = [f"u{u}" for u in range(6)]
    inter = pd.DataFrame([(u, str(1 + (k * 3 + j) % 8)) for k, u in enumerate(users) for j in range(4)],
                         columns=["user_id", "item_id"])
    attrs = pd.DataFrame({"item_id": ["1", "6"], "relation": ["director", "director"], "entity": ["m.0a", "m.0b"]})
    rows = []
    for n in range(16):
        candidates = [str(1 + (n + j) % 8) for j in range(5)]
        positive = candidates[n % 5]
        genre = items["genres"].iloc[int(positive) - 1][0]  # a positive meets its own conditions
        cond = [{"relation": "genre", "entity": genre, "text": genre.lower()}] * (1 + n % 2)
        rows.append({"query_id": f"q{n}", "user_id": users[n % 6], "type": TYPES[n % 4],
                     "text": f"something like {TITLES[n % 8]}", "conditions": encode_conditions(cond),
                     "positives": [positive], "candidates": candidates, "history": [str(1 + (n + 5) % 8)],
                     "n_conditions": len(cond), "split": "test" if n < 12 else "val"})
    return Catalog(items=items, interactions=inter, item_attributes=attrs, queries=pd.DataFrame(rows))


def tiny_model_dir(path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rerec.paths import minilm_dir

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from rerec.data.load import save_catalog
    from rerec.graphs.interaction import InteractionGraph

    root = tmp_path_factory.mktemp("eval")
    catalog = make_catalog()
    save_catalog(catalog, root / "data")
    graph = InteractionGraph.from_interactions(catalog.interactions, item_ids=catalog.items["item_id"])
    graph.save(root / "graphs")
    (root / "reward").mkdir()
    torch.manual_seed(1)
    torch.save({"ids": [f"u{u}" for u in range(5)], "embeddings": torch.randn(5, 4)}, root / "reward/user_embeddings.pt")
    torch.save({"ids": catalog.items["item_id"].tolist(), "embeddings": torch.randn(8, 4)},
               root / "reward/item_embeddings.pt")
    tiny_model_dir(root / "tiny")
    return root


def load_tiny(folders):
    from rerec.models.loading import load_model

    return load_model(str(folders / "tiny"))


def test_generation_batched_equals_one_by_one_and_budget(folders):
    from rerec.eval.generate import generate_completions

    torch.set_num_threads(1)
    model, tok = load_tiny(folders)
    prompts = ["hello there", "a much longer prompt about films and crime", "short"]
    batched = generate_completions(model, tok, prompts, max_new_tokens=5, batch_size=3)
    single = generate_completions(model, tok, prompts, max_new_tokens=5, batch_size=1)
    assert batched.completions == single.completions
    assert batched.n_generated == 3 and batched.n_new_tokens == 15 and not batched.budget_exhausted
    spent = generate_completions(model, tok, prompts, max_new_tokens=5, time_budget_s=0.0)
    assert spent.completions == [None, None, None] and spent.budget_exhausted


def test_llm_ranker_parses_and_matches(folders, monkeypatch):
    from rerec.eval import generate as G
    from rerec.prompt import CatalogView

    catalog = make_catalog()
    view = CatalogView.from_catalog(catalog)
    model, tok = load_tiny(folders)
    query = {**catalog.queries.iloc[0].to_dict(), "candidates": ["1", "2", "3", "4", "5"]}
    texts = ["The request wants animation.\n\\boxed{Toy Story}", "no answer here", "\\boxed{3}", None]
    monkeypatch.setattr(G, "generate_completions",
                        lambda *a, **k: G.GenerationResult(texts, n_new_tokens=10, seconds=1.0))
    ranker = G.LLMRanker("m", model, tok, view, max_new_tokens=4)
    answers = ranker.rank_all([query] * 4)
    assert [a.ranked for a in answers] == [["2"], [], ["3"], []]
    assert [a.parsed for a in answers] == [True, False, True, False]
    assert answers[3].completion is None
    assert "Toy Story" in answers[0].prompt and "Candidates" in answers[0].prompt


def test_evaluate_end_to_end(folders):
    """The base row comes from the config, every retention ratio is against it, the paired differences of
    identical weights are exactly 0 on the same queries, and K >= the 5 candidates shown is dropped."""
    from rerec.eval.evaluate import EvalConfig, evaluate, paired_result

    torch.set_num_threads(1)
    config = EvalConfig(baselines=["random", "popularity", "lightgcn"], max_queries_per_type=2,
                        max_new_tokens=6, batch_size=4, mmlu_max_questions=4, ifeval_max_instructions=4,
                        ifeval_max_new_tokens=6, n_boot=100, n_traces=1, ks=[2, 5, 10],
                        base_model=str(folders / "tiny"))
    out = folders / "out"
    models = {"sft": folders / "tiny", "rft": folders / "tiny", "plain_grpo": folders / "tiny"}
    report = evaluate(folders / "data", folders / "graphs", folders / "reward", models, out, config)

    assert sorted(p.name for p in out.iterdir()) == ["per_query.parquet", "per_query_unseen_phrasing.parquet", "plots",
                                                       "report.html", "report.json", "report.md"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"] == pytest.approx(report["metrics"])
    assert saved["models"] == ["random", "popularity", "lightgcn", "base", "sft", "rft", "plain_grpo"]
    assert saved["base"] == {"model": "base", "source": str(folders / "tiny"), "from_config": True}
    assert saved["n_queries"] == 8 and saved["n_queries_split"] == 12
    assert saved["n_queries_by_type"] == {t: 2 for t in sorted(TYPES)}
    assert saved["n_candidates"] == {"min": 5, "max": 5} and saved["top_k"] == 1
    assert saved["ks"] == [2] and saved["ks_dropped"] == [5, 10]
    assert saved["ranking_metrics"] == ["ndcg@2", "recall@2", "mrr"]
    assert any("not reported at K = 5, 10" in n for n in saved["notes"])
    rows = {(r["model"], r["type"]): r for r in saved["table"]}
    assert ("lightgcn", "implicit") in rows and ("rft", "all") in rows
    assert rows[("base", "all")]["n"] == 8 and 0 <= rows[("base", "all")]["parsed"] <= 1
    assert "recall@2" in rows[("popularity", "all")] and "recall@5" not in rows[("popularity", "all")]
    assert set(rows[("rft", "all")]) & {"ndcg@2", "recall@2", "mrr"} == set()  # a top-1 LLM: Acc@1 only
    assert {r["n_conditions"] for r in saved["by_conditions"]} == {1, 2}
    # the default comparisons, in their order; identical weights answer identically: 0 on every query
    assert [(e["model"], e["reference"]) for e in saved["paired"]] == [("rft", "plain_grpo"), ("rft", "sft"),
                                                                        ("rft", "base")]
    for entry in saved["paired"]:
        assert entry["metric"] == "acc@1" and set(entry["by_type"]) == {"all", *TYPES}
        assert entry["by_type"]["all"] | {"model_score": 0, "reference_score": 0} == {
            "diff": 0.0, "low": 0.0, "high": 0.0, "n": 8, "separated": False, "model_score": 0, "reference_score": 0}
        assert "not separated" in entry["verdict"]
    assert paired_result(saved, "rft", "plain_grpo", type="explicit")["n"] == 2
    ret = saved["retention"]
    assert ret["base_model"] == "base" and ret["models"]["base"]["mmlu_n"] == 4
    assert ret["models"]["rft"]["ifeval_n"] == 4
    if ret["models"]["base"]["mmlu"]:
        assert ret["models"]["rft"]["mmlu_ratio"] == pytest.approx(1.0)  # same weights as the base
    assert any("Stratified subset" in n for n in saved["notes"])
    assert set(saved["traces"]) == {"base", "sft", "rft", "plain_grpo"}
    per_query = pd.read_parquet(out / "per_query.parquet")
    assert per_query.groupby("model").size().to_dict() == {m: 8 for m in saved["models"]}
    # safe metric names only
    assert "popularity/implicit/ndcg_at_2" in saved["metrics"] and "paired/rft-sft/all/acc_at_1_diff" in saved["metrics"]
    assert all("@" not in k for k in saved["metrics"])
    md = (out / "report.md").read_text()
    assert "| popularity | baseline | 8 |" in md and "General-ability retention" in md
    assert "## Paired differences in Acc@1" in md and "## How to read this" in md
    assert "plots/headline.png" in md and "plots/paired.png" in md
    assert "data:image/png;base64," in (out / "report.html").read_text()


def _fake_generation(monkeypatch, answers):
    """Generation replaced by fixed completions per model (named in ``desc``): the LLMRanker, the answer
    parsing and matching, scoring and the report stay real."""
    from rerec.eval import generate as G

    def fake(model, tokenizer, prompts, desc="", **kw):
        return G.GenerationResult([answers[desc.split(":")[0]]] * len(prompts), n_new_tokens=len(prompts), seconds=1.0)

    monkeypatch.setattr(G, "generate_completions", fake)


def test_top1_scoring_reads_the_first_item_and_paired_by_hand(folders, monkeypatch):
    """rft boxes every candidate (1..5 in displayed order), sft boxes candidate 2, base answers nothing.
    The 12 test queries q0..q11 have their positive at position n % 5 + 1 and type TYPES[n % 4]: rft is right
    on q0 (explicit), q5 (implicit), q10 (misinformed); sft on q1 (implicit), q6 (misinformed), q11 (interest).
    So Acc@1 is 3/12 for both, with no recall credit for rft's extra items, and rft - sft is +1/3 on explicit,
    0 on implicit and misinformed (one win, one loss), -1/3 on interest and 0 overall."""
    from rerec.eval.evaluate import EvalConfig, evaluate, paired_result

    _fake_generation(monkeypatch, {"rft": "\\boxed{1; 2; 3; 4; 5}", "sft": "\\boxed{2}", "base": "I cannot say."})
    config = EvalConfig(baselines=["popularity"], retention=False, n_boot=4000, n_traces=1)
    models = {"base": folders / "tiny", "sft": folders / "tiny", "rft": folders / "tiny"}
    report = evaluate(folders / "data", folders / "graphs", folders / "reward", models, folders / "out_top1", config)

    assert report["base"]["from_config"] is False and report["models"] == ["popularity", "base", "sft", "rft"]
    rows = {(r["model"], r["type"]): r for r in report["table"]}
    assert rows[("rft", "all")]["acc@1"] == 0.25 and rows[("sft", "all")]["acc@1"] == 0.25
    assert rows[("base", "all")]["acc@1"] == 0.0 and rows[("base", "all")]["parsed"] == 0.0
    assert "recall@2" not in rows[("rft", "all")] and rows[("popularity", "all")]["recall@2"] >= 0
    per_query = pd.read_parquet(folders / "out_top1" / "per_query.parquet").set_index(["model", "query_id"])
    assert per_query.loc[("rft", "q1"), "n_items"] == 5 and per_query.loc[("rft", "q1"), "top1"] == "2"
    assert per_query.loc[("rft", "q1"), "acc@1"] == 0.0 and math.isnan(per_query.loc[("rft", "q1"), "recall@2"])
    assert per_query.loc[("rft", "q0"), "acc@1"] == 1.0

    assert [(e["model"], e["reference"]) for e in report["paired"]] == [("rft", "sft"), ("rft", "base")]
    by_type = report["paired"][0]["by_type"]
    assert {t: (c["diff"], c["n"]) for t, c in by_type.items()} == {
        "all": (0.0, 12), "explicit": (pytest.approx(1 / 3), 3), "implicit": (0.0, 3),
        "misinformed": (0.0, 3), "interest": (pytest.approx(-1 / 3), 3)}
    assert (by_type["explicit"]["model_score"], by_type["explicit"]["reference_score"]) == (pytest.approx(1 / 3), 0.0)
    # explicit differences [1, 0, 0]: a draw's mean is X/3, X ~ Binomial(3, 1/3), P(X = 0) = 0.30,
    # P(X = 3) = 0.037 > 0.025, so the interval is [0, 1]
    assert (by_type["explicit"]["low"], by_type["explicit"]["high"]) == (0.0, 1.0)
    assert not by_type["all"]["separated"] and "not separated" in report["paired"][0]["verdict"]
    base = paired_result(report, "rft", "base")
    assert base["diff"] == 0.25 and base["n"] == 12 and base["reference_score"] == 0.0
    md = (folders / "out_top1" / "report.md").read_text()
    assert "(scored: the first 1)" in md


def _logged_generation(monkeypatch) -> list[str]:
    """Scripted answers (rft boxes the first candidate, the base declines) whose calls are logged by their
    progress label ("rft: rank", "base: ifeval", ...), in order; returns the log."""
    from rerec.eval import generate as G

    calls: list[str] = []
    _fake_generation(monkeypatch, {"rft": "\\boxed{1}", "base": "I cannot say."})
    fake_rank = G.generate_completions

    def rank(model, tokenizer, prompts, desc="", **kw):
        calls.append(desc)
        return fake_rank(model, tokenizer, prompts, desc=desc, **kw)

    monkeypatch.setattr(G, "generate_completions", rank)
    return calls


def test_retention_is_measured_before_ranking_so_a_slow_base_still_gets_it(folders, monkeypatch):
    """The zero-shot base runs every answer to the token limit; were the probes last, its short budget would
    leave MMLU no time and the promotion gate no retention ratio. Each model's MMLU comes before its ranking."""
    from rerec.eval import evaluate as E
    from rerec.eval import mmlu as mmlu_module
    from rerec.eval.evaluate import EvalConfig, evaluate

    calls = _logged_generation(monkeypatch)
    real_mmlu = mmlu_module.score_mmlu

    def mmlu(*args, desc="", **kw):
        calls.append(desc)
        return real_mmlu(*args, desc=desc, **kw)

    monkeypatch.setattr(mmlu_module, "score_mmlu", mmlu)
    config = EvalConfig(baselines=["popularity"], max_queries_per_type=1, max_new_tokens=4, batch_size=4,
                        mmlu_max_questions=2, ifeval_max_instructions=1, ifeval_max_new_tokens=4, n_boot=20,
                        n_traces=1, unseen_phrasing_per_type=0)
    report = evaluate(folders / "data", folders / "graphs", folders / "reward",
                      {"base": folders / "tiny", "rft": folders / "tiny"}, folders / "out_order", config)
    assert calls == ["base: mmlu", "base: ifeval", "base: rank", "rft: mmlu", "rft: ifeval", "rft: rank"]
    assert report["retention"]["models"]["base"]["mmlu_n"] == 2
    assert E.evaluate_llm.__doc__.startswith("Measure one model's retention")


def test_base_row_always_present_with_its_own_budget(folders):
    """No model named base: the stage adds the base from the config; with a zero budget it answers nothing,
    is still a row in the generation table, and the comparison with it is stated as impossible."""
    from rerec.eval.evaluate import EvalConfig, evaluate, paired_result

    torch.set_num_threads(1)
    config = EvalConfig(baselines=["popularity"], max_queries_per_type=1, max_new_tokens=4, batch_size=4,
                        mmlu_max_questions=2, ifeval_max_instructions=2, ifeval_max_new_tokens=4, n_boot=20,
                        n_traces=1, base_model=str(folders / "tiny"), base_time_budget_s=0.0)
    report = evaluate(folders / "data", folders / "graphs", folders / "reward", {"rft": folders / "tiny"},
                      folders / "out_base", config)
    assert report["models"] == ["popularity", "base", "rft"]
    assert report["llm"]["base"]["n_generated"] == 0 and report["llm"]["base"]["time_budget_s"] == 0.0
    assert report["llm"]["rft"]["n_generated"] == 4
    assert report["retention"]["models"]["base"]["mmlu_n"] == 0
    assert report["retention"]["models"]["rft"]["mmlu_ratio"] is None  # nothing to compare against
    assert report["paired"][0]["by_type"]["all"]["n"] == 0 and "no query in common" in report["paired"][0]["verdict"]
    assert paired_result(report, "rft", "base") is None
    assert any("Base row: the zero-shot model" in n for n in report["notes"])
    md = (folders / "out_base" / "report.md").read_text()
    assert "| base | llm | 0 | – | – | – | – | – | – |" in md  # still a row of the headline table


def test_base_without_ranking_answers_the_retention_probes_only(folders, monkeypatch):
    """rank_base off: the base model still answers MMLU and IFEval (every retention ratio needs it) but is
    asked no recommendation query, so it is no Acc@1 row and no rft:base pair, and the report says so."""
    from rerec.eval.evaluate import EvalConfig, evaluate

    calls = _logged_generation(monkeypatch)
    config = EvalConfig(baselines=["popularity"], max_queries_per_type=1, max_new_tokens=4, batch_size=4,
                        mmlu_max_questions=2, ifeval_max_instructions=1, ifeval_max_new_tokens=4, n_boot=20,
                        n_traces=1, unseen_phrasing_per_type=1, rank_base=False)
    report = evaluate(folders / "data", folders / "graphs", folders / "reward",
                      {"base": folders / "tiny", "rft": folders / "tiny"}, folders / "out_no_base_rank", config)
    assert "base: rank" not in calls and "rft: rank" in calls
    assert report["llm"]["base"]["n_selected"] == 0 and report["llm"]["rft"]["n_generated"] == 4
    assert report["retention"]["models"]["base"]["mmlu_n"] == 2
    assert report["retention"]["models"]["rft"]["mmlu_n"] == 2
    assert not any(r["model"] == "base" for r in report["table"])
    assert [(p["model"], p["reference"]) for p in report["paired"]] == []
    assert any("not asked the recommendation queries" in n for n in report["notes"])
    md = (folders / "out_no_base_rank" / "report.md").read_text()
    assert "| base | llm |" not in md and "| rft | llm |" in md  # no empty headline row; retention keeps it
    assert "| base | 0/0 |" in md  # the generation table says it was asked nothing
    with pytest.raises(ConfigError, match="base is not evaluated here"):
        evaluate(folders / "data", folders / "graphs", folders / "reward",
                 {"base": folders / "tiny", "rft": folders / "tiny"}, folders / "out_no_base_rank2",
                 replace(config, compare=["rft:base"]))


def test_score_query_reads_top_k_items():
    """Boxing every candidate earns Acc@1 of the first item and no recall; top-2 is judged at K = 2 only."""
    from rerec.eval.evaluate import score_query

    query = {"query_id": "q", "type": "explicit", "n_conditions": 1, "positives": ["3"],
             "candidates": ["1", "2", "3", "4"]}
    every = score_query("rft", "llm", query, ["1", "2", "3", "4"], True, [2, 3], 1, 4)
    assert every["acc@1"] == 0.0 and every["n_items"] == 4 and every["top1"] == "1"
    assert all(math.isnan(every[m]) for m in ("ndcg@2", "recall@2", "ndcg@3", "recall@3", "mrr"))
    assert score_query("rft", "llm", query, ["3", "1"], True, [2, 3], 1, 4)["acc@1"] == 1.0
    top2 = score_query("rft", "llm", query, ["1", "3", "2"], True, [2, 3], 2, 4)
    assert top2["acc@1"] == 0.0 and top2["recall@2"] == 1.0 and top2["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert math.isnan(top2["recall@3"]) and math.isnan(top2["mrr"])
    # a baseline ranks every candidate: everything is judged
    full = score_query("pop", "baseline", query, ["4", "1", "3", "2"], True, [2, 3], None, 4)
    assert (full["acc@1"], full["recall@2"], full["recall@3"], full["mrr"]) == (0.0, 0.0, 1.0, pytest.approx(1 / 3))
    # a miss keeps its place: [None, "3"] is wrong at 1
    assert score_query("rft", "llm", query, [None, "3"], True, [2], 1, 4)["acc@1"] == 0.0


def test_paired_differences_by_hand():
    """a - b on the queries both answered: q4 (b did not answer it) is left out."""
    from rerec.eval.evaluate import paired_differences

    df = pd.DataFrame([("a", "q1", "explicit", 1.0), ("a", "q2", "explicit", 1.0), ("a", "q3", "implicit", 0.0),
                       ("a", "q4", "implicit", 1.0), ("b", "q1", "explicit", 0.0), ("b", "q2", "explicit", 1.0),
                       ("b", "q3", "implicit", 1.0)], columns=["model", "query_id", "type", "acc@1"])
    (entry,) = paired_differences(df, [("a", "b")], n_boot=200, seed=0)
    assert entry["model"] == "a" and entry["reference"] == "b" and entry["metric"] == "acc@1"
    assert list(entry["by_type"]) == ["all", "explicit", "implicit"]
    cells = entry["by_type"]
    assert (cells["all"]["diff"], cells["all"]["n"]) == (0.0, 3)  # (+1 + 0 - 1) / 3
    assert (cells["all"]["model_score"], cells["all"]["reference_score"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert (cells["explicit"]["diff"], cells["explicit"]["n"]) == (0.5, 2)
    # the implicit stratum is one query, -1: every draw is -1
    assert cells["implicit"] | {} == {"diff": -1.0, "low": -1.0, "high": -1.0, "n": 1, "separated": True,
                                      "model_score": 0.0, "reference_score": 1.0}
    # overall, stratified by type: explicit draws sum to 0, 1 or 2 (1/4, 1/2, 1/4), implicit always -1,
    # so the mean over 3 queries is -1/3, 0 or +1/3
    assert cells["all"]["low"] == pytest.approx(-1 / 3) and cells["all"]["high"] == pytest.approx(1 / 3)
    assert "not separated" in entry["verdict"]
    (none,) = paired_differences(df, [("a", "c")])
    assert none["by_type"]["all"]["n"] == 0 and none["by_type"]["all"]["diff"] is None
    assert "no query in common" in none["verdict"]


def test_verdict_stays_within_the_interval():
    from rerec.eval.evaluate import verdict

    ahead = verdict("rft", "plain_grpo", {"diff": 0.1, "low": 0.02, "high": 0.18, "n": 60, "separated": True})
    assert ahead == ("rft − plain_grpo: +0.100 Acc@1 on the same 60 queries, 95% interval [+0.020, +0.180]: "
                     "rft is ahead, by 0.020 to 0.180 Acc@1.")
    behind = verdict("rft", "sft", {"diff": -0.1, "low": -0.15, "high": -0.05, "n": 60, "separated": True})
    assert behind.endswith("rft is behind, by 0.050 to 0.150 Acc@1.")
    tie = verdict("rft", "sft", {"diff": 0.05, "low": -0.02, "high": 0.12, "n": 60, "separated": False})
    assert "not separated" in tie and "ahead" not in tie and "behind" not in tie


def test_comparisons_default_and_given():
    from rerec.eval.evaluate import comparisons

    names = ["popularity", "base", "sft", "rft"]
    assert comparisons(None, names) == [("rft", "sft"), ("rft", "base")]
    assert comparisons(None, [*names, "plain_grpo", "champion"]) == [
        ("rft", "plain_grpo"), ("rft", "sft"), ("rft", "base"), ("rft", "champion")]
    assert comparisons(["rft:popularity", "rft:popularity", "sft:base"], names) == [("rft", "popularity"),
                                                                                    ("sft", "base")]
    with pytest.raises(ConfigError, match="champion is not evaluated here"):
        comparisons(["rft:champion"], names)
    for bad in ("rft", "rft:", ":sft", "rft:rft", "a:b:c"):
        with pytest.raises(ConfigError, match="MODEL:REFERENCE"):
            comparisons([bad], names)


def test_retention_against_base_by_hand():
    from rerec.eval.evaluate import retention_against_base

    results = {"base": {"retention": {"mmlu_correct": [True, True, False, False], "ifeval_followed": [True, False]}},
               "sft": {"retention": {"mmlu_correct": [True, True, True, False], "ifeval_followed": [True, True]}},
               "rft": {"retention": {"mmlu_correct": [True, False, False, False], "ifeval_followed": [False, False]}}}
    ret = retention_against_base(results, "base")
    assert (ret["base"]["mmlu_ratio"], ret["base"]["ifeval_ratio"]) == (1.0, 1.0)
    assert (ret["sft"]["mmlu_ratio"], ret["sft"]["ifeval_ratio"]) == (1.5, 2.0)  # (3/4) / (2/4), 1 / (1/2)
    assert (ret["rft"]["mmlu_ratio"], ret["rft"]["ifeval_ratio"]) == (0.5, 0.0)  # against the base, not SFT


def test_aggregate_rows_keeps_only_judged_metrics():
    from rerec.eval.evaluate import aggregate_rows, score_query

    query = {"query_id": "q", "type": "explicit", "n_conditions": 1, "positives": ["3"],
             "candidates": ["1", "2", "3", "4"]}
    rows = [score_query("pop", "baseline", query, ["3", "1", "2", "4"], True, [2], None, 4),
            score_query("rft", "llm", query, ["3", "1"], True, [2], 1, 4)]
    table, by_cond = aggregate_rows(rows, [2], 1, 4, n_boot=10, seed=0)
    keys = {(r["model"], r["type"]): {k for k in r if "_" not in k} for r in table}
    assert keys[("pop", "all")] == {"model", "type", "n", "kind", "acc@1", "ndcg@2", "recall@2", "mrr", "parsed"}
    assert keys[("rft", "all")] == {"model", "type", "n", "kind", "acc@1", "parsed"}
    assert {(r["model"], r["n_conditions"]) for r in by_cond} == {("pop", 1), ("rft", 1)}


def test_config_errors():
    from rerec.eval.evaluate import EvalConfig, _parse_model

    with pytest.raises(ConfigError, match="Unknown baseline"):
        EvalConfig(baselines=["oracle"]).resolved()
    with pytest.raises(ConfigError, match="NAME=PATH"):
        _parse_model("justapath")
    with pytest.raises(ConfigError, match="top_k must be at least 1"):
        EvalConfig(top_k=0).resolved()
    with pytest.raises(ConfigError, match="MODEL:REFERENCE"):
        EvalConfig(compare=["rft-sft"]).resolved()
    assert EvalConfig().resolved().max_new_tokens == 128
    smol = EvalConfig(profile="smollm2").resolved()
    assert smol.n_candidates == 4 and smol.max_queries_per_type == 15
    assert EvalConfig(profile="smollm2", n_candidates=6).resolved().n_candidates == 6
    # the base model: the profile's model, else smollm2, unless given
    assert (smol.base_model, EvalConfig(profile="tiny").resolved().base_model) == ("smollm2", "tiny")
    assert EvalConfig().resolved().base_model == "smollm2"
    assert EvalConfig(profile="tiny", base_model="/models/b").resolved().base_model == "/models/b"


def test_model_named_like_a_baseline_is_refused(folders):
    from rerec.eval.evaluate import EvalConfig, evaluate

    with pytest.raises(ConfigError, match="also baseline names"):
        evaluate(folders / "data", folders / "graphs", folders / "reward", {"popularity": folders / "tiny"},
                 folders / "out_bad", EvalConfig(baselines=["popularity"]))


def test_cli_help_lists_flags(capsys):
    from rerec.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--graphs", "--reward", "--model", "--out", "--max-queries-per-type", "--split",
                 "--base-model", "--base-time-budget-s", "--compare", "--top-k", "--ks"):
        assert flag in text


def test_retention_ratio_on_common_prefix():
    from rerec.eval.evaluate import retention_ratio

    base = [True, False, True, True]  # 0.75 overall, 2/3 on the first three
    assert retention_ratio([True, True, False, True], base) == pytest.approx(1.0)
    assert retention_ratio([True, False, False], base) == pytest.approx((1 / 3) / (2 / 3))
    assert retention_ratio([True], [False, True]) is None
    assert retention_ratio([], base) is None


def test_hybrid_baseline_is_a_row_built_from_the_same_parts(folders):
    """text_lightgcn is one of the default baselines, shares the LightGCN ranker, reads title-less
    descriptions (the choice made on validation), and is skipped with a note (not an error) without a
    reward folder."""
    from rerec.data.load import load_catalog
    from rerec.eval import baselines as B
    from rerec.eval.evaluate import BASELINES, EvalConfig, build_baselines

    assert "text_lightgcn" in EvalConfig().baselines and "text_lightgcn" in BASELINES
    catalog = load_catalog(folders / "data")
    notes: list[str] = []
    out = build_baselines(["lightgcn", "text_match", "text_lightgcn"], catalog, folders / "graphs",
                          folders / "reward", 0, notes)
    hybrid = out["text_lightgcn"]
    assert isinstance(hybrid, B.HybridRanker) and hybrid.weight == B.HYBRID_WEIGHT
    assert hybrid.lightgcn is out["lightgcn"] and not notes
    assert not B.HYBRID_TEXT_TITLES and hybrid.text.descriptions["1"].startswith("A film (1996). Genres: Crime")
    assert out["text_match"].descriptions["1"].startswith("Fargo (1996)")
    query = {**catalog.queries.iloc[0].to_dict(), "candidates": ["1", "2", "3", "4", "5"]}
    assert sorted(hybrid.rank(query)) == ["1", "2", "3", "4", "5"]
    skipped = build_baselines(["text_lightgcn"], catalog, folders / "graphs", None, 0, notes)
    assert skipped == {} and notes == ["text_lightgcn baseline skipped: no reward folder given (--reward)."]


def test_unseen_phrasing_section_by_hand(folders, monkeypatch):
    """Each LLM is asked the evaluated queries again in the held-out phrasing. Here a model answers candidate 1
    to the generated texts ("something like ...") and nothing to anything else: on the 3 explicit test queries
    (q0, q4, q8; positive at 1 only for q0) the reworded ones parse 0 and score 0, the same queries as
    generated parse 1 and score 1/3. The fixture's other types carry conditions the generator never writes
    (no via item), so they are not reworded."""
    from rerec.eval import generate as G
    from rerec.eval.evaluate import EvalConfig, evaluate

    def fake(model, tokenizer, prompts, desc="", **kw):
        texts = ["\\boxed{1}" if "something like" in p else "no idea" for p in prompts]
        return G.GenerationResult(texts, n_new_tokens=len(prompts), seconds=1.0)

    monkeypatch.setattr(G, "generate_completions", fake)
    config = EvalConfig(baselines=["popularity"], retention=False, n_boot=200, n_traces=1)
    out = folders / "out_unseen"
    report = evaluate(folders / "data", folders / "graphs", folders / "reward", {"rft": folders / "tiny"}, out, config)
    unseen = report["unseen_phrasing"]
    assert unseen["n_queries"] == 3
    cells = {(r["model"], r["type"]): r for r in unseen["table"]}
    assert set(cells) == {("base", "explicit"), ("base", "all"), ("rft", "explicit"), ("rft", "all")}
    rft = cells[("rft", "explicit")]
    assert (rft["n"], rft["parsed"], rft["acc@1"]) == (3, 0.0, 0.0)
    assert rft["original_parsed"] == 1.0 and rft["original_acc@1"] == pytest.approx(1 / 3)
    assert report["metrics"]["rft/unseen_phrasing/explicit/parsed"] == 0.0
    rows = pd.read_parquet(out / "per_query_unseen_phrasing.parquet")
    assert sorted(rows["query_id"].unique()) == ["q0", "q4", "q8"]
    assert not rows["text"].str.contains("something like").any() and (rows["completion"] == "no idea").all()
    md = (out / "report.md").read_text()
    assert "## Requests phrased unlike the training templates" in md and "| rft | explicit | 3 | 0.00 | 1.00 |" in md
    # off: no section, no file
    off = evaluate(folders / "data", folders / "graphs", folders / "reward", {"rft": folders / "tiny"},
                   folders / "out_unseen_off", EvalConfig(baselines=["popularity"], retention=False, n_boot=50,
                                                          unseen_phrasing_per_type=0))
    assert off["unseen_phrasing"] == {} and not (folders / "out_unseen_off" / "per_query_unseen_phrasing.parquet").exists()
