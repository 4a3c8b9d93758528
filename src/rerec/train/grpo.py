"""``ReRecGRPOTrainer``: TRL's ``GRPOTrainer`` (pinned trl==1.16.0) subclassed, never copied.

What the subclass changes, and where TRL lets it:

- ``_generate_and_score_completions``: calls TRL's own (generation, reference log-probs, the reward
  call, metrics), takes the batch's per-completion scores from the reward function TRL called
  (:class:`ScoringReward`, handed over once per batch), marks the tokens of the segments that name a wrong answer's item, and replaces
  ``output["advantages"]`` (B,) by the per-token (B, T) advantages of the estimator the config names
  (one call into :mod:`rerec.train.raae`; ``grpo`` gives TRL's own values on every token). TRL 1.16's ``_compute_loss`` reads ``inputs["advantages"]`` and only
  unsqueezes it when it is 1-D, so a (B, T) tensor weighs each token's policy-gradient term
  (``tests/test_rft.py`` pins this). The reward is one TRL reward function (:class:`ScoringReward`) that
  calls our scorer and keeps the per-completion breakdowns until this override takes them for the
  advantage, the curriculum and the logs.
- ``_get_train_sampler``: a :class:`CurriculumRepeatSampler` that orders prompts with the
  :class:`~rerec.train.curriculum.CurriculumScheduler` (same repeat layout as TRL's ``RepeatSampler``).
  An epoch is a fixed budget of ``prompts_per_epoch`` prompts (the dataset size by default) drawn from
  the active set, easy to hard, cycled when the active set is smaller, so the Trainer's epoch/step
  arithmetic (and resuming) stays exact.
- ``_get_per_token_logps_and_entropies``: where Triton is missing (the CPU), TRL 1.16 scores *every*
  position, prompt included, through a torch fallback of its chunked Triton kernel — most of a CPU step.
  :func:`completion_logps` asks the model for the completion's logits only (``logits_to_keep``), the
  same numbers (tested against TRL's); with Triton, or for multimodal/MoE inputs, TRL's path runs.
- ``_generate_single_turn`` (rollouts): :func:`rerec.eval.generate.generate_completions`, the project's one
  generation path, sampling at the rollout temperature (top-k / top-p as configured) in the trainer's
  precision (bf16 weights when ``bf16=True``). The weight snapshot it takes of the policy (LoRA merged, cast to bf16 where chosen) is part of
  every step's time. It returns what TRL's own path returns (completion token ids cut after the first EOS,
  no log-probabilities). TRL's generation runs instead with vLLM, TRL's continuous batching, images or
  other multimodal inputs, sharded weights (DeepSpeed/FSDP), sampling options the generator lacks
  (``min_p``, ``repetition_penalty``, ``generation_kwargs``) or a model architecture the lean decoder does
  not run; :meth:`ReRecGRPOTrainer.rollout_fallback_reason` says which.
- ``_save_checkpoint`` / ``_load_optimizer_and_scheduler``: the curriculum state travels with every
  checkpoint (``curriculum_state.json``), next to TRL/HF's model, optimiser, scheduler and RNG states.

Plain GRPO (estimator ``grpo``, no curriculum) keeps TRL's advantages and sampler.
Limitation: the advantage is computed over the completions a process holds; with several processes TRL's
sampler may split a prompt's group across them, so multi-GPU training needs ``num_generations`` to divide
the per-device batch (checked at start).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Sampler
from transformers import TrainerCallback
from trl import GRPOTrainer

from rerec.errors import ConfigError, RerecError
from rerec.io import write_full_cause
from rerec.train.curriculum import CurriculumScheduler
from rerec.train.raae import (
    AdvantageConfig,
    get_advantage_estimator,
    penalised_segments,
    segment_completion,
    token_char_spans,
    token_penalty_mask,
    uniform_groups,
)

log = logging.getLogger(__name__)

CURRICULUM_STATE = "curriculum_state.json"


@dataclass
class ScoredCompletion:
    """What the trainer needs from the reward model for one completion."""

    total: float
    normalised: float  # r_hat in [0, 1], for the curriculum
    correct: bool
    wrong_item_names: list = field(default_factory=list)  # titles / candidate numbers of a wrong answer
    parsed: bool = True
    components: dict = field(default_factory=dict)  # ndcg, recall, hit, qas, pas, format, ...


# (completion texts, dataset rows) -> one ScoredCompletion per completion
ScoreFn = Callable[[list[str], list[dict]], list[ScoredCompletion]]


class ScoringReward:
    """The one reward function the trainer gives TRL, and the hand-over of its per-completion breakdowns.

    TRL calls it inside its own ``_generate_and_score_completions`` (the totals become TRL's rewards, metrics
    and fallback advantages); :meth:`ReRecGRPOTrainer._generate_and_score_completions` then :meth:`take`s the
    breakdowns of that same batch (for RAAE's penalty, the curriculum and the logs). Each batch's scores are
    taken once: a take with no call before it, or with a different count, is an error rather than a stale batch.
    """

    __name__ = "rerec_reward"  # TRL names the reward's metrics after it: rewards/rerec_reward/mean

    def __init__(self, score_fn: ScoreFn) -> None:
        self.score_fn = score_fn
        self._scores: list[ScoredCompletion] | None = None

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float]:
        texts = [_completion_text(c) for c in completions]
        keys = [k for k, v in columns.items() if isinstance(v, list) and len(v) == len(texts)]
        rows = [{k: columns[k][i] for k in keys} for i in range(len(texts))]
        self._scores = list(self.score_fn(texts, rows))
        return [s.total for s in self._scores]

    def take(self, n: int) -> list[ScoredCompletion]:
        """The breakdowns of the batch TRL just scored (``n`` completions), handed over once."""
        scores, self._scores = self._scores, None
        if scores is None:
            raise RuntimeError("no scores to take: TRL did not call the reward function for this batch")
        if len(scores) != n:
            raise RuntimeError(f"reward function scored {len(scores)} completions for {n} inputs")
        return scores


ROLLOUT_ENGINES = ("rerec", "vllm")


def choose_rollout_engine(requested: str, cuda_available: bool, vllm_available: bool) -> tuple[str, str]:
    """``(engine, reason)``: who generates the RFT rollouts.

    ``rerec``: :func:`rerec.eval.generate.generate_completions` inside the trainer (any device). ``vllm``:
    TRL's vLLM integration, colocated with the trainer on its GPU; it needs a CUDA device and the ``vllm``
    package, and falls back to ``rerec`` (with the reason) where either is missing.
    """
    if requested not in ROLLOUT_ENGINES:
        raise ConfigError(f"rollout engine {requested!r} is not one of {', '.join(ROLLOUT_ENGINES)}. Fix: pass "
                          "--rollout-engine rerec or vllm.")
    if requested == "rerec":
        return "rerec", "rerec's generator requested"
    if not cuda_available:
        return "rerec", "vLLM requested, but it needs a CUDA device and none is visible"
    if not vllm_available:
        return "rerec", "vLLM requested, but the vllm package is not installed (pip install vllm)"
    return "vllm", "vLLM colocated with the trainer"


def rollout_config(engine: str) -> dict:
    """``GRPOConfig`` keyword arguments of a rollout engine from :func:`choose_rollout_engine`."""
    if engine == "vllm":
        return {"use_vllm": True, "vllm_mode": "colocate"}
    return {"use_vllm": False}


class CurriculumRepeatSampler(Sampler):
    """TRL's ``RepeatSampler`` layout (each prompt ``mini_repeat_count`` times, chunks of ``batch_size``
    prompts repeated ``repeat_count`` times), with the per-epoch prompt order from the curriculum."""

    def __init__(self, prompt_ids: Sequence[str], curriculum: CurriculumScheduler, mini_repeat_count: int,
                 batch_size: int, repeat_count: int = 1, prompts_per_epoch: int | None = None,
                 on_new_epoch: Callable[[CurriculumScheduler], None] | None = None) -> None:
        self.index_of = {str(p): i for i, p in enumerate(prompt_ids)}
        self.curriculum = curriculum
        self.mini_repeat_count, self.batch_size, self.repeat_count = mini_repeat_count, batch_size, repeat_count
        per_epoch = prompts_per_epoch or len(prompt_ids)
        self.prompts_per_epoch = max(batch_size, per_epoch // batch_size * batch_size)
        self.on_new_epoch = on_new_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_prompts(self) -> list[int]:
        before = self.curriculum.epoch
        order = self.curriculum.begin_epoch(self.epoch) or self.curriculum.prompt_ids
        if self.curriculum.epoch != before and self.on_new_epoch is not None:
            self.on_new_epoch(self.curriculum)
        cycled = [order[i % len(order)] for i in range(self.prompts_per_epoch)]
        return [self.index_of[p] for p in cycled]

    def __iter__(self):
        indexes = self.epoch_prompts()
        chunks = [indexes[i:i + self.batch_size] for i in range(0, len(indexes), self.batch_size)]
        for chunk in chunks:
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        return self.prompts_per_epoch * self.mini_repeat_count * self.repeat_count


class StopOnCurriculumCallback(TrainerCallback):
    """Ends training when the curriculum's 'stop' fallback fired."""

    def __init__(self, curriculum: CurriculumScheduler) -> None:
        self.curriculum = curriculum

    def on_step_begin(self, args, state, control, **kwargs):
        if self.curriculum.stopped:
            control.should_training_stop = True
        return control


