"""Evaluate: the recommendation benchmark per query type against baselines, paired differences between
models on the same queries, and general-ability retention (knowledge on MMLU, instruction following on
IFEval-style checks) against the zero-shot base model.

Inputs: a prepared data folder (queries with splits), the graphs folder (training interaction graph,
for popularity), the reward folder (LightGCN embeddings), and any number of models ``NAME=PATH`` (SFT
only, ReRec ``rft``, ``plain_grpo``, ``champion`` - whichever were given). The zero-shot base model is
always a row: the stage loads it from ``EvalConfig.base_model`` (default: the profile's model) unless a
model named ``base`` is passed; every LLM's retention ratio is against it. Output folder::

    report.json       every number (keys documented in docs/evaluation.md)
    report.md         what a reviewer reads (also logged to MLflow)
    report.html       the same with the figures embedded
    per_query.parquet one row per (model, query): the scores behind every mean and paired difference
    plots/            Acc@1 per query type, paired differences, retention

Baselines rank every query of the split; an LLM ranks a stratified subset (``max_queries_per_type``
per type, seeded) when the full split would not fit its time budget on a CPU, and the baselines are
then scored on the same subset so the rows compare. The subset and how many answers each LLM
generated within its budget are stated in the report.

    rerec evaluate --data prepared/ --graphs graphs/ --reward reward/ \\
        --model sft=sft_out/ --model rft=rft_out/ --profile smollm2 --out eval/
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Mapping, Sequence
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
BASELINES = ("random", "popularity", "lightgcn", "text_match", "text_lightgcn")
BASE = "base"  # the zero-shot base model's row
DEFAULT_BASE_MODEL = "smollm2"
HEADLINE = "acc@1"  # the metric every row is compared on, and the one paired differences use
DEFAULT_COMPARE = ("rft:plain_grpo", "rft:sft", "rft:base", "rft:champion")


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
        "help": "The zero-shot base model, always a row and the reference of every retention ratio: 'smollm2', "
                "'tiny', a model folder or a hub id (default: the profile's model, else smollm2). A model passed "
                "as --model base=PATH is used instead."})
    profile: str = field(default="", metadata={"help": "Model profile for prompt and budget defaults "
                                                         "(tiny, smollm2, paper); empty: built-in defaults."})
    # --- scoring
    top_k: int = field(default=1, metadata={
        "help": "Answer items read from each LLM answer, the reward's top_k: Acc@1 reads the first, items "
                "beyond top_k earn nothing, and NDCG@K/Recall@K are reported for an LLM only at K <= top_k."})
    ks: list[int] | None = field(default=None, metadata={
        "help": "K of NDCG@K and Recall@K; any K >= the candidates shown is dropped, as a full ranking scores "
                "Recall@K = 1 there (default: 5 and 10 above 10 candidates, else the two largest of 2, 3, 5 "
                "below the count)."})
    compare: list[str] | None = field(default=None, metadata={
        "help": "Paired Acc@1 differences MODEL:REFERENCE on the same queries, with bootstrap intervals "
                "(default: rft:plain_grpo, rft:sft, rft:base, rft:champion, each where both were evaluated; "
                "a pair given here must name evaluated models)."})
    n_boot: int = field(default=M.PAIRED_N_BOOT, metadata={
        "help": "Bootstrap resamples for confidence intervals and the paired differences (the gate's default too)."})
    seed: int = field(default=0, metadata={"help": "Seed of the random baseline, the subset and the bootstrap."})
    # --- prompts (as in training)
    context_mode: str | None = field(default=None, metadata={"help": "Prompt context mode, 'evidence' or 'titles' "
                                                                        "(default: evidence).", "old_names": ("mode",)})
    n_candidates: int | None = field(default=None, metadata={
        "help": "Candidates shown per query, shrunk as in training (0 = all; default 0)."})
    max_history: int | None = field(default=None, metadata={"help": "History titles per prompt (default 5)."})
    taste_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's taste rank for the user (rerec.taste; needs --reward; default: the "
                "profile's, else off)."})
    decade_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's decade beside its year (\"Dumbo (1941) - 1940s; ...\"; default: the "
                "profile's, else off)."})
    max_prompt_tokens: int | None = field(default=None, metadata={"help": "Prompt token limit (default 768)."})
    # --- LLM budget (one model must finish within 10 minutes on a 2-core CPU)
    max_queries_per_type: int | None = field(default=None, metadata={
        "help": "Stratified subset: at most this many queries per type (0 = the whole split; default 0)."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Tokens generated per answer (default 128)."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generation batch (larger batches generate "
                                                         "more tokens per second, at more memory)."})
    model_time_budget_s: float = field(default=540.0, metadata={
        "help": "Seconds per model in all (loading, ranking, MMLU, IFEval); each part also has its own cap."})
    rank_base: bool = field(default=True, metadata={
        "help": "Ask the zero-shot base model the recommendation queries too (off: it answers the retention probes "
                "only, as the reference of every retention ratio; it is then no Acc@1 row and no rft:base pair)."})
    base_time_budget_s: float | None = field(default=None, metadata={
        "help": "Seconds for the base model in all (default: model_time_budget_s); its parts keep their caps."})
    rec_time_budget_s: float = field(default=300.0, metadata={
        "help": "Seconds of recommendation generation per model; queries not reached are reported."})
    # --- requests phrased unlike the training templates
    unseen_phrasing_per_type: int = field(default=10, metadata={
        "help": "Evaluated queries per type asked again in the held-out phrasing (rerec.data.phrasing, family "
                "'heldout', which no training text uses); the report gives each LLM's parse rate and Acc@1 on "
                "them beside the same queries as generated (0 = off)."})
    unseen_time_budget_s: float = field(default=60.0, metadata={
        "help": "Seconds of generation per model for the unseen-phrasing queries (within the model's budget)."})
    # --- general-ability retention
    retention: bool = field(default=True, metadata={"help": "Measure MMLU and IFEval retention of each LLM."})
    mmlu_max_questions: int = field(default=114, metadata={"help": "MMLU questions (subject-balanced; 0 = 282)."})
    mmlu_time_budget_s: float = field(default=60.0, metadata={"help": "Seconds of MMLU scoring per model."})
    ifeval_max_instructions: int = field(default=144, metadata={"help": "IFEval-style instructions (max 144)."})
    ifeval_max_new_tokens: int = field(default=80, metadata={"help": "Tokens generated per instruction."})
    ifeval_time_budget_s: float = field(default=180.0, metadata={"help": "Seconds of IFEval generation per model."})
    # --- report
    n_traces: int = field(default=3, metadata={"help": "Best and worst reasoning traces shown per LLM."})
    precision: str = field(default="auto", metadata={
        "help": "Weights while generating and scoring: bf16, fp32, or auto (bf16 where the processor computes it "
                "natively; env REREC_PRECISION applies when this is auto).", "choices": ["auto", "bf16", "fp32"]})

    def resolved(self) -> EvalConfig:
        """A copy with every ``None`` filled from the profile or the built-in default (``ks`` and ``compare``
        stay ``None``: they depend on the candidates shown and the models given)."""
        defaults: dict[str, Any] = {"context_mode": "evidence", "n_candidates": 0, "max_history": 5,
                                    "max_prompt_tokens": 768, "max_queries_per_type": 0, "max_new_tokens": 128,
                                    "taste_evidence": False, "decade_evidence": False}
        base_model = DEFAULT_BASE_MODEL
        if self.profile:
            from rerec.models.profiles import get_profile

            p = get_profile(self.profile)
            base_model = p.model
            defaults.update(context_mode=p.context_mode, n_candidates=p.n_candidates, max_history=p.max_history,
                            taste_evidence=p.taste_evidence, decade_evidence=p.decade_evidence,
                            max_prompt_tokens=p.max_prompt_tokens, max_new_tokens=p.max_new_tokens,
                            max_queries_per_type=math.ceil(p.eval_queries / 4) if p.eval_queries else 0)
        values = asdict(self)
        for key, default in defaults.items():
            if values[key] is None:
                values[key] = default
        values["base_model"] = values["base_model"] or base_model
        unknown = sorted(set(values["baselines"]) - set(BASELINES))
        if unknown:
            raise ConfigError(f"Unknown baseline(s) {', '.join(unknown)}. Fix: use some of {', '.join(BASELINES)}.")
        if values["top_k"] < 1:
            raise ConfigError(f"top_k must be at least 1, got {values['top_k']}. Fix: use the reward's top_k "
                              "(1 for top-1 answers).")
        for name in ("model_time_budget_s", "base_time_budget_s", "rec_time_budget_s"):
            if values[name] is not None and values[name] < 0:
                raise ConfigError(f"{name} must not be negative, got {values[name]}. Fix: use a number of seconds.")
        for text in values["compare"] or []:
            _parse_pair(text)
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


def unseen_phrasing(queries: list[dict], titles: Mapping[str, str], per_type: int, seed: int) -> list[dict]:
    """At most ``per_type`` of the evaluated ``queries`` per type (a seeded draw, in their order), each with its
    request reworded in the held-out family (:func:`rerec.data.phrasing.reword_request`, seeded per query)
    and the generated text kept as ``original_text``; the candidates, positives and user stay as they are.
    Queries whose conditions the rewording does not cover are left out."""
    import zlib

    from rerec.data.phrasing import reword_request

    if per_type <= 0:
        return []
    rng = np.random.default_rng([seed, 0x5EE])
    out = []
    for qtype in sorted({q["type"] for q in queries}):
        group = [q for q in queries if q["type"] == qtype]
        keep = sorted(rng.choice(len(group), size=min(per_type, len(group)), replace=False).tolist())
        for q in (group[i] for i in keep):
            text = reword_request(qtype, decode_conditions(q.get("conditions") or []), titles, "heldout",
                                  np.random.default_rng([seed, zlib.crc32(str(q["query_id"]).encode())]))
            if text:
                out.append({**q, "text": text, "original_text": q["text"]})
    return out


def unseen_summary(unseen_rows: list[dict], rows: list[dict], n_boot: int, seed: int) -> dict:
    """Per LLM and query type (plus "all"): parse rate and Acc@1 [95% interval] on the reworded queries, and
    the same model's parse rate and Acc@1 on those same queries as generated (``original_*``)."""
    if not unseen_rows:
        return {}
    df = pd.DataFrame(unseen_rows)
    original = pd.DataFrame(rows)
    table = []
    for group in (df, df.assign(type="all")):
        for row in M.aggregate(group, ["model", "type"], [HEADLINE, "parsed"], n_boot=n_boot, seed=seed):
            ids = set(group[(group["model"] == row["model"]) & (group["type"] == row["type"])]["query_id"])
            same = original[(original["model"] == row["model"]) & original["query_id"].isin(ids)]
            row["original_acc@1"] = float(same[HEADLINE].mean()) if len(same) else None
            row["original_parsed"] = float(same["parsed"].mean()) if len(same) else None
            table.append(row)
    return {"n_queries": int(df["query_id"].nunique()), "table": table}


