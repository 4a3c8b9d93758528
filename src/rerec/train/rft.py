"""rft: curriculum GRPO with reasoning-aware segmented advantages and the dual-graph reward (ReRec,
arXiv 2604.07851; ``docs/method.md``).

Inputs: --data (prepare-data folder with queries), --graphs (build-graphs folder: the item-attribute
graph for QAS), --reward (train-reward-gnn folder: item embeddings for PAS), --model (the SFT output or
any model folder, or 'tiny' / 'smollm2'; default: the profile's model).

Output (--out, written all at once when training finishes): a Hugging Face model folder (LoRA merged),
``adapter/`` (with LoRA), ``checkpoints/`` (the last checkpoint), ``curriculum.json``, ``metrics.json`` and,
with ``curriculum.screen``, ``screen.json`` (which training prompts the start model answered;
:mod:`rerec.train.screen`). While training, checkpoints live in ``<out>.rft-work/checkpoints`` (model, optimiser,
LR scheduler, RNG and curriculum state); a run killed at any point continues with ``--resume`` and
finishes at the same step, with the same curriculum state, as a run that was never stopped.

The config nests one dataclass per part of the method, each knob declared once: ``reward``
(:class:`~rerec.reward.scorer.RewardConfig`, flags ``--reward-*``), ``advantage``
(:class:`~rerec.train.raae.AdvantageConfig`, ``--advantage-*``) and ``curriculum``
(:class:`~rerec.train.curriculum.CurriculumConfig`, ``--curriculum-*``); a JSON config nests the same way,
``{"steps": 30, "reward": {"weights": "paper"}, "curriculum": {"tau": 0.1}}``.

Ablations (``--ablation``): plain_grpo (TRL's sequence-level advantages, no curriculum, no QAS/PAS),
no_raae, no_curriculum, no_qas, no_pas.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rerec.config import add_dataclass_arguments, check_minimums, dataclass_from_args
from rerec.errors import ConfigError, InputError, RerecError
from rerec.io import atomic_dir, write_json
from rerec.models.folder import write_model_folder
from rerec.models.precision import PRECISIONS, resolve_precision
from rerec.models.profiles import PROFILES, get_profile
from rerec.reward.scorer import RewardConfig
from rerec.tracking import StageTracker, stage_run
from rerec.train.curriculum import CurriculumConfig
from rerec.train.raae import AdvantageConfig
from rerec.train.ranks import is_main_process, world_size
from rerec.train.resume import latest_checkpoint

log = logging.getLogger(__name__)

STAGE = "rft"
SCREEN_FILE = "screen.json"
ABLATIONS = ("none", "plain_grpo", "no_raae", "no_curriculum", "no_qas", "no_pas")


@dataclass
class RFTConfig:
    """RFT. Fields left at ``None`` take the model profile's value."""

    # --- model
    profile: str = field(default="smollm2", metadata={"help": "Model profile (budgets).", "choices": list(PROFILES)})
    use_lora: bool | None = field(default=None, metadata={"help": "LoRA adapters (else full fine-tuning)."})
    lora_r: int | None = field(default=None, metadata={"help": "LoRA rank."})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient to the reference (the start model). With "
                                                       "full fine-tuning, beta > 0 needs a model folder."})
    # --- prompts
    context_mode: str | None = field(default=None, metadata={"help": "Prompt context: evidence or titles."})
    n_candidates: int | None = field(default=None, metadata={"help": "Candidates shown per prompt."})
    max_history: int | None = field(default=None, metadata={"help": "History titles shown (0 = none)."})
    taste_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's taste rank for the user (rerec.taste; needs the reward stage's output)."})
    decade_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's decade beside its year (\"Dumbo (1941) - 1940s; ...\")."})
    n_train: int = field(default=0, metadata={"help": "Training queries (0 = the whole train split)."})
    paraphrase: float = field(default=0.0, metadata={
        "help": "Share of training prompts whose request RFT rewords in the paraphrase templates, the words "
                "'prepare-data --paraphrase' would write for the same query (0 = as prepared). Validation and test "
                "requests stay as prepared."})
    # --- GRPO
    steps: int | None = field(default=None, metadata={"help": "Optimiser steps."})
    batch_size: int | None = field(default=None, metadata={"help": "Prompts per step."})
    num_generations: int | None = field(default=None, metadata={"help": "Completions per prompt (G)."})
    lr: float | None = field(default=None, metadata={"help": "Learning rate."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Completion length limit (tokens per rollout).",
                                                           "old_names": ("max_completion_tokens",)})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts."})
    # --- ReRec (arXiv 2604.07851 Sec. 3.2-3.4): one nested config each, flags --reward-*, --advantage-*,
    # --curriculum-*, JSON {"reward": {...}, "advantage": {...}, "curriculum": {...}}
    ablation: str = field(default="none", metadata={"help": "Ablation arm: plain_grpo (grpo advantage, no "
                                                            "curriculum, no QAS/PAS), no_raae, no_curriculum, "
                                                            "no_qas, no_pas; it overrides the nested options it "
                                                            "names.", "choices": ABLATIONS})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"help": "The dual-graph reward."})
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig, metadata={
        "help": "Rewards to per-token advantages (RAAE)."})
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig, metadata={"help": "The online "
                                                                                             "curriculum."})
    # --- run
    save_steps: int = field(default=10, metadata={"help": "Checkpoint every this many steps."})
    time_budget_s: float = field(default=0.0, metadata={"help": "Stop after this many seconds (0 = no limit)."})
    stop_after_steps: int = field(default=0, metadata={"help": "Stop after this many steps while keeping the learning-"
                                                               "rate schedule of --steps (0 = run all --steps); "
                                                               "the ablation gives every arm the steps of the first."})
    n_samples_logged: int = field(default=16, metadata={"help": "Sample completions in each epoch's table."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)."})
    precision: str = field(default="auto", metadata={
        "help": "bf16 (autocast training, bf16 rollouts), fp32, or auto: bf16 where the processor computes it "
                "natively (env REREC_PRECISION applies when this is auto).", "choices": list(PRECISIONS)})
    rollout_engine: str | None = field(default=None, metadata={
        "help": "Who generates the rollouts: rerec (the project's generator) or vllm (TRL's vLLM, colocated; needs a "
                "GPU and vllm, else rerec's generator). Default: the profile's.", "choices": ["rerec", "vllm"]})

    def resolved(self) -> RFTConfig:
        """A copy with the profile's values filled in and the ablation's switches applied."""
        p = get_profile(self.profile)
        fill = {"use_lora": p.use_lora, "lora_r": p.lora_r, "context_mode": p.context_mode,
                "n_candidates": p.n_candidates, "max_history": p.max_history, "steps": p.rft_steps,
                "batch_size": p.rft_batch_size, "num_generations": p.num_generations, "lr": p.rft_lr,
                "max_new_tokens": p.max_new_tokens, "rollout_engine": p.rollout_engine,
                "taste_evidence": p.taste_evidence, "decade_evidence": p.decade_evidence}
        out = replace(self, **{k: v for k, v in fill.items() if getattr(self, k) is None})
        grpo, no_curriculum = {"advantage": {"estimator": "grpo"}}, {"curriculum": {"enabled": False}}
        arm = {"plain_grpo": {**grpo, **no_curriculum, "reward": {"use_qas": False, "use_pas": False}},
               "no_raae": grpo, "no_curriculum": no_curriculum, "no_qas": {"reward": {"use_qas": False}},
               "no_pas": {"reward": {"use_pas": False}}}.get(self.ablation, {})
        out = replace(out, **{group: replace(getattr(out, group), **values) for group, values in arm.items()})
        out = replace(out, reward=out.reward.resolved())
        check_minimums(out, {"steps": 1, "batch_size": 1, "lr": 0, "lora_r": 1, "beta": 0, "n_candidates": 2,
                             "max_history": 0, "n_train": 0, "max_new_tokens": 1, "temperature": 0,
                             "save_steps": 1, "time_budget_s": 0, "stop_after_steps": 0,
                             "threads": 0}, strict=("lr", "temperature"))
        if not 0.0 <= out.paraphrase <= 1.0:
            raise ConfigError(f"paraphrase is a share of the training prompts, in [0, 1], got {out.paraphrase}. "
                              "Fix: use e.g. 0.5, or 0 to train on the requests as prepared.")
        check_minimums(out.curriculum, {"probe_every": 0, "min_active": 0, "window": 0, "assessments": 1,
                                        "screen": 0, "screen_answered": 0},
                       prefix="curriculum.")
        if out.num_generations < 2:
            raise ConfigError(f"num_generations must be at least 2 (GRPO compares a prompt's completions), got "
                              f"{out.num_generations}. Fix: pass --num-generations 4.")
        return out


def vllm_available() -> bool:
    """The ``vllm`` package is installed (TRL's check, which reads package metadata without importing it)."""
    from trl.import_utils import is_vllm_available

    return is_vllm_available()


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wrong_item_name(item_id: str, row: dict, titles: dict[str, str], years: dict[str, int | None],
                    longer_titles=None):
    """How a completion's reasoning can name the item it wrongly recommended (RAAE's penalty target): its
    title (with the year when another candidate shares the title), its candidate number, and the catalog's
    titles that contain its title (``longer_titles``, a :class:`rerec.train.raae.LongerTitles`), whose
    mentions do not name it."""
    from rerec.train.raae import ItemName

    candidates = [str(c) for c in row["candidates"]]
    title = titles.get(item_id, item_id)
    shared = sum(titles.get(c) == title for c in candidates) > 1
    number = candidates.index(item_id) + 1 if item_id in candidates else None
    longer = longer_titles.containing(title) if longer_titles is not None else ()
    return ItemName(title=title, number=number, year=years.get(item_id), year_required=shared, longer=longer)


def build_scorer(data_dir, graphs_dir, reward_dir, cfg: RFTConfig, titles: dict[str, str],
                 years: dict[str, int | None] | None = None):
    """The dual-graph :class:`~rerec.reward.scorer.RewardScorer` and an adapter to the trainer's
    ``ScoreFn``."""
    from rerec.reward.scorer import RewardScorer
    from rerec.train.grpo import ScoredCompletion

    graph = embeddings = None
    if cfg.reward.use_qas and graphs_dir is not None:
        from rerec.graphs.attributes import ItemAttributeGraph

        graph = ItemAttributeGraph.load(graphs_dir)
    if cfg.reward.use_pas and reward_dir is not None:
        from rerec.reward.alignment import ItemEmbeddingTable

        embeddings = ItemEmbeddingTable.load(reward_dir)
    years = years or {}
    scorer = RewardScorer(cfg.reward, titles=titles, years=years, attribute_graph=graph, embeddings=embeddings)
    from rerec.train.raae import LongerTitles

    longer_titles = LongerTitles(titles.values())

    def score_fn(texts: list[str], rows: list[dict]) -> list[ScoredCompletion]:
        out = []
        for b, row in zip(scorer.score(texts, rows), rows, strict=True):
            positives = {str(p) for p in row["positives"]}
            correct = b.recommended is not None and b.recommended in positives
            wrong = [] if correct or b.recommended is None else [wrong_item_name(b.recommended, row, titles, years,
                                                                                   longer_titles)]
            out.append(ScoredCompletion(total=b.total, normalised=scorer.normalised(b.total), correct=correct,
                                        wrong_item_names=wrong, parsed=bool(b.parsed.ok), components=b.metrics()))
        return out

    return scorer, score_fn


def training_rows(view, queries, cfg: RFTConfig, data_seed: int = 0) -> list[dict]:
    """The training prompts' query rows as RFT shows them (shrunk to ``n_candidates``, in display order):
    the train split, or its seeded sample of ``n_train`` (of ``curriculum.screen`` when screening; of the
    smaller of the two when both are set); a ``paraphrase`` share of them reworded as ``prepare-data
    --paraphrase`` with the data's seed ``data_seed`` would have worded them."""
    from rerec.data.queries import paraphrased_request
    from rerec.prompt import shrink_candidates
    from rerec.train.inputs import query_rows

    limit, screen = cfg.n_train, cfg.curriculum.screened
    if screen:
        limit = min(cfg.n_train, screen) if cfg.n_train else screen
    rows = query_rows(queries, "train", limit, cfg.seed)
    if not rows:
        raise InputError("the queries have no train split", column="split",
                         fix="rerun 'rerec prepare-data' with a non-zero train fraction")
    if cfg.paraphrase > 0:
        for row in rows:
            row["text"] = paraphrased_request(row, view.titles, data_seed, cfg.paraphrase) or row["text"]
    return [shrink_candidates(row, cfg.n_candidates, view, seed=cfg.seed) for row in rows]


def screened_rows(rows: list[dict], model, tokenizer, view, cfg: RFTConfig, saved: Path) -> tuple[list[dict], dict]:
    """The rows RFT trains on after screening (:mod:`rerec.train.screen`): those the start model misses, with
    ``curriculum.screen_answered`` answered ones per missed one, at least ``batch_size`` and the curriculum's
    ``min_active`` in all; and the screening's summary. A screening saved at ``saved`` (by the run
    being resumed) is reused, so a resumed run trains on the same prompts."""
    from rerec.train.screen import ScreenResult, keep_for_training, screen_prompts

    ids = [str(r["query_id"]) for r in rows]
    result = ScreenResult.load(saved) if saved.exists() else None
    reused = result is not None
    if result is not None and result.prompt_ids != ids:
        raise RerecError(f"the screening saved in {saved} belongs to other training prompts. Fix: delete "
                         f"{saved.parent} to start again.")
    if result is None:
        result = screen_prompts(model, tokenizer, rows, view, mode=cfg.context_mode, max_history=cfg.max_history,
                                max_new_tokens=cfg.max_new_tokens)
        saved.parent.mkdir(parents=True, exist_ok=True)
        result.save(saved)
    keep = set(keep_for_training(ids, result.hits, max(cfg.batch_size, cfg.curriculum.min_active), cfg.seed,
                                 answered_per_missed=cfg.curriculum.screen_answered))
    summary = {**result.summary(), "trained": len(keep)}
    log.info("screening%s: the start model missed %d of %d training prompts (%s) in %.0f s; training on %d",
             " (saved by the run being resumed)" if reused else "", summary["missed"], summary["screened"],
             summary["missed_by_type"], result.seconds, len(keep))
    return [r for r in rows if str(r["query_id"]) in keep], summary


def build_dataset(rows: list[dict], view, cfg: RFTConfig):
    """The trainer's dataset: one record per row (chat messages, prompt id, type, candidates, positives,
    stored conditions)."""
    from datasets import Dataset

    from rerec.prompt import build_messages

    if len(rows) < cfg.batch_size:
        # TRL's RepeatSampler drops an incomplete batch of prompts: fewer prompts than a step takes would train
        # nothing at all (0 steps, no error) in the arms without the curriculum
        screen = cfg.curriculum.screened
        limits = f"n_train={cfg.n_train}" + (f", curriculum.screen={screen}" if screen else "")
        raise ConfigError(f"the train split gives {len(rows)} prompt(s) ({limits}) but one RFT step takes "
                          f"batch_size={cfg.batch_size} prompts, so no step could run. Fix: raise "
                          f"{'curriculum.screen and ' if screen else ''}n_train to at least {cfg.batch_size} "
                          f"(0 = the whole split) or lower batch_size.")
    records = []
    for shown in rows:
        messages = build_messages(shown, view, cfg.context_mode, include_history=cfg.max_history > 0,
                                  max_history=cfg.max_history)
        conditions = shown.get("conditions")
        records.append({"prompt": messages, "prompt_id": str(shown["query_id"]), "type": str(shown.get("type", "")),
                        "candidates": [str(c) for c in shown["candidates"]],
                        "positives": [str(p) for p in shown["positives"]],
                        "conditions": conditions if isinstance(conditions, str) else json.dumps(conditions or [])})
    return Dataset.from_list(records)


def _difficulty_figure(curriculum):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(curriculum.active_difficulties(), bins=20, range=(0, 1))
    ax.axvline(curriculum.config.tau, color="k", linestyle="--", label="tau")
    ax.set_xlabel("difficulty d = mean(1 - r_hat)")
    ax.set_ylabel("prompts")
    ax.set_title(f"epoch {curriculum.epoch}: {len(curriculum.active)} active, {len(curriculum.mastered)} mastered")
    ax.legend()
    return fig


def rft(data_dir: str | Path, graphs_dir: str | Path | None, reward_dir: str | Path | None,
        model_dir: str | Path | None, out_dir: str | Path, config: RFTConfig | None = None,
        resume: bool = False) -> dict:
    """Run curriculum GRPO with RAAE; returns the metrics (also in ``metrics.json``).

    Steps: find the checkpoint to resume from; load the start model, the training prompts, the reward and
    the curriculum; choose the rollout engine; train; rank 0 writes the model folder."""
    from rerec.models.loading import load_trainable_model, seed_torch
    from rerec.taste import attach_taste, taste_source
    from rerec.train.callbacks import TrackingCallback, deadline_after
    from rerec.train.inputs import data_seed, load_view_and_queries

    cfg = (config or RFTConfig()).resolved()
    precision = resolve_precision(cfg.precision)
    seed_torch(cfg.seed, cfg.threads)
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".rft-work")
    ckpt_dir = work / "checkpoints"
    resume_from = checkpoint_to_resume(ckpt_dir, resume, cfg.curriculum.enabled)
    if not resume:  # a screening left by an earlier run (of another start model, perhaps) is not reused
        (work / SCREEN_FILE).unlink(missing_ok=True)
    start_model = start_model_name(model_dir, cfg)
    view, queries = load_view_and_queries(data_dir, graphs_dir)
    model, tokenizer = load_trainable_model(start_model, cfg.use_lora, cfg.lora_r)
    view.decades = bool(cfg.decade_evidence)
    if cfg.taste_evidence:  # after the data's and the model's own checks
        attach_taste(view, graphs_dir, taste_source(True, reward_dir))
    tokenizer.padding_side = "left"
    # Several processes (torchrun): every rank trains, only rank 0 tracks and writes the output. The stage's
    # MLflow run opens before the screening, so the run's wall time (run.json's stage_seconds) includes it.
    main_process = is_main_process()
    with stage_tracking(cfg, main_process) as tracker:
        rows, screening = training_rows(view, queries, cfg, data_seed(data_dir)), None
        if cfg.curriculum.screened:
            rows, screening = screened_rows(rows, model, tokenizer, view, cfg, work / SCREEN_FILE)
        train_ds = build_dataset(rows, view, cfg)
        scorer, score_fn = build_scorer(data_dir, graphs_dir, reward_dir, cfg, dict(view.titles), dict(view.years))
        curriculum = build_curriculum(train_ds["prompt_id"], cfg)
        metrics: dict[str, Any] = {"profile": cfg.profile, "model": start_model, "ablation": cfg.ablation,
                                   "n_train_prompts": len(train_ds),
                                   "resumed_from": str(resume_from) if resume_from else None}
        if screening is not None:
            metrics.update({f"screen_{k}": v for k, v in screening.items()})
        history: list[dict] = []
        deadline = deadline_after(cfg.time_budget_s)  # the time budget is the training's, screening aside
        engine, engine_reason = rollout_engine(cfg, precision)
        metrics.update(precision.params(), rollout_engine=engine, rollout_engine_reason=engine_reason)
        metrics["world_size"] = world_size()
        tracker.log_params({**precision.params(), "rollout_engine_used": engine, "rollout_engine_reason": engine_reason})
        epoch_log = EpochLog(tracker, cfg.n_samples_logged)
        tracking = TrackingCallback(tracker, history, deadline=deadline, stop_after_steps=cfg.stop_after_steps)
        trainer = build_trainer(model, tokenizer, train_ds, cfg, precision, engine, ckpt_dir, score_fn, scorer,
                                curriculum, epoch_log, tracking)
        epoch_log.trainer = trainer
        metrics.update(train(trainer, resume_from, history, scorer, curriculum),
                       stopped_by_time_budget=int(tracking.stopped_by_deadline))
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float) and v is not None})
        if not main_process:
            return metrics
        write_rft_folder(out_dir, trainer.model, tokenizer, cfg, {**metrics, "history": history, "config": asdict(cfg)},
                         trainer.sample_completions, ckpt_dir, curriculum)
        shutil.rmtree(work, ignore_errors=True)
        tracker.log_artifact(out_dir / "metrics.json")
        if (out_dir / SCREEN_FILE).exists():
            tracker.log_artifact(out_dir / SCREEN_FILE)
        tracker.log_artifact(out_dir / "samples.jsonl", artifact_path="samples")
    return metrics


