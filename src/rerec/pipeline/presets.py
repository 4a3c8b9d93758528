"""Run presets: per-stage config dicts (JSON pipeline parameters) for one run of the train pipeline, chosen
with ``rerec run --preset NAME``, ``make run PRESET=NAME`` or the pipeline parameter ``preset``.

A preset is not a model profile (:mod:`rerec.models.profiles`): a model profile is one model with the budgets
that make it affordable where it runs; a preset says, for every stage, which model profile it uses and what it
changes on top. Each dict holds only fields the stage's config dataclass has; anything left out takes the
stage's own default or its model profile's. ``tests/test_pipeline_run.py`` checks every dict against the
dataclasses, so a renamed field fails a test rather than a run.

- ``smoke``: the whole DAG in a few minutes on the tiny model, numbers meaningless (for tests).
- ``tiny``: the tiny from-scratch model with its profile budgets.
- ``default`` (``make run``): the embedded SmolLM2 with ``scan`` traces (the ``smollm2`` model profile),
  with taste evidence, sized for 15 minutes on a 2-core CPU with bf16 and rerec's generator: LightGCN's 60
  epochs (its 120 s cap is a guard that the slowest cores seen, about 1 s an epoch, stay under: with the cap
  at 45 s the epochs, and with them the taste ranks every prompt shows, depended on the machine's speed); up
  to 200 SFT steps of 2 examples at lr 2e-4 (twice the profile's rate: +0.085 [+0.025, +0.15] over 1e-4 on 200 validation
  queries at 50 steps, one seed; experiments/results/sft50_lr; 100 steps of 2 beat 50 of 4 on the same
  examples, experiments/results/taste_order; 150 steps, which fit the time 100 took before SFT dropped
  gradient checkpointing, 0.775 against 0.755, not separated, experiments/results/explicit_checks),
  one validation pass, at the end (each pass costs about 20 s of the cap), capped at 350 s of training
  (the 2 cores have run from 1.7 to 3.2 s a step: 200 steps on fast ones, about 110 on the slowest; the cap
  keeps the run inside 15 minutes at the cost of steps; freezing the bottom 15 layers buys 220 steps in that time but no
  better model over three seeds, experiments/results/frozen_layers), with the traces that rule a row out
  oversampled to as many as those that accept the first row, within each type (``balance_rejections``: +0.072 [+0.038, +0.108] on 200
  validation queries over three seeds, experiments/results/balance_rejections); not ``derive_decades`` (the
  candidate's decade written before a decade check: +0.075 [+0.036, +0.116] on the 192 explicit validation
  queries over three seeds of 200 steps, but −0.14 [−0.24, −0.05] on explicit ones over two seeds of 150,
  which is where the cap stops SFT on slower cores; experiments/results/derive_decades); the decision
  tokens (a check's yes/no, a row's fits/no) weighted 5 in the loss (``decision_weight``: +0.035 [+0.012,
  +0.058] on 200 validation queries over three seeds of 200 steps, +0.12 on the 192 explicit ones, no seed
  worse; experiments/results/decision_weight); 12 RFT steps of 4 prompts x 4 completions with half of
  the training requests reworded in the paraphrase templates (``paraphrase``: +0.006 [+0.001, +0.012]
  over the SFT model on the 531 validation queries over three seeds, and at seed 0 +0.013 over 12 steps on
  the requests as prepared; 24 steps, about 4 minutes more, +0.014 [+0.008, +0.020] over
  four seeds; experiments/results/rft_paraphrase; the 4 steps of 2 x 4 before moved nothing), capped at
  300 s; the test report on 50 queries per type (200, so that its intervals say something) with
  10 per type again in unseen phrasing, the validation gate on 10 per type (the new model and the champion
  only: the pipeline leaves the SFT model out of it); in both the zero-shot base model answers the retention
  probes only (``rank_base`` off: it never answers in the format, and on the 30 s and 25 s it had before,
  about 50 s of the run, it reached 123 of the 200 test queries and parsed none of them:
  experiments/results/make_run_default_cpu/run_19b0d74): short MMLU (32 questions; the promotion gate
  needs the MMLU ratio) and IFEval checks, each capped. SmolLM2 rather than ``tiny``: the from-scratch model learns the answer format but not the choice.
- ``smollm2``: the embedded pretrained SmolLM2-135M-Instruct with CPU budgets.
- ``paper``: the paper's GPU settings (Qwen2.5-3B-Instruct, G=5, lr 5e-6, 768/768 tokens).
"""

from __future__ import annotations

import copy
from typing import Any

from rerec.errors import ConfigError

STAGES = ("prepare", "graph", "reward", "sft", "rft", "eval", "gate_eval", "register")