def _completion_text(completion) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m.get("content", ""), str))


def completion_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                     temperature: float = 1.0, batch_size: int | None = None,
                     compute_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (and entropies) of the last ``logits_to_keep`` tokens of each sequence under
    ``model`` at ``temperature``, shape (B, logits_to_keep); vocabulary logits are built only for those
    positions, ``batch_size`` sequences at a time."""
    batch_size = batch_size or input_ids.size(0)
    logps, entropies = [], []
    for start in range(0, input_ids.size(0), batch_size):
        ids = input_ids[start:start + batch_size]
        logits = model(input_ids=ids, attention_mask=attention_mask[start:start + batch_size],
                       logits_to_keep=logits_to_keep + 1).logits[:, :-1].float() / temperature
        log_softmax = logits.log_softmax(dim=-1)
        logps.append(log_softmax.gather(-1, ids[:, -logits_to_keep:].unsqueeze(-1)).squeeze(-1))
        if compute_entropy:
            with torch.no_grad():
                entropies.append(-(log_softmax.exp() * log_softmax).sum(-1))
    return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None)


class ReRecGRPOTrainer(GRPOTrainer):
    """GRPO with the dual-graph reward, RAAE (B, T) advantages and the online curriculum.

    Args (besides ``GRPOTrainer``'s, minus ``reward_funcs``, which this class supplies):
        score_fn: ``(completions, rows) -> list[ScoredCompletion]`` (rows are the dataset rows, which
            must carry a string ``prompt_id``).
        advantage: :class:`~rerec.train.raae.AdvantageConfig` (the estimator by name, the segment mode and
            the penalty); ``estimator="grpo"`` gives TRL's advantages.
        reward_range: highest minus lowest achievable reward; the estimator's ``sigma_floor`` is
            ``advantage.sigma_floor`` times it.
        curriculum: a :class:`CurriculumScheduler` over the dataset's ``prompt_id`` column, or None for
            TRL's shuffled sampler.
        prompts_per_epoch: epoch budget for the curriculum sampler (default: dataset size).
        on_new_epoch: called with the curriculum when a new curriculum epoch opens (logging).
    """

    def __init__(self, *args, score_fn: ScoreFn, advantage: AdvantageConfig | None = None, reward_range: float = 1.0,
                 curriculum: CurriculumScheduler | None = None, prompts_per_epoch: int | None = None,
                 on_new_epoch: Callable[[CurriculumScheduler], None] | None = None, n_samples_kept: int = 64,
                 **kwargs) -> None:
        self.advantage = advantage or AdvantageConfig()
        self.estimator = get_advantage_estimator(self.advantage.estimator)  # fails early on a bad name
        if not reward_range > 0:
            raise ValueError(f"reward_range must be > 0, got {reward_range}")
        self.sigma_floor = self.advantage.sigma_floor * reward_range
        self.curriculum = curriculum
        self.prompts_per_epoch = prompts_per_epoch
        self.on_new_epoch = on_new_epoch
        self.sample_completions: deque = deque(maxlen=n_samples_kept)
        self.reward = ScoringReward(score_fn)
        super().__init__(*args, reward_funcs=[self.reward], **kwargs)
        if curriculum is not None:
            self.add_callback(StopOnCurriculumCallback(curriculum))
        if self.accelerator.num_processes > 1 and self.args.per_device_train_batch_size % self.num_generations:
            raise ValueError("the advantage on several processes needs num_generations to divide "
                             "per_device_train_batch_size, so a prompt's group stays on one process")

    # -- log-probabilities --------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        from trl.kernels.chunked_logprob import _use_triton

        if (_use_triton(input_ids.device) or compute_aux_loss
                or any(value is not None for value in multimodal.values())):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        with self.accelerator.autocast():
            logps, entropies = completion_logps(model, input_ids, attention_mask, logits_to_keep,
                                                temperature=self.temperature, batch_size=batch_size,
                                                compute_entropy=compute_entropy)
        return logps, entropies, None

    # -- rollouts -----------------------------------------------------------------------------------
    def rollout_fallback_reason(self, images=None, multimodal_fields=None) -> str | None:
        """Why this batch's rollouts use TRL's own generation instead of rerec's generator (None: they do not)."""
        from rerec.eval.decoder import unsupported_reason

        args = self.args
        reasons = [
            (self.use_vllm, "vLLM generates the rollouts"),
            (self.use_transformers_continuous_batching, "TRL's continuous batching is enabled"),
            (images is not None or bool(multimodal_fields), "the prompts carry images or multimodal inputs"),
            (self.is_deepspeed_enabled or self.is_fsdp_enabled, "the weights are sharded (DeepSpeed/FSDP)"),
            (self.min_p is not None, "min_p sampling"),
            (self.repetition_penalty != 1.0, "a repetition penalty"),
            (args.generation_kwargs is not None, "extra generation_kwargs"),
        ]
        for applies, reason in reasons:
            if applies:
                return reason
        return unsupported_reason(self.accelerator.unwrap_model(self.model_wrapped))

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        reason = self.rollout_fallback_reason(images, multimodal_fields)
        if reason is not None:
            if reason != getattr(self, "_rollout_fallback_logged", None):
                log.info("RFT rollouts: TRL's generation (%s)", reason)
                self._rollout_fallback_logged = reason
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images=has_tool_images)
        from trl.extras.profiling import profiling_context

        from rerec.eval.generate import generate_completions

        # the seed comes from torch's global generator, which TRL seeds per process and checkpoints save
        seed = int(torch.randint(0, 2**62, (1,)).item())
        model = self.accelerator.unwrap_model(self.model_wrapped)
        # the trainer's own mixed precision (the stage builds it from resolve_precision) decides the rollouts'
        dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else torch.float32
        with profiling_context(self, "rerec.generate"):
            result = generate_completions(model, self._tokenizer, prompt_ids, max_new_tokens=self.max_completion_length,
                                          batch_size=len(prompt_ids), do_sample=True, temperature=self.temperature,
                                          top_k=self.top_k or 0, top_p=self.top_p, seed=seed, dtype=dtype,
                                          eos_token_ids=self.eos_token_ids, progress=False)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["rerec/rollout_weight_copy_s"].append(result.setup_s)
        self._metrics[mode]["rerec/rollout_tokens_per_s"].append(result.tokens_per_second)
        return result.token_ids, None

    # -- sampling -----------------------------------------------------------------------------------
    def _get_train_sampler(self, dataset=None) -> Sampler:
        if self.curriculum is None:
            return super()._get_train_sampler(dataset)
        dataset = self.train_dataset if dataset is None else dataset
        return CurriculumRepeatSampler(
            prompt_ids=[str(p) for p in dataset["prompt_id"]], curriculum=self.curriculum,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            prompts_per_epoch=self.prompts_per_epoch, on_new_epoch=self.on_new_epoch,
        )

    # -- rewards and advantages ---------------------------------------------------------------------
    def _penalty_mask(self, texts: list[str], spans: list, scores: list[ScoredCompletion],
                      mask: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: the tokens of the segments that name a wrong answer's item (RAAE's penalty)."""
        if not self.estimator.uses_penalty:
            return torch.zeros(mask.shape, dtype=torch.bool)
        segments = [segment_completion(text, self.advantage.segment_mode) for text in texts]
        flags = [penalised_segments(segs, [] if score.correct else list(score.wrong_item_names))
                 for segs, score in zip(segments, scores, strict=True)]
        return token_penalty_mask(flags, segments, spans, mask)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)  # calls self.reward on this batch
        scores = self.reward.take(len(inputs))
        started = time.perf_counter()
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        completion_ids, mask = output["completion_ids"], output["completion_mask"]
        device = completion_ids.device
        texts, spans = [], []
        for i, n in enumerate(mask.sum(1).tolist()):
            text, token_spans = token_char_spans(self.processing_class, completion_ids[i, : int(n)].tolist())
            texts.append(text)
            spans.append(token_spans)
        penalised = self._penalty_mask(texts, spans, scores, mask.cpu())
        rewards = torch.tensor([s.total for s in scores], dtype=torch.float32, device=device)
        if group_size >= 2:  # TRL's advantages are 0 for groups of one (evaluation only)
            output["advantages"] = self.estimator(rewards, penalised.to(device), mask, group_size,
                                                  w_penalty=self.advantage.w_penalty, sigma_floor=self.sigma_floor)
        moved = penalised & (self.advantage.w_penalty * rewards.abs().cpu() > 0).unsqueeze(1)  # penalty != 0
        penalised_any = int(moved.any(1).sum())
        penalised_tokens = float(moved.sum()) / max(float(mask.sum()), 1.0)
        uniform_rate = float(uniform_groups(rewards.cpu(), group_size)[1].float().mean()) if group_size >= 2 else 0.0

        metrics = self._metrics[mode]
        metrics["rerec/raae_s"].append(time.perf_counter() - started)  # this override's own cost per batch
        metrics["rerec/parse_rate"].append(sum(s.parsed for s in scores) / len(scores))
        metrics["rerec/accuracy"].append(sum(s.correct for s in scores) / len(scores))
        metrics["rerec/reward_normalised"].append(sum(s.normalised for s in scores) / len(scores))
        metrics["rerec/segment_penalty_rate"].append(penalised_any / len(scores))
        metrics["rerec/penalised_token_fraction"].append(penalised_tokens)
        metrics["rerec/uniform_group_rate"].append(uniform_rate)  # groups with one shared reward (no GRPO signal)
        for name in sorted({k for s in scores for k in s.components}):
            values = [float(s.components[name]) for s in scores if s.components.get(name) is not None]
            if values:
                metrics[f"rerec/{name}"].append(sum(values) / len(values))

        if mode == "train":
            prompt_ids = [str(x["prompt_id"]) for x in inputs]
            if self.curriculum is not None:
                ids, values = prompt_ids, [s.normalised for s in scores]
                if self.accelerator.num_processes > 1:
                    # every process must hold the same curriculum: its sampler orders the next epoch's prompts,
                    # and the processes split one order between them
                    from accelerate.utils import gather_object

                    ids, values = gather_object(ids), gather_object(values)
                self.curriculum.record(ids, values)
            for pid, text, score in zip(prompt_ids, texts, scores, strict=True):
                self.sample_completions.append({"step": self.state.global_step, "prompt_id": pid, "completion": text,
                                                "reward": score.total, "correct": score.correct})
        return output

    # -- checkpoints ----------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        try:
            self._save_checkpoint_files(model, trial, folder)
        except Exception as exc:
            full = write_full_cause(exc, os.path.dirname(folder))
            if full is None:
                raise
            raise self._checkpoint_disk_full(folder, full) from exc

    def _checkpoint_disk_full(self, folder: str, full: OSError) -> RerecError:
        """Remove the partial checkpoint (it frees space and can never be resumed from) and say which
        earlier one is intact. HF rotates old checkpoints only after a save completes, so it is still there."""
        import shutil

        from rerec.train.resume import latest_checkpoint

        shutil.rmtree(folder, ignore_errors=True)
        previous = latest_checkpoint(os.path.dirname(folder), need_curriculum=self.curriculum is not None)
        kept = (f"the previous checkpoint {previous} is intact" if previous is not None
                else "there is no earlier checkpoint, so a rerun starts from the beginning")
        return RerecError(
            f"Disk full while writing checkpoint {folder} ({os.strerror(full.errno or errno.ENOSPC)}); the partial "
            f"checkpoint was removed and {kept}. Fix: free space on that volume (or raise its quota / PVC size), "
            "then rerun the same command with --resume (a pipeline run on the checkpoint volume resumes by itself "
            "when retried).")

    def _save_checkpoint_files(self, model, trial, folder: str) -> None:
        super()._save_checkpoint(model, trial)
        if self.curriculum is not None and self.args.should_save:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, CURRICULUM_STATE + ".tmp")
            with open(tmp, "w") as f:
                json.dump(self.curriculum.state_dict(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(folder, CURRICULUM_STATE))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self.curriculum is not None:
            path = os.path.join(checkpoint, CURRICULUM_STATE)
            if os.path.exists(path):
                with open(path) as f:
                    self.curriculum.load_state_dict(json.load(f))
            else:
                log.warning("checkpoint %s has no curriculum state; the curriculum restarts", checkpoint)
