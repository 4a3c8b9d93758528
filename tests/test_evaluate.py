"""Batched generation, the LLM ranker, and evaluate() end to end on a small fixture with a tiny
randomly initialised model."""

import json

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
                     "positives": [positive], "candidates": candidates, "history": [candidates[(n + 1) % 5]],
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
    from rerec.eval.evaluate import EvalConfig, evaluate

    torch.set_num_threads(1)
    config = EvalConfig(baselines=["random", "popularity", "lightgcn"], max_queries_per_type=2,
                        max_new_tokens=6, batch_size=4, mmlu_max_questions=4, ifeval_max_instructions=4,
                        ifeval_max_new_tokens=6, n_boot=100, n_traces=1)
    out = folders / "out"
    models = {"base": folders / "tiny", "rerec": folders / "tiny"}
    report = evaluate(folders / "data", folders / "graphs", folders / "reward", models, out, config)

    assert sorted(p.name for p in out.iterdir()) == ["per_query.parquet", "plots", "report.html", "report.json",
                                                       "report.md"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"] == pytest.approx(report["metrics"])
    assert saved["models"] == ["random", "popularity", "lightgcn", "base", "rerec"]
    assert saved["n_queries"] == 8 and saved["n_queries_split"] == 12
    assert saved["n_queries_by_type"] == {t: 2 for t in sorted(TYPES)}
    types = {(r["model"], r["type"]) for r in saved["table"]}
    assert ("lightgcn", "implicit") in types and ("rerec", "all") in types
    base_all = next(r for r in saved["table"] if r["model"] == "base" and r["type"] == "all")
    assert base_all["n"] == 8 and 0 <= base_all["parsed"] <= 1
    pop_all = next(r for r in saved["table"] if r["model"] == "popularity" and r["type"] == "all")
    assert pop_all["parsed"] == 1.0 and pop_all["recall@5"] == 1.0  # 5 candidates, all ranked
    assert {r["n_conditions"] for r in saved["by_conditions"]} == {1, 2}
    ret = saved["retention"]
    assert ret["base_model"] == "base" and ret["models"]["base"]["mmlu_n"] == 4
    assert ret["models"]["rerec"]["ifeval_n"] == 4
    if ret["models"]["base"]["mmlu"]:
        assert ret["models"]["rerec"]["mmlu_ratio"] == pytest.approx(1.0)  # same weights
    assert any("Stratified subset" in n for n in saved["notes"])
    assert set(saved["traces"]) == {"base", "rerec"}
    # safe metric names only
    assert "popularity/implicit/ndcg_at_10" in saved["metrics"]
    assert all("@" not in k for k in saved["metrics"])
    md = (out / "report.md").read_text()
    assert "| popularity | baseline | 2 |" in md and "General-ability retention" in md
    for t in TYPES:
        assert (out / "plots" / f"type_{t}.png").is_file() and f"plots/type_{t}.png" in md
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_base_model_for_retention_only(folders):
    """The validation gate needs the base model's MMLU/IFEval (for the ratio) but not its ranking."""
    from rerec.eval.evaluate import EvalConfig, evaluate

    torch.set_num_threads(1)
    config = EvalConfig(baselines=["popularity"], max_queries_per_type=1, max_new_tokens=4, batch_size=4,
                        mmlu_max_questions=2, ifeval_max_instructions=2, ifeval_max_new_tokens=4, n_boot=20,
                        n_traces=1, benchmark_base=False)
    report = evaluate(folders / "data", folders / "graphs", folders / "reward",
                      {"sft": folders / "tiny", "rft": folders / "tiny"}, folders / "out_gate", config)
    assert {r["model"] for r in report["table"]} == {"popularity", "rft"}  # no ranking rows for the base
    assert report["llm"]["sft"]["n_selected"] == 0 and report["llm"]["rft"]["n_selected"] == 4
    assert report["retention"]["models"]["rft"]["mmlu_n"] == 2  # the ratio still has its reference
    assert "mmlu_ratio" in report["retention"]["models"]["rft"]
    assert any("retention only" in n for n in report["notes"])


def test_config_errors():
    from rerec.eval.evaluate import EvalConfig, _parse_model

    with pytest.raises(ConfigError, match="Unknown baseline"):
        EvalConfig(baselines=["oracle"]).resolved()
    with pytest.raises(ConfigError, match="NAME=PATH"):
        _parse_model("justapath")
    assert EvalConfig().resolved().max_new_tokens == 128
    smol = EvalConfig(profile="smollm2").resolved()
    assert smol.n_candidates == 4 and smol.max_queries_per_type == 15
    assert EvalConfig(profile="smollm2", n_candidates=6).resolved().n_candidates == 6


def test_cli_help_lists_flags(capsys):
    from rerec.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--graphs", "--reward", "--model", "--out", "--max-queries-per-type", "--split"):
        assert flag in text


def test_retention_ratio_on_common_prefix():
    from rerec.eval.evaluate import retention_ratio

    base = [True, False, True, True]  # 0.75 overall, 2/3 on the first three
    assert retention_ratio([True, True, False, True], base) == pytest.approx(1.0)
    assert retention_ratio([True, False, False], base) == pytest.approx((1 / 3) / (2 / 3))
    assert retention_ratio([True], [False, True]) is None
    assert retention_ratio([], base) is None