def checkpoint_to_resume(ckpt_dir: Path, resume: bool, need_curriculum: bool) -> Path | None:
    """With ``resume``, the newest complete checkpoint in ``ckpt_dir`` (``None``: start from the beginning).
    Without it, checkpoints left by an earlier run are refused rather than silently overwritten."""
    resume_from = latest_checkpoint(ckpt_dir, need_curriculum=need_curriculum) if resume else None
    if not resume and ckpt_dir.exists() and any(ckpt_dir.glob("checkpoint-*")):
        raise RerecError(f"A previous rft run left checkpoints in {ckpt_dir}. Fix: pass --resume to continue it, "
                         f"or delete that folder to start again.")
    if resume and resume_from is None:
        log.info("--resume: no complete checkpoint in %s, starting from the beginning", ckpt_dir)
    return resume_from


def start_model_name(model_dir: str | Path | None, cfg: RFTConfig) -> str:
    """The model RFT starts from: ``model_dir``, else the profile's. A KL term (``beta`` > 0) with full
    fine-tuning needs it as a folder or a built-in name: TRL loads the reference model from it."""
    start_model = str(model_dir) if model_dir is not None else get_profile(cfg.profile).model
    if cfg.beta > 0 and not cfg.use_lora and not Path(start_model).is_dir() and start_model not in ("tiny", "smollm2"):
        raise ConfigError(f"beta={cfg.beta} with full fine-tuning needs the start model as a folder (TRL loads the "
                          f"reference from it), got {start_model!r}. Fix: pass --model <folder> or use LoRA.")
    return start_model