def query_records(queries: pd.DataFrame) -> list[dict]:
    """Rows of a queries table as the rankers take them: one dict per query, its candidate, positive and
    history ids as strings, with ``n_conditions``. The evaluation, bench/serve.py and
    experiments/serve_agreement.py read queries through it."""
    out = []
    for row in queries.to_dict("records"):
        for key in ("candidates", "positives", "history"):
            if key in row and row[key] is not None and not isinstance(row[key], float):
                row[key] = [str(x) for x in row[key]]
        row["n_conditions"] = n_conditions(row)
        out.append(row)
    return out


_records = query_records  # the old private name, for scripts written before it was public


# ---------------------------------------------------------------- rankers
def build_baselines(names: list[str], catalog: Any, graphs_dir: Path, reward_dir: Path | None,
                    seed: int, notes: list[str]) -> dict[str, Any]:
    from rerec.eval import baselines as B

    out: dict[str, Any] = {}
    popularity = lightgcn = text_match = None
    if {"popularity", "lightgcn", "text_lightgcn"} & set(names):
        from rerec.graphs.interaction import InteractionGraph

        popularity = B.PopularityRanker.from_graph(InteractionGraph.load(graphs_dir))
    if {"lightgcn", "text_lightgcn"} & set(names) and reward_dir is not None:
        lightgcn = B.LightGCNRanker.from_reward_dir(reward_dir, popularity)
    if {"text_match", "text_lightgcn"} & set(names):
        from rerec.reward.embedder import TextEmbedder

        encode = TextEmbedder().encode
        text_match = B.TextMatchRanker(B.describe_items(catalog.items, catalog.item_attributes), encode)
    for name in names:
        if name == "random":
            out[name] = B.RandomRanker(seed)
        elif name == "popularity":
            out[name] = popularity
        elif name in ("lightgcn", "text_lightgcn") and lightgcn is None:
            notes.append(f"{name} baseline skipped: no reward folder given (--reward).")
        elif name == "lightgcn":
            out[name] = lightgcn
        elif name == "text_match":
            out[name] = text_match
        elif name == "text_lightgcn":
            text = text_match if B.HYBRID_TEXT_TITLES else B.TextMatchRanker(
                B.describe_items(catalog.items, catalog.item_attributes, with_title=False), encode)
            out[name] = B.HybridRanker(text, lightgcn)
    return out


