"""Batched greedy generation for evaluation, and the LLM as a ranker.

:func:`generate_completions` sorts prompts by length (less padding), pads on the left so every row's
next token comes right after its prompt, decodes greedily, and stops starting new batches when the
time budget is spent: prompts it never reached come back as ``None`` (counted, never scored as
wrong answers silently — the report states how many were generated).

:class:`LLMRanker` turns a model into a ranker: the prompt from :func:`rerec.prompt.build_messages`
(the same prompt training sees), the answer parsed with :func:`rerec.answer.parse_answer` and matched
to the query's candidates with :class:`rerec.reward.matching.TitleMatcher`
(:func:`rerec.prompt.answer_ranking`). The ranked list is what the model answered, in its order, an
answer item naming no candidate kept in its place as None (a miss).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from rerec.models.loading import model_device


@dataclass
class GenerationResult:
    """``completions[i]`` answers ``prompts[i]``; ``None`` where the budget ran out first."""

    completions: list[str | None]
    n_new_tokens: int = 0
    seconds: float = 0.0
    budget_exhausted: bool = False

    @property
    def n_generated(self) -> int:
        return sum(c is not None for c in self.completions)

    @property
    def tokens_per_second(self) -> float:
        return self.n_new_tokens / self.seconds if self.seconds > 0 else 0.0


@torch.no_grad()
def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 128,
    batch_size: int = 8,
    time_budget_s: float | None = None,
    max_prompt_tokens: int | None = None,
    desc: str = "generate",
) -> GenerationResult:
    """Greedy completions of already-rendered prompts (chat template applied, special tokens in text).

    Args:
        max_prompt_tokens: keep only the last this many prompt tokens (None: no limit).
        time_budget_s: no new batch starts once this many seconds have passed, and the batch running
            then is cut short (``generate(max_time=...)``), so the budget holds within a few seconds;
            rows cut short keep what they generated.
    """
    model.eval()
    device = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = tokenizer.eos_token_id
    encoded = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    if max_prompt_tokens:
        encoded = [ids[-max_prompt_tokens:] for ids in encoded]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    completions: list[str | None] = [None] * len(prompts)
    n_tokens, start, exhausted = 0, time.perf_counter(), False
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt")
    for b in range(0, len(order), batch_size):
        remaining = None if time_budget_s is None else time_budget_s - (time.perf_counter() - start)
        if remaining is not None and remaining <= 0:
            exhausted = True
            break
        rows = order[b:b + batch_size]
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i], dtype=torch.long)
            mask[r, width - len(encoded[i]):] = 1
        out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id,
                             max_time=remaining)
        new = out[:, width:].cpu()
        for r, i in enumerate(rows):
            tokens = new[r].tolist()
            if eos_id is not None and eos_id in tokens:
                tokens = tokens[: tokens.index(eos_id) + 1]
            n_tokens += len(tokens)
            completions[i] = tokenizer.decode(tokens, skip_special_tokens=True)
        bar.update(len(rows))
        bar.set_postfix(tok_s=f"{n_tokens / max(time.perf_counter() - start, 1e-9):.1f}")
    bar.close()
    seconds = time.perf_counter() - start
    exhausted = exhausted or (time_budget_s is not None and seconds >= time_budget_s)
    return GenerationResult(completions, n_tokens, seconds, exhausted)


def generate_chat(model: Any, tokenizer: Any, user_turns: Sequence[str], **kwargs: Any) -> GenerationResult:
    """Completions of single-turn chats (one user message each), e.g. instruction-following prompts."""
    from rerec.prompt import render_prompt

    prompts = [render_prompt(tokenizer, [{"role": "user", "content": u}]) for u in user_turns]
    return generate_completions(model, tokenizer, prompts, **kwargs)


@dataclass
class LLMAnswer:
    ranked: list[str | None]  # candidate id per answer item, in the model's order; None: names no candidate
    parsed: bool  # a boxed answer was found
    completion: str | None  # None: not generated (budget)
    prompt: str = ""


@dataclass
class LLMRanker:
    """A causal LM that answers recommendation prompts.

    ``view``: :class:`rerec.prompt.CatalogView`; ``mode``: ``evidence`` or ``titles``.
    """

    name: str
    model: Any
    tokenizer: Any
    view: Any
    mode: str = "evidence"
    max_history: int = 5
    max_new_tokens: int = 128
    batch_size: int = 8
    max_prompt_tokens: int | None = None
    last_generation: GenerationResult | None = field(default=None, repr=False)

    def prompts(self, queries: Sequence[Mapping]) -> list[str]:
        from rerec.prompt import build_messages, render_prompt

        return [render_prompt(self.tokenizer, build_messages(q, self.view, mode=self.mode,
                                                               max_history=self.max_history)) for q in queries]

    def rank_all(self, queries: Sequence[Mapping], time_budget_s: float | None = None) -> list[LLMAnswer]:
        from rerec.prompt import answer_ranking

        prompts = self.prompts(queries)
        result = generate_completions(self.model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                                      batch_size=self.batch_size, time_budget_s=time_budget_s,
                                      max_prompt_tokens=self.max_prompt_tokens, desc=f"{self.name}: rank")
        self.last_generation = result
        answers = []
        for query, prompt, text in zip(queries, prompts, result.completions, strict=True):
            if text is None:
                answers.append(LLMAnswer([], False, None, prompt))
                continue
            answer = answer_ranking(text, query, self.view)
            answers.append(LLMAnswer(answer.ranked, answer.parsed.ok, text, prompt))
        return answers