def build_curriculum(prompt_ids: list[str], cfg: RFTConfig):
    """The online curriculum over the training prompts; ``None`` when it is off."""
    if not cfg.curriculum.enabled:
        return None
    from rerec.train.curriculum import CurriculumScheduler

    return CurriculumScheduler(prompt_ids, cfg.curriculum, seed=cfg.seed)


def rollout_engine(cfg: RFTConfig, precision: Any) -> tuple[str, str]:
    """``(engine, reason)``: who generates the rollouts (:func:`rerec.train.grpo.choose_rollout_engine`)."""
    from rerec.train.grpo import choose_rollout_engine

    engine, engine_reason = choose_rollout_engine(cfg.rollout_engine, precision.device == "cuda", vllm_available())
    log.info("RFT rollouts: %s (%s)", engine, engine_reason)
    return engine, engine_reason


def stage_tracking(cfg: RFTConfig, main_process: bool):
    """The stage's MLflow run on the main process; a tracker that records nothing on the other ranks."""
    if not main_process:
        return contextlib.nullcontext(StageTracker(None))
    return stage_run(STAGE, cfg, tags={"rerec.profile": cfg.profile, "rerec.ablation": cfg.ablation})


class EpochLog:
    """The curriculum's ``on_new_epoch``: its counts at each epoch and, after the first, the difficulty
    histogram and the ``n_samples`` latest sample completions of ``trainer`` (set once it exists)."""

    def __init__(self, tracker: StageTracker, n_samples: int) -> None:
        self.tracker, self.n_samples = tracker, n_samples
        self.trainer: Any = None

    def __call__(self, cur) -> None:
        from rerec.train.curriculum import describe_window

        summary = cur.window_summary()
        log.info(describe_window(summary))
        metrics = {"curriculum/active": len(cur.active), "curriculum/mastered": len(cur.mastered),
                   "curriculum/probes": len(cur.probes), "curriculum/epoch": cur.epoch}
        if summary["n_active_before"] is not None:  # what the re-assessment after the last window changed
            metrics.update({"curriculum/newly_mastered": len(summary["newly_mastered"]),
                            "curriculum/forgotten": len(summary["forgotten"]),
                            "curriculum/active_change": summary["n_active"] - summary["n_active_before"]})
            if summary["mean_difficulty"] is not None:
                metrics["curriculum/window_difficulty"] = summary["mean_difficulty"]
        self.tracker.log_metrics(metrics, step=cur.epoch)
        if not self.tracker.enabled or cur.epoch <= 0:
            return
        import matplotlib.pyplot as plt

        fig = _difficulty_figure(cur)
        self.tracker.log_figure(fig, f"curriculum/difficulty_epoch_{cur.epoch:03d}.png")
        plt.close(fig)
        if self.trainer is not None and self.trainer.sample_completions:
            import pandas as pd

            samples = list(self.trainer.sample_completions)[-self.n_samples:]
            self.tracker.log_table(pd.DataFrame(samples), f"samples/epoch_{cur.epoch:03d}.json")