def score_query(model: str, kind: str, query: Mapping, ranked: Sequence[str | None], parsed: bool,
                ks: Sequence[int], depth: int | None, n_candidates: int) -> dict:
    """One per-query record: the query's keys, ``n_items`` (items the ranker listed), ``top1`` and every
    metric of :func:`rerec.eval.metrics.query_metrics` on the first ``depth`` items (None: all; an LLM's
    ``top_k``), NaN for the metrics that depth is not judged on (:func:`~rerec.eval.metrics.metrics_at_depth`).

    So an LLM boxing all 4 candidates with ``depth`` 1 scores Acc@1 of its first item and no recall."""
    read = list(ranked) if depth is None else list(ranked)[:depth]
    judged = set(M.metrics_at_depth(ks, depth, n_candidates))
    values = M.query_metrics(read, query["positives"], ks, parsed)
    return {"model": model, "kind": kind, "query_id": str(query["query_id"]), "type": query["type"],
            "n_conditions": query["n_conditions"], "n_items": len(ranked), "top1": read[0] if read else None,
            **{m: (v if m in judged else math.nan) for m, v in values.items()}}


def _traces(model: str, queries: list[dict], answers: list, rows: list[dict], view: Any, n: int) -> dict:
    """The best and worst answered queries (by Acc@1, then parse), with their completions."""
    scored = [(r, q, a) for r, q, a in zip(rows, queries, answers, strict=True) if a.completion is not None]
    scored.sort(key=lambda t: (t[0]["acc@1"], t[0]["parsed"]), reverse=True)

    def show(r: dict, q: dict, a: Any) -> dict:
        return {"query_id": r["query_id"], "type": r["type"], "request": str(q["text"]),
                "positives": [view.title(p) for p in q["positives"]],
                "answered": [view.title(i) if i is not None else "(no candidate)" for i in a.ranked],
                "acc@1": r["acc@1"], "parsed": a.parsed, "completion": a.completion}

    best = [show(*t) for t in scored[:n]]
    worst = [show(*t) for t in scored[::-1][:n] if t[0]["query_id"] not in {b["query_id"] for b in best}]
    return {"best": best, "worst": worst}


