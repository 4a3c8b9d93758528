"""sft-warmup: a short supervised pass on reasoning traces synthesised from the graphs (docs/method.md),
so that a small model writes the answer format before RFT.

Inputs: --data (a prepare-data folder: queries with splits), --graphs (a build-graphs folder; its
item-attribute graph decides every fact of a trace), --profile (tiny | smollm2 | paper: the model profiles of
:mod:`rerec.models.profiles`), optionally --model to start from another model folder.

Output (--out, written all at once): a Hugging Face model folder (LoRA merged into the weights),
``adapter/`` (the LoRA adapter, when LoRA is used), ``metrics.json`` (train/validation loss, parse
rate and Acc@1 on validation queries before and after, the popularity baseline, wall time, peak
memory) and ``samples.jsonl`` (validation prompts with their generated completions).

Training uses TRL's ``SFTTrainer`` on prompt/completion pairs, so the loss is on the completion only;
prompts come from :mod:`rerec.prompt`, exactly as RFT and evaluation build them.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rerec.config import add_dataclass_arguments, check_minimums, dataclass_from_args
from rerec.errors import ConfigError, InputError
from rerec.eval.choice import evaluate_choice
from rerec.eval.decisions import decision_accuracy
from rerec.io import atomic_dir
from rerec.models.folder import write_model_folder
from rerec.models.loading import freeze_bottom_layers, load_trainable_model, seed_torch
from rerec.models.precision import PRECISIONS, resolve_precision
from rerec.models.profiles import PROFILES, get_profile
from rerec.prompt import (
    CatalogView,
    build_messages,
    candidate_lines,
    render_prompt,
    shrink_candidates,
)
from rerec.tracking import stage_run
from rerec.train.inputs import load_view_and_queries, query_rows
from rerec.train.traces import synthesize_trace

log = logging.getLogger(__name__)

STAGE = "sft-warmup"


@dataclass
class SFTWarmupConfig:
    """SFT warm-up. Fields left at ``None`` take the profile's value."""

    # --- model
    profile: str = field(default="smollm2", metadata={"help": "Model profile.", "choices": list(PROFILES)})
    model: str | None = field(default=None, metadata={"help": "Start from this model instead of the profile's."})
    use_lora: bool | None = field(default=None, metadata={"help": "LoRA adapters (else full fine-tuning)."})
    lora_r: int | None = field(default=None, metadata={"help": "LoRA rank."})
    # --- prompts
    context_mode: str | None = field(default=None, metadata={"help": "Prompt context: evidence or titles."})
    n_candidates: int | None = field(default=None, metadata={"help": "Candidates shown per prompt."})
    min_candidates: int = field(
        default=2, metadata={"help": "Training prompts show between this many and n_candidates candidates "
                                     "(a cheap curriculum: easy lists teach copying first)."})
    max_history: int | None = field(default=None, metadata={"help": "History titles shown (0 = none)."})
    taste_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's taste rank for the user (rerec.taste; needs the reward stage's output)."})
    decade_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's decade beside its year (\"Dumbo (1941) - 1940s; ...\")."})
    trace_styles: str | None = field(
        default=None, metadata={"help": "Comma-separated trace styles to train on (checklist, eliminate, direct, "
                                        "table, scan); each query gets one, picked by the seed."})
    no_fit_rate: float | None = field(
        default=None, metadata={"help": "Share of training examples shown without their match: the trace checks "
                                        "every row and boxes the closest, so a model that misjudges every row still "
                                        "ends its scan (table/scan styles only; 0 = off)."})
    balance_types: bool = field(
        default=True, metadata={"help": "Oversample each query type to the count of the most frequent one (seeded), "
                                        "so that every stretch of training sees the four types alike, as the "
                                        "evaluation weighs them; off: the train split's own mix (37% explicit, "
                                        "18% interest)."})
    balance_rejections: bool = field(
        default=False, metadata={"help": "Within each query type, oversample (seeded) the traces that rule out a "
                                         "row or a premise to as many as those that accept the first row they check. "
                                         "In the train split 81% of explicit traces accept the taste #1 row, so a "
                                         "short SFT can learn that prior instead of reading the row."})
    derive_decades: bool = field(
        default=False, metadata={"help": "In table/scan traces, a decade check first names the candidate's own "
                                         "decade (\"(1940s) 1930s no\"), read off the year the row just copied, so "
                                         "the yes/no compares two decades instead of a year with a decade."})
    faithful_only: bool = field(
        default=True, metadata={"help": "Train only on traces whose every step the prompt supports: a query whose "
                                        "positive is not the user's taste #1 among the candidates that fit (an "
                                        "interest query's answer the taste ranks second) would teach a choice "
                                        "against the evidence shown, so it is left out and counted "
                                        "(n_unfaithful_dropped)."})
    # --- optimisation
    steps: int | None = field(default=None, metadata={"help": "Optimiser steps."})
    batch_size: int | None = field(default=None, metadata={"help": "Examples per step."})
    lr: float | None = field(default=None, metadata={"help": "Peak learning rate (linear decay, 5% warm-up)."})
    answer_logits_only: bool = field(
        default=True, metadata={"help": "Compute vocabulary logits only at completion positions (same loss, far "
                                        "less compute for small models whose vocabulary head dominates)."})
    decision_weight: float = field(default=1.0, metadata={
        "help": "Weight of the decision tokens in the loss (a check's yes/no, a row's fits/no: rerec.train.sft."
                "DECISION_WORDS) against 1 for every other completion token; they are a few tokens of a trace "
                "that otherwise copies the prompt's lines (needs answer_logits_only; 1 = plain cross-entropy)."})
    freeze_layers: int = field(default=0, metadata={
        "help": "Full fine-tuning only: keep the embeddings and the bottom N decoder layers frozen, so each step's "
                "backward pass is shorter (0 = train every layer)."})
    time_budget_s: float = field(default=0.0, metadata={"help": "Stop training after this many seconds (0 = no limit)."})
    n_train: int = field(default=0, metadata={"help": "Training queries used (0 = all of the train split)."})
    # --- evaluation
    n_eval: int | None = field(default=None, metadata={"help": "Validation queries for parse rate and Acc@1."})
    eval_before: bool = field(default=True, metadata={"help": "Also measure the model before training."})
    evaluations: int = field(default=4, metadata={
        "help": "Validation passes (loss and decision accuracies) during training, evenly spaced and at least 50 "
                "steps apart, the last at the final step (each costs about 20 s of 2 CPU cores for SmolLM2)."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Generation limit for evaluation."})
    eval_batch_size: int = field(default=16, metadata={"help": "Prompts generated together."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)."})
    precision: str = field(default="auto", metadata={
        "help": "bf16 (autocast training, bf16 generation), fp32, or auto: bf16 where the processor computes it "
                "natively (env REREC_PRECISION applies when this is auto).", "choices": list(PRECISIONS)})

    def resolved(self) -> SFTWarmupConfig:
        """A copy with every ``None`` filled from the profile."""
        p = get_profile(self.profile)
        values = asdict(self)
        sft_lora = p.use_lora if p.sft_use_lora is None else p.sft_use_lora
        fill = {"model": p.model, "use_lora": sft_lora, "lora_r": p.lora_r, "context_mode": p.context_mode,
                "n_candidates": p.n_candidates, "max_history": p.max_history, "steps": p.sft_steps,
                "batch_size": p.sft_batch_size, "lr": p.sft_lr, "n_eval": p.eval_queries or 200,
                "max_new_tokens": p.max_new_tokens, "trace_styles": p.trace_styles,
                "no_fit_rate": p.sft_no_fit_rate, "taste_evidence": p.taste_evidence,
                "decade_evidence": p.decade_evidence}
        for key, value in fill.items():
            if values[key] is None:
                values[key] = value
        out = SFTWarmupConfig(**values)
        from rerec.train.traces import STYLES

        styles = out.styles()
        unknown = [s for s in styles if s not in STYLES]
        if unknown or not styles:
            raise ConfigError(f"trace_styles={out.trace_styles!r} names no known style ({', '.join(unknown)}). "
                              f"Fix: pass a comma-separated subset of {', '.join(STYLES)}.")
        check_minimums(out, {"steps": 1, "batch_size": 1, "lr": 0, "lora_r": 1, "n_candidates": 2, "max_history": 0,
                             "time_budget_s": 0, "freeze_layers": 0, "n_train": 0, "n_eval": 1, "evaluations": 1,
                             "max_new_tokens": 1, "eval_batch_size": 1, "threads": 0}, strict=("lr",))
        if out.freeze_layers and out.use_lora:
            raise ConfigError(f"freeze_layers={out.freeze_layers} applies to full fine-tuning; LoRA already trains "
                              "adapters only. Fix: pass --use-lora false or --freeze-layers 0.")
        if not out.decision_weight > 0 or (out.decision_weight != 1.0 and not out.answer_logits_only):
            raise ConfigError(f"decision_weight={out.decision_weight} must be positive and, other than 1, needs "
                              "answer_logits_only (the loss it weights). Fix: pass --decision-weight 1 or "
                              "--answer-logits-only true.")
        if not 0.0 <= out.no_fit_rate < 1.0:
            raise ConfigError(f"no_fit_rate={out.no_fit_rate} must be a share in [0, 1). Fix: pass --no-fit-rate 0.1.")
        if out.no_fit_rate and set(styles) - {"table", "scan"}:
            raise ConfigError(f"no_fit_rate={out.no_fit_rate} needs table/scan traces (the others would call the "
                              f"closest candidate a fit), got trace_styles={out.trace_styles!r}. Fix: pass "
                              "--trace-styles scan or --no-fit-rate 0.")
        if out.min_candidates < 2 or out.min_candidates > out.n_candidates:
            raise ConfigError(f"min_candidates={out.min_candidates} must be between 2 and n_candidates="
                              f"{out.n_candidates}. Fix: pass --min-candidates 2.")
        return out

    def styles(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in (self.trace_styles or "").split(",") if s.strip())


# ------------------------------------------------------------------------------------------- data

def sft_examples(rows: list[dict], view: CatalogView, tokenizer: Any, config: SFTWarmupConfig,
                 augment: bool = True, counts: dict | None = None) -> list[dict]:
    """``{"prompt": chat-rendered prompt, "completion": trace, "type": query type, "rejects": whether the trace
    rules something out (a :class:`rerec.train.traces.Fact` that does not hold)}`` per query; each query shows a seeded
    number of candidates between ``min_candidates`` and ``n_candidates``. With ``augment``, a seeded
    ``no_fit_rate`` share shows the list without its match (:func:`rerec.train.traces.no_fit_query`).
    With ``config.faithful_only``, queries whose trace the shown evidence does not support are left out
    (:attr:`rerec.train.traces.Trace.evidence_picks_answer`); ``counts["n_unfaithful_dropped"]`` says how many."""
    import numpy as np

    from rerec.train.traces import no_fit_query

    rng = np.random.default_rng(config.seed)
    no_fit_rng = np.random.default_rng([config.seed, 1])
    styles = config.styles()
    out, dropped = [], 0
    for row in rows:
        k = int(rng.integers(config.min_candidates, config.n_candidates + 1))
        shown = shrink_candidates(row, k, view, seed=config.seed)
        if augment and config.no_fit_rate and no_fit_rng.random() < config.no_fit_rate:
            shown = no_fit_query(shown, view) or shown
        messages = build_messages(shown, view, config.context_mode, include_history=config.max_history > 0,
                                  max_history=config.max_history)
        lines = candidate_lines(shown, view, config.context_mode, include_history=config.max_history > 0,
                                max_history=config.max_history)
        trace = synthesize_trace(shown, view, seed=config.seed, styles=styles, candidate_lines=lines,
                                 derive_decades=config.derive_decades)
        if config.faithful_only and not trace.evidence_picks_answer:
            dropped += 1
            continue
        out.append({"prompt": render_prompt(tokenizer, messages), "completion": trace.text,
                    "type": str(row.get("type", "")), "rejects": any(not f.holds for f in trace.facts)})
    if counts is not None:
        counts["n_unfaithful_dropped"] = dropped
    return out


def balance_examples(examples: list[dict], by: Sequence[str], seed: int = 0) -> list[dict]:
    """``examples`` with seeded repeats (drawn with replacement) so that the groups of ``by[0]`` are equally
    large, each group balanced the same way by ``by[1:]`` first. Groups in sorted key order, each group's
    originals (in their order) before its repeats; nothing is dropped."""
    import numpy as np

    return _balanced(list(examples), tuple(by), np.random.default_rng(seed))


def training_mix(examples: list[dict], cfg: SFTWarmupConfig) -> list[dict]:
    """The training examples as SFT sees them: balanced by query type (``balance_types``) and, within each
    type, by whether the trace rules something out (``balance_rejections``); unchanged when both are off."""
    by = ["type"] * cfg.balance_types + ["rejects"] * cfg.balance_rejections
    return balance_examples(examples, by, cfg.seed) if by else examples


def _balanced(examples: list[dict], by: tuple[str, ...], rng: Any) -> list[dict]:
    if not by or not examples:
        return examples
    groups: dict[Any, list[dict]] = {}
    for example in examples:
        groups.setdefault(example[by[0]], []).append(example)
    balanced = [_balanced(groups[key], by[1:], rng) for key in sorted(groups)]
    top = max(len(group) for group in balanced)
    out: list[dict] = []
    for group in balanced:
        out += group + [group[int(i)] for i in rng.integers(0, len(group), top - len(group))]
    return out


#: the words a scan trace decides with: a check's yes/no and a row's fits/no
DECISION_WORDS = (" yes", " no", " fits")


def decision_token_ids(tokenizer: Any) -> list[int]:
    """The token ids of :data:`DECISION_WORDS` that the tokenizer writes as one token (all three for SmolLM2's)."""
    ids = [tokenizer.encode(word, add_special_tokens=False) for word in DECISION_WORDS]
    return [i[0] for i in ids if len(i) == 1]


def weighted_token_loss(token_losses: Any, labels: Any, weighted_ids: Sequence[int], weight: float) -> Any:
    """The mean of ``token_losses`` with the tokens whose label is in ``weighted_ids`` counted ``weight`` times:
    sum(w * loss) / sum(w). ``weight`` 1 (or no ids) is the plain mean."""
    import torch

    if weight == 1.0 or not weighted_ids:
        return token_losses.mean()
    w = torch.where(torch.isin(labels, torch.as_tensor(list(weighted_ids), device=labels.device)),
                    float(weight), 1.0).to(token_losses.dtype)
    return (w * token_losses).sum() / w.sum()


def answer_only_trainer_class(weighted_ids: Sequence[int] = (), weight: float = 1.0) -> type:
    """``SFTTrainer`` whose loss applies the vocabulary head only where labels are set.

    The loss equals TRL's completion-only cross-entropy, but logits for prompt tokens are never
    built: for ``tiny`` the 49k-word head is most of the compute. Works for any model with ``get_decoder()`` and ``get_output_embeddings()``,
    wrapped in peft or not. With ``weight`` != 1 the tokens of ``weighted_ids`` (:func:`decision_token_ids`)
    count ``weight`` times in the mean (:func:`weighted_token_loss`), the validation loss too.
    """
    import torch.nn.functional as F
    from trl import SFTTrainer

    class AnswerOnlySFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            labels = inputs["labels"][:, 1:]
            keep = labels != -100
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            base = getattr(base, "module", base)
            # the Trainer's mixed precision is accelerate's autocast around model.forward, which this bypasses
            with self.accelerator.autocast():
                hidden = base.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                            position_ids=inputs.get("position_ids"), use_cache=False).last_hidden_state
                logits = base.get_output_embeddings()(hidden[:, :-1][keep])  # (n_label_tokens, vocab)
            token_losses = F.cross_entropy(logits.float(), labels[keep], reduction="none")
            loss = weighted_token_loss(token_losses, labels[keep], weighted_ids, weight)
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerOnlySFTTrainer


# ------------------------------------------------------------------------------------------- evaluation

def popularity_accuracy(rows: list[dict], view: CatalogView) -> float:
    """Acc@1 of recommending the candidate with most interactions (ties: displayed order)."""
    if not rows:
        return 0.0
    hits = 0
    for row in rows:
        best = max(row["candidates"], key=lambda c: view.popularity.get(str(c), 0))
        hits += str(best) in {str(p) for p in row["positives"]}
    return hits / len(rows)


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------- stage

def sft_warmup(data_dir: str | Path, graphs_dir: str | Path | None, out_dir: str | Path,
               config: SFTWarmupConfig | None = None, reward_dir: str | Path | None = None) -> dict:
    """Run the warm-up and write the model folder; returns the metrics (also in ``metrics.json``).

    Steps: read the queries and the start model; measure the model on validation queries; train on
    synthesised traces; measure it again; write the model folder."""
    from rerec.train.callbacks import TrackingCallback, deadline_after

    cfg = (config or SFTWarmupConfig()).resolved()
    precision = resolve_precision(cfg.precision)
    seed_torch(cfg.seed, cfg.threads)
    view, train_rows, val_rows, eval_rows = load_split_rows(data_dir, graphs_dir, cfg)
    model, tokenizer = load_trainable_model(cfg.model, cfg.use_lora, cfg.lora_r)
    n_trainable = freeze_bottom_layers(model, cfg.freeze_layers)
    view.decades = bool(cfg.decade_evidence)
    if cfg.taste_evidence:  # after the data's and the model's own checks, which a user hears about first
        from rerec.taste import attach_taste, taste_source

        attach_taste(view, graphs_dir, taste_source(True, reward_dir))
    metrics: dict[str, Any] = {"profile": cfg.profile, "model": cfg.model,
                               "popularity_acc_at_1": popularity_accuracy(eval_rows, view),
                               "n_train_queries": len(train_rows), "n_eval_queries": len(eval_rows),
                               "n_trainable_params": n_trainable}
    with stage_run(STAGE, cfg, tags={"rerec.profile": cfg.profile}) as tracker:
        tracker.log_params(precision.params())
        metrics.update(precision.params())
        if cfg.eval_before:
            before, _ = measure_choice(model, tokenizer, eval_rows, view, cfg, "before")
            metrics.update(before)
            tracker.log_metrics(before)
        counts: dict[str, int] = {}
        train_examples = sft_examples(train_rows, view, tokenizer, cfg, counts=counts)
        if cfg.balance_types or cfg.balance_rejections:
            train_examples = training_mix(train_examples, cfg)
            counts["n_train_examples_balanced"] = len(train_examples)
        metrics.update(counts)
        tracker.log_metrics(counts)
        eval_examples = sft_examples(val_rows[:32], view, tokenizer, cfg, augment=False)
        history: list[dict] = []
        decisions = DecisionLog(tokenizer, eval_examples, tracker, history,
                                autocast_dtype=precision.torch_dtype if precision.bf16 else None)
        if cfg.eval_before:
            metrics.update(decisions(model, 0, "_before"))
        deadline = deadline_after(cfg.time_budget_s)
        with atomic_dir(out_dir) as tmp:
            tracking = TrackingCallback(tracker, history, deadline=deadline, on_evaluate=decisions)
            trainer = build_trainer(model, tokenizer, train_examples, eval_examples, cfg, precision, tmp / "_trainer",
                                    tracking)
            trained = train(trainer)
            # 1 when time_budget_s ended the run before cfg.steps (a slow machine trains fewer steps)
            trained["stopped_by_time_budget"] = int(tracking.stopped_by_deadline)
            model = trainer.model
            metrics.update(decisions.latest)
            after, completions = measure_choice(model, tokenizer, eval_rows, view, cfg, "after")
            metrics.update({**trained, **after}, peak_memory_mb=peak_memory_mb(), n_candidates=cfg.n_candidates,
                           context_mode=cfg.context_mode)
            tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
            shutil.rmtree(tmp / "_trainer", ignore_errors=True)
            write_sft_folder(tmp, model, tokenizer, cfg, {**metrics, "history": history, "config": asdict(cfg)},
                             eval_rows, completions)
        tracker.log_artifact(Path(out_dir) / "metrics.json")
        tracker.log_artifact(Path(out_dir) / "samples.jsonl", artifact_path="samples")
    return metrics


def load_split_rows(data_dir: str | Path, graphs_dir: str | Path | None,
                    cfg: SFTWarmupConfig) -> tuple[CatalogView, list[dict], list[dict], list[dict]]:
    """``(view, train rows, val rows, eval rows)``: the training queries (``n_train``), every validation query
    (its first 32 give the trainer's loss and the decision accuracies) and the ``n_eval`` validation queries
    measured by generation, shrunk to ``n_candidates``."""
    view, queries = load_view_and_queries(data_dir, graphs_dir)
    train_rows = query_rows(queries, "train", cfg.n_train, cfg.seed)
    val_rows = query_rows(queries, "val", 0, cfg.seed)
    if not train_rows or not val_rows:
        raise InputError("the queries need both a train and a val split", file=str(Path(data_dir) / "queries.parquet"),
                         column="split", fix="rerun 'rerec prepare-data' with non-zero train and val fractions")
    eval_rows = [shrink_candidates(r, cfg.n_candidates, view, seed=cfg.seed)
                 for r in query_rows(queries, "val", cfg.n_eval, cfg.seed)]
    return view, train_rows, val_rows, eval_rows


def measure_choice(model: Any, tokenizer: Any, rows: list[dict], view: CatalogView, cfg: SFTWarmupConfig,
                   when: str) -> tuple[dict, list[str]]:
    """Parse rate and Acc@1 by generation (:func:`evaluate_choice`) ``before`` or ``after`` training, as
    metrics named ``*_before`` / ``*_after`` (after training also Acc@1 per query type and the generation
    time), and the completions."""
    result = evaluate_choice(model, tokenizer, rows, view, mode=cfg.context_mode, max_history=cfg.max_history,
                             max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size, desc=f"{when} SFT")
    named = {f"parse_rate_{when}": result["parse_rate"], f"acc_at_1_{when}": result["acc_at_1"]}
    if when == "after":
        named.update(acc_at_1_by_type_after=result["acc_at_1_by_type"], generate_s_after=result["generate_s"])
    return named, result["completions"]


class DecisionLog:
    """Teacher-forced accuracy of a trace's checks, verdicts and boxed answer on ``examples``
    (:func:`rerec.eval.decisions.decision_accuracy`), logged to ``tracker`` and ``history`` at each call;
    ``latest`` keeps the last value of each."""

    def __init__(self, tokenizer: Any, examples: list[dict], tracker: Any, history: list[dict],
                 autocast_dtype: Any = None) -> None:
        self.tokenizer, self.examples, self.tracker, self.history = tokenizer, examples, tracker, history
        self.autocast_dtype = autocast_dtype
        self.latest: dict[str, float] = {}

    def __call__(self, model: Any, step: int, suffix: str = "") -> dict[str, float]:
        acc = decision_accuracy(model, self.tokenizer, self.examples, autocast_dtype=self.autocast_dtype)
        named = {f"decision_{k}_acc{suffix}": v for k, v in acc.items() if k in ("check", "verdict", "answer")}
        self.tracker.log_metrics(named, step=step)
        self.history.append({"step": step, **named})
        self.latest.update(named)
        return named


def build_trainer(model: Any, tokenizer: Any, train_examples: list[dict], eval_examples: list[dict],
                  cfg: SFTWarmupConfig, precision: Any, output_dir: Path, callback: Any) -> Any:
    """TRL's ``SFTTrainer`` (or :func:`answer_only_trainer_class`'s, with ``answer_logits_only``) on the
    prompt/completion examples: linear decay after a 5% warm-up, ``cfg.evaluations`` validation passes
    (:func:`eval_interval`), no checkpoints, no gradient checkpointing."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **precision.trainer_kwargs(),
        output_dir=str(output_dir), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, learning_rate=cfg.lr, lr_scheduler_type="linear",
        warmup_steps=max(1, cfg.steps // 20), logging_steps=max(1, cfg.steps // 20),
        eval_strategy="steps", eval_steps=eval_interval(cfg.steps, cfg.evaluations), save_strategy="no", report_to="none",
        seed=cfg.seed, max_length=cfg.max_new_tokens + 1024,
        completion_only_loss=True, prediction_loss_only=True, dataloader_num_workers=0, disable_tqdm=False,
        # TRL turns it on by default; it runs every layer's forward twice to save activation memory that a
        # small model does not need (bench/sft_step.py: the same gradients, the step slower)
        gradient_checkpointing=False,
    )
    trainer_class = (answer_only_trainer_class(decision_token_ids(tokenizer), cfg.decision_weight)
                     if cfg.answer_logits_only else SFTTrainer)

    def dataset(examples: list[dict]) -> Any:
        return Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])

    return trainer_class(model=model, args=args, train_dataset=dataset(train_examples),
                         eval_dataset=dataset(eval_examples), processing_class=tokenizer,
                         callbacks=[callback])


def eval_interval(steps: int, evaluations: int) -> int:
    """Steps between the trainer's validation passes: ``evaluations`` evenly spaced passes over ``steps``, never closer
    than 50 steps (:func:`train` adds the final one when the last pass fell before the last step)."""
    return max(50, -(-steps // evaluations))


def train(trainer: Any) -> dict:
    """Train, then take the final validation loss (the evaluation also logs the final decision accuracies
    through the trainer's callback): ``steps``, ``train_s``, ``train_loss``, ``eval_loss``. When the last
    step was an evaluation step, its loss is the final one: the model has not changed since, so evaluating
    again would only repeat it (about 20 s of 2 CPU cores for SmolLM2)."""
    start = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - start
    step = int(result.global_step)
    final_eval = last_evaluation(trainer.state.log_history, step)
    if final_eval is None:
        final_eval = trainer.evaluate()
    return {"steps": step, "train_s": train_s, "train_loss": float(result.training_loss),
            "eval_loss": float(final_eval.get("eval_loss", float("nan")))}


def last_evaluation(log_history: list[dict], step: int) -> dict | None:
    """The trainer's evaluation logged at ``step`` (a ``log_history`` entry with ``eval_loss``), or None."""
    for entry in reversed(log_history):
        if "eval_loss" in entry and entry.get("step") == step:
            return entry
    return None


def write_sft_folder(folder: Path, model: Any, tokenizer: Any, cfg: SFTWarmupConfig, metrics: dict,
                     eval_rows: list[dict], completions: list[str]) -> None:
    """The model folder (:func:`rerec.models.folder.write_model_folder`), its tokenizer padding on the left,
    with the first 50 validation completions as samples."""
    tokenizer.padding_side = "left"
    samples = [{"query_id": row.get("query_id"), "type": row.get("type"),
                "positives": [str(p) for p in row["positives"]], "completion": text}
               for row, text in list(zip(eval_rows, completions, strict=True))[:50]]
    write_model_folder(folder, model, tokenizer, lora=cfg.use_lora, metrics=metrics, samples=samples)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="prepare-data output folder (with queries).")
    parser.add_argument("--graphs", type=Path, default=None, help="build-graphs output folder.")
    parser.add_argument("--reward", type=Path, default=None,
                        help="train-reward-gnn output folder (the LightGCN behind taste evidence).")
    parser.add_argument("--out", required=True, type=Path, help="Output model folder.")
    add_dataclass_arguments(parser, SFTWarmupConfig)


def cli_main(args: argparse.Namespace) -> int:
    metrics = sft_warmup(args.data, args.graphs, args.out, dataclass_from_args(SFTWarmupConfig, args),
                         reward_dir=args.reward)
    keys = ["parse_rate_before", "acc_at_1_before", "parse_rate_after", "acc_at_1_after", "popularity_acc_at_1",
            "steps", "train_s", "peak_memory_mb"]
    print(json.dumps({k: metrics.get(k) for k in keys}, indent=2))
    return 0
