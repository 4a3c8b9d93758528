"""Evaluate: the recommendation benchmark per query type against baselines, and general-ability
retention (knowledge on MMLU, instruction following on IFEval-style checks) against the base model.

Inputs: a prepared data folder (queries with splits), the graphs folder (training interaction graph,
for popularity), the reward folder (LightGCN embeddings), and any number of models ``NAME=PATH``
(base zero-shot, SFT only, plain GRPO, ReRec — whichever were given). Output folder::

    report.json   every number: table per model x query type, per number of conditions, retention
    report.md     what a reviewer reads (also logged to MLflow)
    report.html   the same with the figures embedded
    plots/        a bar chart per query type, retention

Baselines rank every query of the split; an LLM ranks a stratified subset (``max_queries_per_type``
per type, seeded) when the full split would not fit its time budget on a CPU, and the baselines are
then scored on the same subset so the rows compare. The subset and how many answers each LLM
generated within its budget are stated in the report.

    rerec evaluate --data prepared/ --graphs graphs/ --reward reward/ \\
        --model base=smollm2 --model rerec=rft_out/ --profile smollm2 --out eval/
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rerec.config import add_dataclass_arguments, dataclass_from_args
from rerec.data.schema import decode_conditions
from rerec.errors import ConfigError, InputError
from rerec.eval import metrics as M
from rerec.io import atomic_dir, write_json
from rerec.tracking import safe_metric_name, stage_run

log = logging.getLogger(__name__)

STAGE = "evaluate"
BASELINES = ("random", "popularity", "lightgcn", "text_match")


@dataclass
class EvalConfig:
    """Evaluation settings. Fields left at ``None`` come from ``profile`` (:mod:`rerec.models.profiles`),
    else from the built-in default in their help."""

    # --- what is evaluated
    split: str = field(default="test", metadata={"help": "Query split to evaluate: 'test' (report) or 'val'.",
                                                 "choices": ["test", "val"]})
    baselines: list[str] = field(default_factory=lambda: list(BASELINES),
                                 metadata={"help": f"Baselines to run, of {', '.join(BASELINES)}."})
    base_model: str = field(default="", metadata={
        "help": "Name of the model that retention is measured against (default: 'base' if given, else the first)."})
    profile: str = field(default="", metadata={"help": "Model profile for prompt and budget defaults "
                                                         "(tiny, smollm2, paper); empty: built-in defaults."})
    # --- ranking metrics
    ks: list[int] = field(default_factory=lambda: [5, 10], metadata={"help": "K of NDCG@K and Recall@K."})
    n_boot: int = field(default=1000, metadata={"help": "Bootstrap resamples for confidence intervals."})
    seed: int = field(default=0, metadata={"help": "Seed of the random baseline, the subset and the bootstrap."})
    # --- prompts (as in training)
    mode: str | None = field(default=None, metadata={"help": "Prompt context mode, 'evidence' or 'titles' "
                                                                "(default: evidence)."})
    n_candidates: int | None = field(default=None, metadata={
        "help": "Candidates shown per query, shrunk as in training (0 = all; default 0)."})
    max_history: int | None = field(default=None, metadata={"help": "History titles per prompt (default 5)."})
    max_prompt_tokens: int | None = field(default=None, metadata={"help": "Prompt token limit (default 768)."})
    # --- LLM budget (one model must finish within 10 minutes on a 2-core CPU)
    max_queries_per_type: int | None = field(default=None, metadata={
        "help": "Stratified subset: at most this many queries per type (0 = the whole split; default 0)."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Tokens generated per answer (default 128)."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generation batch (SmolLM2 on 2 CPU cores: "
                                                         "32 gave 1.7x the tokens/s of 8)."})
    model_time_budget_s: float = field(default=540.0, metadata={
        "help": "Seconds per model in all (loading, ranking, MMLU, IFEval); each part also has its own cap."})
    rec_time_budget_s: float = field(default=300.0, metadata={
        "help": "Seconds of recommendation generation per model; queries not reached are reported."})
    # --- general-ability retention
    benchmark_base: bool = field(default=True, metadata={
        "help": "Rank the queries with the base model too (false: the base model is measured for retention only, "
                "as the validation gate needs; it compares the challenger with the champion's recorded metric)."})
    retention: bool = field(default=True, metadata={"help": "Measure MMLU and IFEval retention of each LLM."})
    mmlu_max_questions: int = field(default=114, metadata={"help": "MMLU questions (subject-balanced; 0 = 282)."})
    mmlu_time_budget_s: float = field(default=60.0, metadata={"help": "Seconds of MMLU scoring per model."})
    ifeval_max_instructions: int = field(default=144, metadata={"help": "IFEval-style instructions (max 144)."})
    ifeval_max_new_tokens: int = field(default=80, metadata={"help": "Tokens generated per instruction."})
    ifeval_time_budget_s: float = field(default=180.0, metadata={"help": "Seconds of IFEval generation per model."})
    # --- report
    n_traces: int = field(default=3, metadata={"help": "Best and worst reasoning traces shown per LLM."})

    def resolved(self) -> EvalConfig:
        """A copy with every ``None`` filled from the profile or the built-in default."""
        defaults: dict[str, Any] = {"mode": "evidence", "n_candidates": 0, "max_history": 5,
                                    "max_prompt_tokens": 768, "max_queries_per_type": 0, "max_new_tokens": 128}
        if self.profile:
            from rerec.models.profiles import get_profile

            p = get_profile(self.profile)
            defaults.update(mode=p.context_mode, n_candidates=p.n_candidates, max_history=p.max_history,
                            max_prompt_tokens=p.max_prompt_tokens, max_new_tokens=p.max_completion_tokens,
                            max_queries_per_type=math.ceil(p.eval_queries / 4) if p.eval_queries else 0)
        values = asdict(self)
        for key, default in defaults.items():
            if values[key] is None:
                values[key] = default
        unknown = sorted(set(values["baselines"]) - set(BASELINES))
        if unknown:
            raise ConfigError(f"Unknown baseline(s) {', '.join(unknown)}. Fix: use some of {', '.join(BASELINES)}.")
        return EvalConfig(**values)


# ---------------------------------------------------------------- queries
def n_conditions(query: dict) -> int:
    value = query.get("n_conditions")
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        return int(value)
    return len(decode_conditions(query.get("conditions") or []))


def stratified_subset(queries: pd.DataFrame, per_type: int, seed: int) -> pd.DataFrame:
    """At most ``per_type`` queries of each type, drawn with a seeded generator, in stored order."""
    if per_type <= 0:
        return queries
    rng = np.random.default_rng(seed)
    keep = []
    for _, group in queries.groupby("type", sort=True):
        idx = group.index.to_numpy()
        keep.extend(idx if len(idx) <= per_type else rng.choice(idx, size=per_type, replace=False))
    return queries.loc[sorted(keep, key=queries.index.get_loc)]


def _records(queries: pd.DataFrame) -> list[dict]:
    out = []
    for row in queries.to_dict("records"):
        for key in ("candidates", "positives", "history"):
            if key in row and row[key] is not None and not isinstance(row[key], float):
                row[key] = [str(x) for x in row[key]]
        row["n_conditions"] = n_conditions(row)
        out.append(row)
    return out


# ---------------------------------------------------------------- rankers
def build_baselines(names: list[str], catalog: Any, graphs_dir: Path, reward_dir: Path | None,
                    seed: int, notes: list[str]) -> dict[str, Any]:
    from rerec.eval import baselines as B

    out: dict[str, Any] = {}
    popularity = None
    if {"popularity", "lightgcn"} & set(names):
        from rerec.graphs.interaction import InteractionGraph

        popularity = B.PopularityRanker.from_graph(InteractionGraph.load(graphs_dir))
    for name in names:
        if name == "random":
            out[name] = B.RandomRanker(seed)
        elif name == "popularity":
            out[name] = popularity
        elif name == "lightgcn":
            if reward_dir is None:
                notes.append("LightGCN baseline skipped: no reward folder given (--reward).")
                continue
            out[name] = B.LightGCNRanker.from_reward_dir(reward_dir, popularity)
        elif name == "text_match":
            from rerec.reward.embedder import TextEmbedder

            out[name] = B.TextMatchRanker(B.describe_items(catalog.items, catalog.item_attributes),
                                          TextEmbedder().encode)
    return out


def _row(model: str, kind: str, query: dict, ranked: list, parsed: bool, ks: list[int]) -> dict:
    return {"model": model, "kind": kind, "query_id": str(query["query_id"]), "type": query["type"],
            "n_conditions": query["n_conditions"], **M.query_metrics(ranked, query["positives"], ks, parsed)}


def _pick_base(names: list[str], requested: str) -> str | None:
    if requested:
        if requested not in names:
            raise ConfigError(f"--base-model '{requested}' is not one of the models given ({', '.join(names)}). "
                              "Fix: name one of them, or leave it empty.")
        return requested
    if "base" in names:
        return "base"
    return names[0] if names else None


def _traces(model: str, queries: list[dict], answers: list, rows: list[dict], view: Any, n: int) -> dict:
    """The best and worst answered queries (by NDCG, then Acc@1), with their completions."""
    scored = [(r, q, a) for r, q, a in zip(rows, queries, answers, strict=True) if a.completion is not None]
    key = [k for k in rows[0] if k.startswith("ndcg@")][-1] if rows else "acc@1"
    scored.sort(key=lambda t: (t[0][key], t[0]["acc@1"]), reverse=True)

    def show(r: dict, q: dict, a: Any) -> dict:
        return {"query_id": r["query_id"], "type": r["type"], "request": str(q["text"]),
                "positives": [view.title(p) for p in q["positives"]],
                "answered": [view.title(i) if i is not None else "(no candidate)" for i in a.ranked], "acc@1": r["acc@1"], "parsed": a.parsed,
                "completion": a.completion}

    best = [show(*t) for t in scored[:n]]
    worst = [show(*t) for t in scored[::-1][:n] if t[0]["query_id"] not in {b["query_id"] for b in best}]
    return {"best": best, "worst": worst}


def evaluate_llm(name: str, path: Path, queries: list[dict], view: Any, config: EvalConfig,
                 rank: bool = True) -> dict:
    """Rank ``queries`` with one model (unless ``rank`` is false) and measure its retention. Returns rows,
    traces and stats."""
    import torch

    from rerec.eval.generate import LLMRanker, generate_chat
    from rerec.models.loading import load_model

    start = time.perf_counter()

    def budget(cap: float) -> float:
        """A part's seconds: its own cap, within what is left of the model's budget."""
        return max(0.0, min(cap, config.model_time_budget_s - (time.perf_counter() - start)))

    torch.manual_seed(config.seed)
    model, tokenizer = load_model(str(path))
    ranker = LLMRanker(name, model, tokenizer, view, mode=config.mode, max_history=config.max_history,
                       max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                       max_prompt_tokens=config.max_prompt_tokens or None)
    queries = queries if rank else []
    answers = ranker.rank_all(queries, time_budget_s=budget(config.rec_time_budget_s)) if queries else []
    done = [(q, a) for q, a in zip(queries, answers, strict=True) if a.completion is not None]
    rows = [_row(name, "llm", q, a.ranked, a.parsed, config.ks) for q, a in done]
    stats = {"n_selected": len(queries), "n_generated": 0, "new_tokens": 0, "tokens_per_second": 0.0,
             "generation_s": 0.0, "budget_exhausted": False}
    if queries:
        gen = ranker.last_generation
        stats.update(n_generated=gen.n_generated, new_tokens=gen.n_new_tokens,
                     tokens_per_second=round(gen.tokens_per_second, 2), generation_s=round(gen.seconds, 1),
                     budget_exhausted=gen.budget_exhausted)
    retention: dict[str, Any] = {}
    if config.retention:
        from rerec.eval.ifeval import build_instructions, score_responses
        from rerec.eval.mmlu import load_mmlu_questions, score_mmlu, select_questions

        questions = select_questions(load_mmlu_questions(), config.mmlu_max_questions or None)
        mmlu = score_mmlu(model, tokenizer, questions, batch_size=config.batch_size,
                          max_prompt_tokens=config.max_prompt_tokens or 768, desc=f"{name}: mmlu",
                          time_budget_s=budget(config.mmlu_time_budget_s))
        instructions = build_instructions(config.ifeval_max_instructions or None)
        out = generate_chat(model, tokenizer, [i.prompt for i in instructions],
                            max_new_tokens=config.ifeval_max_new_tokens, batch_size=config.batch_size,
                            time_budget_s=budget(config.ifeval_time_budget_s), desc=f"{name}: ifeval")
        answered = [(i, c) for i, c in zip(instructions, out.completions, strict=True) if c is not None]
        ifeval = score_responses([i for i, _ in answered], [c for _, c in answered])
        retention = {"mmlu": mmlu["accuracy"], "mmlu_n": mmlu["n"], "mmlu_planned": len(questions),
                     "mmlu_chance": mmlu["chance"], "ifeval": ifeval["accuracy"], "ifeval_n": ifeval["n"],
                     "ifeval_planned": len(instructions),
                     "mmlu_correct": [p == q.answer for p, q in zip(mmlu["predictions"], questions, strict=False)],
                     "ifeval_followed": ifeval["followed"],
                     "ifeval_per_checker": ifeval["per_checker"]}
    stats["seconds"] = round(time.perf_counter() - start, 1)
    traces = _traces(name, [q for q, _ in done], [a for _, a in done], rows, view, config.n_traces)
    del model
    return {"rows": rows, "stats": stats, "retention": retention, "traces": traces}


# ---------------------------------------------------------------- the stage
def _aggregate(rows: list[dict], config: EvalConfig) -> tuple[list[dict], list[dict]]:
    if not rows:
        return [], []
    df = pd.DataFrame(rows)
    names = M.metric_names(config.ks)
    by_type = M.aggregate(df, ["model", "type"], names, n_boot=config.n_boot, seed=config.seed)
    overall = M.aggregate(df.assign(type="all"), ["model", "type"], names, n_boot=config.n_boot, seed=config.seed)
    by_cond = M.aggregate(df, ["model", "n_conditions"], names, n_boot=config.n_boot, seed=config.seed)
    kinds = dict(zip(df["model"], df["kind"], strict=False))
    for r in by_type + overall + by_cond:
        r["kind"] = kinds[r["model"]]
    return by_type + overall, by_cond


def retention_ratio(model: list[bool], base: list[bool]) -> float | None:
    """Model score / base score on the questions both answered (a prefix of one fixed order, since a
    time budget may stop either early); None when the base scores 0 there."""
    n = min(len(model), len(base))
    if n == 0 or not any(base[:n]):
        return None
    return (sum(model[:n]) / n) / (sum(base[:n]) / n)


def flat_metrics(report: dict) -> dict[str, float]:
    """MLflow metrics with safe names: ``<model>/<type>/ndcg_at_10``, ``<model>/retention/mmlu_ratio``."""
    out: dict[str, float] = {}
    names = M.metric_names(report["ks"])
    for row in report["table"]:
        for m in names:
            out[safe_metric_name(f"{row['model']}/{row['type']}/{m}")] = row[m]
    for row in report["by_conditions"]:
        out[safe_metric_name(f"{row['model']}/conditions_{row['n_conditions']}/acc@1")] = row["acc@1"]
    for model, ret in report["retention"].get("models", {}).items():
        for key in ("mmlu", "ifeval", "mmlu_ratio", "ifeval_ratio"):
            if ret.get(key) is not None:
                out[safe_metric_name(f"{model}/retention/{key}")] = ret[key]
    return {k: float(v) for k, v in out.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def evaluate(data_dir: str | Path, graphs_dir: str | Path, reward_dir: str | Path | None,
             models: dict[str, Path], out_dir: str | Path, config: EvalConfig | None = None) -> dict:
    """Run the benchmark and retention; write the report folder atomically. Returns report.json's dict."""
    from rerec.data.load import load_catalog
    from rerec.eval.report import write_report
    from rerec.prompt import CatalogView, shrink_candidates

    config = (config or EvalConfig()).resolved()
    catalog = load_catalog(Path(data_dir))
    if catalog.queries is None or not len(catalog.queries):
        raise InputError("the data folder has no queries", file=str(Path(data_dir) / "queries.parquet"),
                         fix="point --data to the folder written by 'rerec prepare-data'")
    split = catalog.queries[catalog.queries["split"] == config.split].reset_index(drop=True)
    if split.empty:
        raise InputError(f"no queries in split '{config.split}'", file=str(Path(data_dir) / "queries.parquet"),
                         column="split", fix="use --split val or test, or regenerate the queries")
    notes: list[str] = []
    view = CatalogView.from_catalog(catalog)
    selected = stratified_subset(split, config.max_queries_per_type, config.seed)
    queries = _records(selected)
    if config.n_candidates:
        queries = [shrink_candidates(q, config.n_candidates, view, seed=config.seed) for q in queries]
    if len(selected) < len(split):
        notes.append(f"Stratified subset: at most {config.max_queries_per_type} queries per type "
                     f"(seed {config.seed}), {len(selected)} of the {len(split)} {config.split} queries; "
                     "baselines are scored on the same subset.")
    if config.n_candidates:
        notes.append(f"Candidates shrunk to {config.n_candidates} per query (positives plus hardest "
                     "negatives), as in training.")

    with stage_run(STAGE, config, tags={"rerec.models": ",".join(models)}) as tracker:
        rows: list[dict] = []
        baselines = build_baselines(list(config.baselines), catalog, Path(graphs_dir),
                                    Path(reward_dir) if reward_dir else None, config.seed, notes)
        for name, ranker in baselines.items():
            if hasattr(ranker, "precompute"):
                ranker.precompute(queries)
            rows += [_row(name, "baseline", q, ranker.rank(q), True, config.ks)
                     for q in tqdm(queries, desc=f"{name}: rank", unit="query")]
        if "lightgcn" in baselines and baselines["lightgcn"].n_fallback:
            n = baselines["lightgcn"].n_fallback
            notes.append(f"LightGCN: {n} {'query' if n == 1 else 'queries'} of users without an embedding "
                         "ranked by popularity.")
        llm: dict[str, dict] = {}
        base = _pick_base(list(models), config.base_model)
        for name, path in models.items():
            rank = config.benchmark_base or name != base or len(models) == 1
            result = evaluate_llm(name, Path(path), queries, view, config, rank=rank)
            if not rank:
                notes.append(f"{name}: measured for retention only (benchmark_base=false).")
            rows += result["rows"]
            llm[name] = result
            if result["stats"]["budget_exhausted"]:
                notes.append(f"{name}: the time budget ran out after {result['stats']['n_generated']} of "
                             f"{len(queries)} queries; its rows cover those only.")
        table, by_conditions = _aggregate(rows, config)
        retention_models = {}
        for name, result in llm.items():
            ret = dict(result["retention"])
            if ret and base is not None:
                ref = llm[base]["retention"]
                for key, items in (("mmlu", "mmlu_correct"), ("ifeval", "ifeval_followed")):
                    ret[f"{key}_ratio"] = retention_ratio(ret[items], ref[items])
            retention_models[name] = ret
        report = {
            "split": config.split,
            "n_queries_split": len(split),
            "n_queries": len(queries),
            "n_queries_by_type": {str(k): int(v) for k, v in selected["type"].value_counts().sort_index().items()},
            "ks": list(config.ks),
            "models": [*baselines, *llm],
            "kinds": {**{b: "baseline" for b in baselines}, **{m: "llm" for m in llm}},
            "table": table,
            "by_conditions": by_conditions,
            "llm": {name: r["stats"] for name, r in llm.items()},
            "retention": {"base_model": base, "models": retention_models} if config.retention and llm else {},
            "traces": {name: r["traces"] for name, r in llm.items()},
            "notes": notes,
            "config": asdict(config),
        }
        report["metrics"] = flat_metrics(report)
        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / "report.json", report)
            write_report(report, tmp)
            pd.DataFrame(rows).to_parquet(tmp / "per_query.parquet", index=False)
        tracker.log_metrics(report["metrics"])
        tracker.log_artifact(out_dir, artifact_path="evaluation")
    return report


def _parse_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--model '{text}' is not NAME=PATH. Fix: e.g. --model base=smollm2 --model rerec=out/rft.")
    return name, Path(path)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="Prepared data folder (prepare-data).")
    parser.add_argument("--graphs", required=True, type=Path, help="Graphs folder (build-graphs).")
    parser.add_argument("--reward", type=Path, default=None, help="Reward folder (train-reward-gnn).")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="A model to evaluate (repeatable): a folder, 'smollm2' or 'tiny'.")
    parser.add_argument("--out", required=True, type=Path, help="Output folder for the report.")
    add_dataclass_arguments(parser, EvalConfig)


def cli_main(args: argparse.Namespace) -> int:
    models = dict(_parse_model(m) for m in args.model)
    if len(models) != len(args.model):
        raise ConfigError("Two --model flags share a name. Fix: give each model its own NAME.")
    report = evaluate(args.data, args.graphs, args.reward, models, args.out, dataclass_from_args(EvalConfig, args))
    print(f"Evaluation report written to {args.out / 'report.md'}")
    for row in report["table"]:
        if row["type"] == "all":
            print(f"  {row['model']:<14} acc@1 {row['acc@1']:.3f}  parse rate {row['parsed']:.2f}  (n={row['n']})")
    return 0