def evaluate_llm(name: str, path: Path | str, queries: list[dict], view: Any, config: EvalConfig,
                 ks: Sequence[int], n_candidates: int, time_budget_s: float | None = None,
                 unseen: Sequence[dict] = ()) -> dict:
    """Measure one model's retention (MMLU, IFEval), then rank ``queries`` with it, reading ``config.top_k``
    items of each answer, all within ``time_budget_s`` (default ``config.model_time_budget_s``). Returns rows, traces
    and stats."""
    import torch

    from rerec.eval.generate import LLMRanker, generate_chat
    from rerec.models.loading import load_model

    start = time.perf_counter()
    total = config.model_time_budget_s if time_budget_s is None else time_budget_s

    def budget(cap: float) -> float:
        """A part's seconds: its own cap, within what is left of the model's budget."""
        return max(0.0, min(cap, total - (time.perf_counter() - start)))

    torch.manual_seed(config.seed)
    model, tokenizer = load_model(str(path))
    ranker = LLMRanker(name, model, tokenizer, view, mode=config.context_mode, max_history=config.max_history,
                       max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                       max_prompt_tokens=config.max_prompt_tokens or None)
    # the general-ability probes first: they are short and capped, and a model that runs every answer to the
    # token limit (the zero-shot base, on a short budget) would otherwise leave them no time, and the
    # promotion gate no retention ratio to read
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
    answers = ranker.rank_all(queries, time_budget_s=budget(config.rec_time_budget_s)) if queries else []
    done = [(q, a) for q, a in zip(queries, answers, strict=True) if a.completion is not None]
    rows = [score_query(name, "llm", q, a.ranked, a.parsed, ks, config.top_k, n_candidates) for q, a in done]
    stats = {"n_selected": len(queries), "n_generated": 0, "new_tokens": 0, "tokens_per_second": 0.0,
             "generation_s": 0.0, "budget_exhausted": False, "time_budget_s": total,
             "n_closed_after_last_row": sum(a.closed for _, a in done)}
    if queries:
        gen = ranker.last_generation
        stats.update(n_generated=gen.n_generated, new_tokens=gen.n_new_tokens,
                     tokens_per_second=round(gen.tokens_per_second, 2), generation_s=round(gen.seconds, 1),
                     budget_exhausted=gen.budget_exhausted)
    unseen_rows = []
    if unseen:  # the same queries in the held-out phrasing (unseen_phrasing), after the stats above
        reworded = ranker.rank_all(list(unseen), time_budget_s=budget(config.unseen_time_budget_s))
        unseen_rows = [{**score_query(name, "llm", q, a.ranked, a.parsed, ks, config.top_k, n_candidates),
                        "text": q["text"], "completion": a.completion, "closed": a.closed}
                       for q, a in zip(unseen, reworded, strict=True) if a.completion is not None]
    stats["seconds"] = round(time.perf_counter() - start, 1)
    traces = _traces(name, [q for q, _ in done], [a for _, a in done], rows, view, config.n_traces)
    del model
    return {"rows": rows, "stats": stats, "retention": retention, "traces": traces, "unseen_rows": unseen_rows}