def build_trainer(model, tokenizer, train_ds, cfg: RFTConfig, precision: Any, engine: str, ckpt_dir: Path, score_fn,
                  scorer, curriculum, on_new_epoch, callback):
    """The :class:`~rerec.train.grpo.ReRecGRPOTrainer`: ``batch_size`` prompts x ``num_generations``
    completions a step, a log every step, a checkpoint every ``save_steps`` into ``ckpt_dir`` (the last two
    kept)."""
    from trl import GRPOConfig

    from rerec.train.curriculum import window_size
    from rerec.train.grpo import ReRecGRPOTrainer, rollout_config

    per_step = cfg.batch_size * cfg.num_generations
    # the curriculum re-assesses difficulty after each window of prompts, sized from the run's budget
    window = window_size(cfg.curriculum, len(train_ds), cfg.steps, cfg.batch_size * world_size())
    args = GRPOConfig(
        **precision.trainer_kwargs(), **rollout_config(engine),
        output_dir=str(ckpt_dir), max_steps=cfg.steps, per_device_train_batch_size=per_step,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_new_tokens,
        learning_rate=cfg.lr, beta=cfg.beta, temperature=cfg.temperature, logging_steps=1,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2, report_to=[], seed=cfg.seed,
        gradient_checkpointing=False, disable_tqdm=False, dataloader_num_workers=0,
    )
    return ReRecGRPOTrainer(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer, score_fn=score_fn,
        advantage=cfg.advantage, reward_range=scorer.bounds[1] - scorer.bounds[0],
        curriculum=curriculum, on_new_epoch=on_new_epoch, callbacks=[callback],
        prompts_per_epoch=window if curriculum is not None else None,
    )


