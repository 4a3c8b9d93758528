"""Model profiles: one model plus the budgets that make it affordable where it runs.

On a CPU every prompt and completion token costs, generation most of all, so the CPU profiles keep
prompts short (few candidates in ``evidence`` mode, short history) and completions short
(``docs/design.md``, "Model profiles"); ``paper`` holds the GPU settings of ReRec (arXiv 2604.07851).

Stages read a profile for their defaults; any field can still be overridden by the stage's own flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from rerec.errors import ConfigError


@dataclass(frozen=True)
class ModelProfile:
    name: str = field(metadata={"help": "Profile name."})
    model: str = field(metadata={"help": "Model: 'smollm2', 'tiny', a model folder or a hub id."})
    use_lora: bool = field(default=True, metadata={"help": "LoRA adapters (peft) instead of full fine-tuning."})
    sft_use_lora: bool | None = field(default=None, metadata={"help": "LoRA for the SFT warm-up (None: use_lora)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    context_mode: str = field(default="evidence", metadata={"help": "Prompt context: 'evidence' or 'titles'."})
    n_candidates: int = field(default=20, metadata={"help": "Candidates shown per prompt."})
    max_history: int = field(default=5, metadata={"help": "History titles shown per prompt (0 = none)."})
    taste_evidence: bool = field(default=False, metadata={
        "help": "Evidence lines carry each candidate's taste rank for the user (rerec.taste): needs the reward "
                "stage's LightGCN."})
    decade_evidence: bool = field(default=False, metadata={
        "help": "Evidence lines name each candidate's decade beside its year (\"Dumbo (1941) - 1940s; ...\")."})
    max_prompt_tokens: int = field(default=768, metadata={"help": "Prompt length limit in tokens."})
    max_new_tokens: int = field(default=768, metadata={"help": "Completion length limit in tokens."})
    trace_styles: str = field(default="checklist,eliminate,direct",
                              metadata={"help": "SFT trace styles (rerec.train.traces.STYLES), comma-separated."})
    sft_steps: int = field(default=200, metadata={"help": "SFT warm-up optimiser steps."})
    sft_batch_size: int = field(default=8, metadata={"help": "SFT batch size (per step)."})
    sft_lr: float = field(default=2e-4, metadata={"help": "SFT learning rate."})
    sft_no_fit_rate: float = field(default=0.0, metadata={
        "help": "Share of SFT examples shown without their match (table/scan traces only; "
                "rerec.train.traces.no_fit_query)."})
    rft_batch_size: int = field(default=8, metadata={"help": "RFT prompts per step."})
    num_generations: int = field(default=5, metadata={"help": "RFT completions per prompt (GRPO's G)."})
    rft_lr: float = field(default=5e-6, metadata={"help": "RFT learning rate."})
    rft_steps: int = field(default=500, metadata={"help": "RFT optimiser steps."})
    eval_queries: int = field(default=0, metadata={"help": "Evaluation subset size (stratified; 0 = all)."})
    rollout_engine: str = field(default="rerec", metadata={
        "help": "Who generates RFT rollouts: 'rerec' (the project's generator) or 'vllm' (TRL's vLLM integration, "
                "colocated; GPU with vllm installed, else rerec's generator, logged)."})

    def replace(self, **changes: object) -> ModelProfile:
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, ModelProfile] = {
    # From scratch on a CPU: full fine-tuning, few candidates, no history, very short prompts, the two
    # shortest trace styles (traces must fit max_new_tokens to parse).
    "tiny": ModelProfile(
        name="tiny", model="tiny", use_lora=False, context_mode="evidence", n_candidates=4, max_history=0,
        max_prompt_tokens=256, max_new_tokens=96, trace_styles="direct,eliminate", sft_steps=600,
        sft_batch_size=16, sft_lr=1e-3,
        rft_batch_size=8, num_generations=4, rft_lr=1e-4, rft_steps=300, eval_queries=100,
    ),
    # The embedded pretrained model on a CPU: a handful of candidates shown with evidence, "scan" traces (a row
    # per candidate up to the one that fits, then the box). 224 completion tokens: room for the longest scan
    # traces of 4 candidates. 400 SFT steps: the scan rows' checks are learned between steps 100 and 200
    # (validation Acc@1 0.585 at 80 steps, 0.845 at 400, both before the candidates were listed in taste order
    # and the SFT types balanced; 0.89 at 400 steps with both, docs/results.md). make run's default preset
    # cuts this to 150 steps of 2 examples to fit its 15 minutes (0.775 on 200 validation queries). SFT and
    # RFT fine-tune every weight: LoRA RFT (r 16, lr 2e-4) did not move an 80-step model in 32 steps; full
    # fine-tuning at lr 1e-5, 16 steps of 4 prompts x 4 completions, raised it with 3 seeds of 3 (+0.057
    # [+0.019, +0.095] on the whole validation split, seed mean), where lr 2e-5 went up with one seed and
    # down with another; from the 100 x 2 model in taste order the same RFT moved nothing (+0.005), nor from
    # the 400-step model (+0.005; docs/results.md). The 400 SFT steps took 40 minutes on 2 CPU cores (with
    # the gradient checkpointing SFT has since dropped: about 1.2x faster now), the 16 RFT steps 9.
    "smollm2": ModelProfile(
        name="smollm2", model="smollm2", use_lora=False, sft_use_lora=False, lora_r=16, context_mode="evidence",
        n_candidates=4, max_history=0, taste_evidence=True, max_prompt_tokens=320, max_new_tokens=224,
        trace_styles="scan",
        sft_steps=400, sft_batch_size=4, sft_lr=1e-4, rft_batch_size=4, num_generations=4, rft_lr=1e-5,
        rft_steps=16, eval_queries=60,
    ),
    # ReRec's GPU settings.
    "paper": ModelProfile(
        name="paper", model="Qwen/Qwen2.5-3B-Instruct", use_lora=True, lora_r=64, context_mode="titles",
        n_candidates=20, max_history=10, max_prompt_tokens=768, max_new_tokens=768, sft_steps=200,
        sft_batch_size=16, sft_lr=1e-5, rft_batch_size=16, num_generations=5, rft_lr=5e-6, rft_steps=1000,
        eval_queries=0, rollout_engine="vllm",
    ),
}


def get_profile(name: str) -> ModelProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"Unknown model profile '{name}'. Fix: use one of {', '.join(PROFILES)}.") from None