# ---------------------------------------------------------------- aggregation (pure)
def aggregate_rows(rows: list[dict], ks: Sequence[int], top_k: int, n_candidates: int, n_boot: int,
                   seed: int) -> tuple[list[dict], list[dict]]:
    """``(table, by_conditions)``: per (model, query type, plus "all") and per (model, number of conditions),
    the mean and 95% bootstrap interval of each metric that model is judged on (baselines: every metric;
    LLMs: :func:`~rerec.eval.metrics.metrics_at_depth` at ``top_k``). A row holds no key for a metric
    its model is not judged on."""
    if not rows:
        return [], []
    df = pd.DataFrame(rows)
    table, by_cond = [], []
    for _, group in df.groupby("model", sort=True):
        kind = group["kind"].iloc[0]
        names = M.metrics_at_depth(ks, None if kind == "baseline" else top_k, n_candidates)
        kw = {"n_boot": n_boot, "seed": seed}
        rows_type = M.aggregate(group, ["model", "type"], names, **kw)
        rows_all = M.aggregate(group.assign(type="all"), ["model", "type"], names, **kw)
        rows_cond = M.aggregate(group, ["model", "n_conditions"], names, **kw)
        for r in rows_type + rows_all + rows_cond:
            r["kind"] = kind
        table += rows_type + rows_all
        by_cond += rows_cond
    return table, by_cond


def retention_ratio(model: list[bool], base: list[bool]) -> float | None:
    """Model score / base score on the questions both answered (a prefix of one fixed order, since a
    time budget may stop either early); None when the base scores 0 there."""
    n = min(len(model), len(base))
    if n == 0 or not any(base[:n]):
        return None
    return (sum(model[:n]) / n) / (sum(base[:n]) / n)


def retention_against_base(results: Mapping[str, Mapping], base: str) -> dict[str, dict]:
    """Each LLM's retention dict with ``mmlu_ratio`` and ``ifeval_ratio`` against ``base`` (the base's own
    ratios are 1.0, or None where it scores 0). ``results``: name -> {"retention": {...}}."""
    ref = results[base]["retention"]
    out = {}
    for name, result in results.items():
        ret = dict(result["retention"])
        if ret and ref:
            for key, items in (("mmlu", "mmlu_correct"), ("ifeval", "ifeval_followed")):
                ret[f"{key}_ratio"] = retention_ratio(ret[items], ref[items])
        out[name] = ret
    return out


# ---------------------------------------------------------------- paired differences (pure)
def _parse_pair(text: str) -> tuple[str, str]:
    model, sep, reference = str(text).partition(":")
    if not sep or not model or not reference or ":" in reference or model == reference:
        raise ConfigError(f"compare entry '{text}' is not MODEL:REFERENCE with two different names. "
                          "Fix: e.g. --compare rft:plain_grpo rft:base.")
    return model, reference