def train(trainer, resume_from: Path | None, history: list[dict], scorer, curriculum) -> dict:
    """Train (from ``resume_from`` when given); the run's metrics: steps, time, peak memory, the last logged
    reward, parse rate and accuracy (from ``history``), the reward's bounds and the curriculum's state."""
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_s = time.perf_counter() - start
    last = {k: v for entry in history for k, v in entry.items()}
    metrics = dict(steps=int(result.global_step), train_s=train_s, peak_memory_mb=peak_memory_mb(),
                   final_reward=last.get("reward"), final_parse_rate=last.get("rerec/parse_rate"),
                   final_accuracy=last.get("rerec/accuracy"), reward_bounds=list(scorer.bounds))
    if curriculum is not None:
        metrics.update(curriculum_epoch=curriculum.epoch, curriculum_active=len(curriculum.active),
                       curriculum_mastered=len(curriculum.mastered), curriculum_stopped=curriculum.stopped,
                       curriculum_window=trainer.prompts_per_epoch)
    return metrics


def write_rft_folder(out_dir: Path, model, tokenizer, cfg: RFTConfig, metrics: dict, samples, ckpt_dir: Path,
                     curriculum) -> None:
    """The output, all at once: the model folder (:func:`rerec.models.folder.write_model_folder`), the last
    complete checkpoint under ``checkpoints/`` and the curriculum's state in ``curriculum.json``."""
    with atomic_dir(out_dir) as tmp:
        write_model_folder(tmp, model, tokenizer, lora=cfg.use_lora, metrics=metrics, samples=samples)
        last_ckpt = latest_checkpoint(ckpt_dir, need_curriculum=cfg.curriculum.enabled)
        if last_ckpt is not None:
            shutil.copytree(last_ckpt, tmp / "checkpoints" / last_ckpt.name)
        if curriculum is not None:
            write_json(tmp / "curriculum.json", curriculum.state_dict())
        if (ckpt_dir.parent / SCREEN_FILE).exists():
            shutil.copy2(ckpt_dir.parent / SCREEN_FILE, tmp / SCREEN_FILE)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="prepare-data output folder (with queries).")
    parser.add_argument("--graphs", type=Path, default=None, help="build-graphs output folder (QAS).")
    parser.add_argument("--reward", type=Path, default=None, help="train-reward-gnn output folder (PAS).")
    parser.add_argument("--model", default=None, help="Start model: the SFT output or any model folder, or "
                                                      "'tiny' / 'smollm2' (default: the profile's).")
    parser.add_argument("--out", required=True, type=Path, help="Output model folder.")
    parser.add_argument("--resume", action="store_true", help="Continue from the newest complete checkpoint in "
                                                              "<out>.rft-work/checkpoints.")
    add_dataclass_arguments(parser, RFTConfig)


def cli_main(args: argparse.Namespace) -> int:
    metrics = rft(args.data, args.graphs, args.reward, args.model, args.out, dataclass_from_args(RFTConfig, args),
                  resume=args.resume)
    keys = ["steps", "train_s", "final_reward", "final_parse_rate", "final_accuracy", "curriculum_active",
            "curriculum_mastered", "peak_memory_mb", "resumed_from"]
    print(json.dumps({k: metrics.get(k) for k in keys}, indent=2))
    return 0