_SMOKE_EVAL = {"profile": "tiny", "n_boot": 50, "max_queries_per_type": 3, "max_new_tokens": 32,
               "rec_time_budget_s": 60.0, "mmlu_max_questions": 8, "mmlu_time_budget_s": 20.0,
               "ifeval_max_instructions": 4, "ifeval_max_new_tokens": 16, "ifeval_time_budget_s": 20.0,
               "n_traces": 1}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "prepare": {"seed": 0, "n_explicit": 60, "n_implicit": 40, "n_misinformed": 30, "n_interest": 30},
        "graph": {},
        "reward": {"seed": 0, "epochs": 2, "eval_every": 1},
        "sft": {"profile": "tiny", "seed": 0, "steps": 3, "batch_size": 4, "n_eval": 4, "eval_before": False,
                "max_new_tokens": 16},
        "rft": {"profile": "tiny", "seed": 0, "steps": 2, "batch_size": 4, "num_generations": 2,
                "max_new_tokens": 16, "save_steps": 1},
        "eval": {**_SMOKE_EVAL, "split": "test"},
        "gate_eval": {**_SMOKE_EVAL, "split": "val"},
        "register": {"min_general_retention": 0.0},
    },
    "tiny": {
        "prepare": {"seed": 0},
        "graph": {},
        "reward": {"seed": 0},
        "sft": {"profile": "tiny", "seed": 0},
        "rft": {"profile": "tiny", "seed": 0},
        "eval": {"profile": "tiny", "split": "test"},
        "gate_eval": {"profile": "tiny", "split": "val"},
        "register": {},
    },
    # make run: SmolLM2 with scan traces and cut budgets (see the module docstring)
    "default": {
        "prepare": {"seed": 0},
        "graph": {},
        "reward": {"seed": 0, "max_seconds": 120.0},
        "sft": {"profile": "smollm2", "seed": 0, "steps": 200, "batch_size": 2, "lr": 2e-4, "time_budget_s": 350.0,
                "n_eval": 4, "eval_before": False, "evaluations": 1, "balance_rejections": True,
                "decision_weight": 5.0},
        "rft": {"profile": "smollm2", "seed": 0, "steps": 12, "batch_size": 4, "paraphrase": 0.5,
                "time_budget_s": 300.0},
        "eval": {"profile": "smollm2", "split": "test", "max_queries_per_type": 50, "rec_time_budget_s": 240.0,
                 "rank_base": False, "batch_size": 64, "mmlu_max_questions": 32,
                 "mmlu_time_budget_s": 10.0, "ifeval_max_instructions": 6, "ifeval_max_new_tokens": 48,
                 "ifeval_time_budget_s": 6.0},
        "gate_eval": {"profile": "smollm2", "split": "val", "max_queries_per_type": 10, "rec_time_budget_s": 60.0,
                      "batch_size": 64, "rank_base": False, "unseen_phrasing_per_type": 0,
                      "mmlu_max_questions": 32, "mmlu_time_budget_s": 10.0, "ifeval_max_instructions": 4, "ifeval_max_new_tokens": 48,
                      "ifeval_time_budget_s": 8.0},
        "register": {},
    },
    "smollm2": {
        "prepare": {"seed": 0},
        "graph": {},
        "reward": {"seed": 0},
        "sft": {"profile": "smollm2", "seed": 0},
        "rft": {"profile": "smollm2", "seed": 0},
        "eval": {"profile": "smollm2", "split": "test"},
        "gate_eval": {"profile": "smollm2", "split": "val"},
        "register": {},
    },
    "paper": {
        "prepare": {"seed": 0},
        "graph": {},
        "reward": {"seed": 0},
        "sft": {"profile": "paper", "seed": 0},
        "rft": {"profile": "paper", "seed": 0},
        "eval": {"profile": "paper", "split": "test"},
        "gate_eval": {"profile": "paper", "split": "val"},
        "register": {},
    },
}


def preset_configs(name: str) -> dict[str, dict[str, Any]]:
    """A deep copy of the preset's per-stage config dicts."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown run preset '{name}'. Fix: use one of {', '.join(PRESETS)}.")
    return copy.deepcopy(PRESETS[name])


def stage_config_classes() -> dict[str, type]:
    """Preset key (stage) -> the stage's config dataclass (imports the stages)."""
    import typing

    from rerec.data.prepare import prepare_data
    from rerec.eval.evaluate import evaluate
    from rerec.graphs.build import build_graphs
    from rerec.registry.register import RegisterConfig
    from rerec.reward.lightgcn import train_reward_gnn
    from rerec.train.rft import rft
    from rerec.train.sft import sft_warmup

    def config_of(fn) -> type:
        hint = typing.get_type_hints(fn)["config"]
        return next((a for a in typing.get_args(hint) if a is not type(None)), hint)

    return {"prepare": config_of(prepare_data), "graph": config_of(build_graphs),
            "reward": config_of(train_reward_gnn), "sft": config_of(sft_warmup), "rft": config_of(rft),
            "eval": config_of(evaluate), "gate_eval": config_of(evaluate), "register": RegisterConfig}