def comparisons(compare: Sequence[str] | None, evaluated: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(model, reference)`` pairs to compare. ``compare`` None: :data:`DEFAULT_COMPARE`, keeping the
    pairs whose two models were both evaluated. Given pairs must name evaluated models (else ConfigError,
    raised before any model runs). Repeats are dropped, the order kept."""
    if compare is None:
        pairs = [_parse_pair(c) for c in DEFAULT_COMPARE]
        pairs = [(a, b) for a, b in pairs if a in evaluated and b in evaluated]
    else:
        pairs = [_parse_pair(c) for c in compare]
        for model, reference in pairs:
            missing = [m for m in (model, reference) if m not in evaluated]
            if missing:
                raise ConfigError(f"compare {model}:{reference}: {', '.join(missing)} is not evaluated here "
                                  f"(rows: {', '.join(evaluated)}). Fix: pass the model with --model NAME=PATH, "
                                  "or drop the pair from --compare.")
    return list(dict.fromkeys(pairs))


def verdict(model: str, reference: str, cell: Mapping, metric: str = "Acc@1") -> str:
    """One sentence on ``model - reference`` that says no more than the 95% interval: "not separated"
    when it holds 0, else the range of the difference."""
    if not cell.get("n"):
        return f"{model} and {reference} answered no query in common: no comparison."
    head = (f"{model} − {reference}: {cell['diff']:+.3f} {metric} on the same {cell['n']} queries, 95% interval "
            f"[{cell['low']:+.3f}, {cell['high']:+.3f}]")
    if not cell["separated"]:
        return (f"{head}: not separated. The interval holds 0, so these queries cannot tell {model} from "
                f"{reference}.")
    if cell["diff"] > 0:
        return f"{head}: {model} is ahead, by {cell['low']:.3f} to {cell['high']:.3f} {metric}."
    return f"{head}: {model} is behind, by {-cell['high']:.3f} to {-cell['low']:.3f} {metric}."


def paired_differences(per_query: pd.DataFrame, pairs: Sequence[tuple[str, str]], metric: str = HEADLINE,
                       n_boot: int = M.PAIRED_N_BOOT, seed: int = 0) -> list[dict]:
    """``model - reference`` in ``metric`` on the queries both answered, overall and per query type: per pair
    :func:`rerec.eval.metrics.paired_by_type` (95% interval; overall stratified by query type), the statistic
    the promotion gate computes too. Returns one entry per pair: ``{"model", "reference", "metric",
    "by_type": {"all" | type: {"diff", "low", "high", "n", "separated", "model_score", "reference_score"}},
    "verdict"}``; a cell with n = 0 has None values.
    """
    out = []
    for model, reference in pairs:
        by_type = M.paired_by_type(per_query, model, reference, metric, n_boot=n_boot, seed=seed)
        out.append({"model": model, "reference": reference, "metric": metric, "by_type": by_type,
                    "verdict": verdict(model, reference, by_type["all"])})
    return out


def paired_result(report: Mapping, model: str, reference: str, type: str = "all",  # noqa: A002
                  metric: str = HEADLINE) -> dict | None:
    """The paired difference ``model - reference`` recorded in an evaluation report (report.json's dict).

    Contract (what a reader of the report relies on; the registry gate computes the same statistic,
    :func:`rerec.eval.metrics.paired_by_type`, from ``per_query.parquet`` with its own ``n_boot``/``alpha``/``seed``,
    so with the defaults it reads the same interval):

    - Returns ``{"diff", "low", "high", "n", "separated", "model_score", "reference_score"}`` for the query
      type ``type`` ("all" or one of the query types): ``diff`` the mean over the ``n`` queries both models
      answered of the per-query ``metric`` difference (Acc@1: +1 where only ``model`` is right, -1 where
      only ``reference`` is), ``[low, high]`` its 95% bootstrap interval, ``separated`` whether the interval
      excludes 0, and each model's mean on those same queries. Both were scored in this one report, so on
      its split (``report["split"]``) and query subset.
    - Returns None when the report holds no such comparison (a model not evaluated, the pair not in
      ``EvalConfig.compare``, a report written before paired differences existed) or the two models have
      no query of that type in common. It never raises on a well-formed report and never swaps the pair:
      ``(reference, model)`` is a different question.

    The gate asks for the challenger against the champion on validation queries, e.g. ``paired_result(
    report, "rft", "champion")`` with ``compare=["rft:champion"]`` in the evaluate stage's config.
    """
    for entry in report.get("paired") or []:
        if entry.get("model") == model and entry.get("reference") == reference and entry.get("metric") == metric:
            cell = (entry.get("by_type") or {}).get(type)
            if not cell or not cell.get("n"):
                return None
            return dict(cell)
    return None


def flat_metrics(report: dict) -> dict[str, float]:
    """MLflow metrics with safe names: ``<model>/<type>/acc_at_1``, ``<model>/retention/mmlu_ratio``,
    ``paired/<model>-<reference>/<type>/acc_at_1_diff`` (and ``_low``, ``_high``)."""
    out: dict[str, float] = {}
    names = M.metric_names(report["ks"])
    for row in report["table"]:
        for m in names:
            if m in row:
                out[safe_metric_name(f"{row['model']}/{row['type']}/{m}")] = row[m]
    for row in report["by_conditions"]:
        out[safe_metric_name(f"{row['model']}/conditions_{row['n_conditions']}/acc@1")] = row["acc@1"]
    for row in (report.get("unseen_phrasing") or {}).get("table", []):
        for m in (HEADLINE, "parsed"):
            out[safe_metric_name(f"{row['model']}/unseen_phrasing/{row['type']}/{m}")] = row[m]
    for model, ret in report["retention"].get("models", {}).items():
        for key in ("mmlu", "ifeval", "mmlu_ratio", "ifeval_ratio"):
            if ret.get(key) is not None:
                out[safe_metric_name(f"{model}/retention/{key}")] = ret[key]
    for entry in report.get("paired", []):
        for t, cell in entry["by_type"].items():
            for key in ("diff", "low", "high"):
                name = f"paired/{entry['model']}-{entry['reference']}/{t}/{entry['metric']}_{key}"
                out[safe_metric_name(name)] = cell[key]
    return {k: float(v) for k, v in out.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


# ---------------------------------------------------------------- the stage
def evaluate(data_dir: str | Path, graphs_dir: str | Path, reward_dir: str | Path | None,
             models: Mapping[str, Path | str], out_dir: str | Path, config: EvalConfig | None = None) -> dict:
    """Run the benchmark, the paired differences and retention; write the report folder atomically.
    ``models``: name -> folder (or a built-in name); the base row is added from ``config.base_model``
    unless a model is named ``base``. Returns report.json's dict."""
    from rerec.data.load import load_catalog
    from rerec.eval.report import write_report
    from rerec.models.precision import resolve_precision
    from rerec.prompt import CatalogView, shrink_candidates

    config = (config or EvalConfig()).resolved()
    precision = resolve_precision(config.precision)
    base_given = BASE in models
    llm_models: dict[str, Path | str] = {BASE: models[BASE] if base_given else config.base_model,
                                         **{k: v for k, v in models.items() if k != BASE}}
    overlap = sorted(set(llm_models) & set(config.baselines))
    if overlap:
        raise ConfigError(f"Model name(s) {', '.join(overlap)} are also baseline names. Fix: rename the --model.")
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
    view.decades = bool(config.decade_evidence)
    if config.taste_evidence:
        from rerec.taste import attach_taste, taste_source

        attach_taste(view, graphs_dir, taste_source(True, reward_dir))
    selected = stratified_subset(split, config.max_queries_per_type, config.seed)
    queries = query_records(selected)
    if config.n_candidates:
        queries = [shrink_candidates(q, config.n_candidates, view, seed=config.seed) for q in queries]
    if len(selected) < len(split):
        notes.append(f"Stratified subset: at most {config.max_queries_per_type} queries per type "
                     f"(seed {config.seed}), {len(selected)} of the {len(split)} {config.split} queries; "
                     "baselines are scored on the same subset.")
    counts = [len(q["candidates"]) for q in queries]
    n_min, n_max = min(counts), max(counts)
    ks, dropped = M.ranking_ks(config.ks, n_min)
    shown = f"{n_min}" if n_min == n_max else f"{n_min} to {n_max}"
    if config.n_candidates:
        notes.append(f"Candidates shrunk to {config.n_candidates} per query (positives plus hardest "
                     "negatives), as in training.")
    if dropped:
        notes.append(f"NDCG@K and Recall@K not reported at K = {', '.join(map(str, dropped))}: queries show {shown} "
                     f"candidates, and a ranking of all of them has Recall@K = 1 at every K >= {n_min} "
                     "(K = 1 is Acc@1).")
    base_source = str(llm_models[BASE])
    notes.append(f"Base row: the zero-shot model {base_source}"
                 + (" (passed as 'base')." if base_given else " (EvalConfig.base_model).")
                 + " Every retention ratio is against it."
                 + ("" if config.rank_base else " It answers the retention probes only (EvalConfig.rank_base "
                    "off): it is not asked the recommendation queries."))

    with stage_run(STAGE, config, tags={"rerec.models": ",".join(llm_models)}) as tracker:
        tracker.log_params(precision.params())
        rows: list[dict] = []
        baselines = build_baselines(list(config.baselines), catalog, Path(graphs_dir),
                                    Path(reward_dir) if reward_dir else None, config.seed, notes)
        ranked = [m for m in llm_models if m != BASE or config.rank_base]
        pairs = comparisons(config.compare, [*baselines, *ranked])
        for name, ranker in baselines.items():
            if hasattr(ranker, "precompute"):
                ranker.precompute(queries)
            rows += [score_query(name, "baseline", q, ranker.rank(q), True, ks, None, n_max)
                     for q in tqdm(queries, desc=f"{name}: rank", unit="query")]
        if "lightgcn" in baselines and baselines["lightgcn"].n_fallback:
            n = baselines["lightgcn"].n_fallback
            notes.append(f"LightGCN: {n} {'query' if n == 1 else 'queries'} of users without an embedding "
                         "ranked by popularity.")
        llm: dict[str, dict] = {}
        unseen = unseen_phrasing(queries, catalog.titles(), config.unseen_phrasing_per_type, config.seed)
        for name, path in llm_models.items():
            budget = config.base_time_budget_s if name == BASE else None
            asked = name in ranked
            result = evaluate_llm(name, path, queries if asked else [], view, config, ks, n_max,
                                  time_budget_s=budget, unseen=unseen if asked else ())
            rows += result["rows"]
            llm[name] = result
            stats = result["stats"]
            if stats["budget_exhausted"] and stats["n_generated"] < len(queries):
                notes.append(f"{name}: the time budget ran out after {stats['n_generated']} of {len(queries)} "
                             "queries; its rows cover those only.")
            elif stats["budget_exhausted"]:
                notes.append(f"{name}: the time budget ran out during its last batch; answers cut short there "
                             "score as unparsed (a larger --rec-time-budget-s avoids it).")
        table, by_conditions = aggregate_rows(rows, ks, config.top_k, n_max, config.n_boot, config.seed)
        per_query = pd.DataFrame(rows)
        report = {
            "split": config.split,
            "n_queries_split": len(split),
            "n_queries": len(queries),
            "n_queries_by_type": {str(k): int(v) for k, v in selected["type"].value_counts().sort_index().items()},
            "n_candidates": {"min": n_min, "max": n_max},
            "top_k": config.top_k,
            "headline": HEADLINE,
            "ks": ks,
            "ks_dropped": dropped,
            "ranking_metrics": [m for m in M.metrics_at_depth(ks, None, n_max) if m not in (HEADLINE, "parsed")],
            "base": {"model": BASE, "source": base_source, "from_config": not base_given},
            "models": [*baselines, *llm],
            "kinds": {**{b: "baseline" for b in baselines}, **{m: "llm" for m in llm}},
            "table": table,
            "by_conditions": by_conditions,
            "paired": paired_differences(per_query, pairs, HEADLINE, config.n_boot, config.seed),
            "llm": {name: r["stats"] for name, r in llm.items()},
            "retention": {"base_model": BASE, "models": retention_against_base(llm, BASE)} if config.retention else {},
            "traces": {name: r["traces"] for name, r in llm.items()},
            "unseen_phrasing": unseen_summary([r for res in llm.values() for r in res["unseen_rows"]], rows,
                                              config.n_boot, config.seed),
            "notes": notes,
            "config": asdict(config),
        }
        report["metrics"] = flat_metrics(report)
        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / "report.json", report)
            write_report(report, tmp)
            per_query.to_parquet(tmp / "per_query.parquet", index=False)
            if unseen:
                pd.DataFrame([r for res in llm.values() for r in res["unseen_rows"]]).to_parquet(
                    tmp / "per_query_unseen_phrasing.parquet", index=False)
        tracker.log_metrics(report["metrics"])
        tracker.log_artifact(out_dir, artifact_path="evaluation")
    return report


def _parse_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--model '{text}' is not NAME=PATH. Fix: e.g. --model sft=out/sft --model rft=out/rft.")
    return name, Path(path)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="Prepared data folder (prepare-data).")
    parser.add_argument("--graphs", required=True, type=Path, help="Graphs folder (build-graphs).")
    parser.add_argument("--reward", type=Path, default=None, help="Reward folder (train-reward-gnn).")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="A model to evaluate (repeatable): a folder, 'smollm2' or 'tiny'. The zero-shot "
                             "base model is added as 'base' from --base-model unless one is named 'base'.")
    parser.add_argument("--out", required=True, type=Path, help="Output folder for the report.")
    add_dataclass_arguments(parser, EvalConfig)


def cli_main(args: argparse.Namespace) -> int:
    models = dict(_parse_model(m) for m in args.model)
    if len(models) != len(args.model):
        raise ConfigError("Two --model flags share a name. Fix: give each model its own NAME.")
    report = evaluate(args.data, args.graphs, args.reward, models, args.out, dataclass_from_args(EvalConfig, args))
    print(f"Evaluation report written to {args.out / 'report.md'}")
    overall = {row["model"]: row for row in report["table"] if row["type"] == "all"}
    for name in report["models"]:
        if name in overall:
            row = overall[name]
            print(f"  {name:<14} acc@1 {row['acc@1']:.3f}  parse rate {row['parsed']:.2f}  (n={row['n']})")
    for entry in report["paired"]:
        print(f"  {entry['verdict']}")
    return 0
