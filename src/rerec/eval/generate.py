"""The one generation path: evaluation (LLM ranking, IFEval-style checks), SFT validation, RFT rollouts
and serving all call :func:`generate_completions`.

It runs in the process's precision (:func:`rerec.models.precision.resolve_precision`: bfloat16 weights
where the processor computes bf16 natively, float32 elsewhere) with one of two engines:

- ``lean`` (Llama-family models, :mod:`rerec.eval.decoder`): a bf16/fp32 snapshot of the weights (LoRA
  merged; taking it is part of the call's time), a preallocated KV cache of ``batch_size`` slots, each
  prompt prefilled on its own (no padding; the longest prefix it shares with a prompt in another slot,
  such as the system prompt, is copied rather than computed), and continuous batching: a row that ends (EOS or
  ``max_new_tokens``) hands its slot to the next waiting prompt at once; when none waits, the last
  row moves into the hole so every step computes only live rows. Tokens are picked in place from the
  last position's logits (greedy, or sampled at ``temperature`` with optional top-k / top-p).
- ``hf``: transformers' ``generate`` on the model (a copy in the chosen dtype when its weights differ),
  batches of ``batch_size`` prompts of similar length, left-padded; used for other architectures.

Prompts are served shortest first (sorted by token count). Once ``time_budget_s`` has passed no new
prompt starts and the rows running stop, keeping what they generated; prompts never reached come back as
``None`` (counted, never scored as wrong answers silently: the report states how many were generated).

:class:`LLMRanker` turns a model into a ranker: the prompt from :func:`rerec.prompt.build_messages`
(the same prompt training sees), the answer parsed with :func:`rerec.answer.parse_answer` and matched
to the query's candidates with :class:`rerec.reward.matching.TitleMatcher`
(:func:`rerec.prompt.answer_ranking`). The ranked list is what the model answered, in its order, an
answer item naming no candidate kept in its place as None (a miss).

A trace checks the candidates row by row ("1. ...", "2. ...") and ends with the boxed answer. A model that
finds no row that fits sometimes goes on writing rows past the last candidate, repeating them until the
token limit, and answers nothing. :class:`LLMRanker` closes such a trace: it cuts the completion where the
row after the last candidate starts, appends the box's opening and lets the model name its answer
(:func:`past_last_row`). The answer is marked ``closed``; evaluation counts them and serving says so in a
warning, so a closed answer is never passed off as one the model boxed by itself.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from rerec.errors import RerecError
from rerec.models.loading import model_device

log = logging.getLogger(__name__)

ENGINES = ("auto", "lean", "hf")


@dataclass
class GenerationResult:
    """``completions[i]`` answers ``prompts[i]`` (``token_ids[i]`` its new tokens, the EOS included when one
    ended it); ``None`` where the budget ran out first."""

    completions: list[str | None]
    n_new_tokens: int = 0
    seconds: float = 0.0
    budget_exhausted: bool = False
    token_ids: list[list[int] | None] = field(default_factory=list)
    engine: str = ""
    dtype: str = ""
    setup_s: float = 0.0  # taking the weight snapshot (included in ``seconds``)

    @property
    def n_generated(self) -> int:
        return sum(c is not None for c in self.completions)

    @property
    def tokens_per_second(self) -> float:
        return self.n_new_tokens / self.seconds if self.seconds > 0 else 0.0


def pick_tokens(logits: torch.Tensor, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next tokens (n,) from float32 logits (n, vocab), which are modified in place.

    Greedy: ``argmax``. Sampling: logits divided by ``temperature``, all but the ``top_k`` largest set
    to -inf (0: no limit), then all but the smallest set of tokens whose probability reaches ``top_p``
    (1.0: no limit; the most likely token always stays), then one draw from the softmax.
    """
    if not do_sample or temperature <= 0:
        return logits.argmax(dim=-1)
    logits.div_(temperature)
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits.masked_fill_(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # mass before this token already reaches top_p
        logits.masked_fill_(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


def _encode(tokenizer: Any, prompts: Sequence[str | Sequence[int]], max_prompt_tokens: int | None) -> list[list[int]]:
    encoded = [list(p) if not isinstance(p, str) else tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    if max_prompt_tokens:
        encoded = [ids[-max_prompt_tokens:] for ids in encoded]
    empty = [i for i, ids in enumerate(encoded) if not ids]
    if empty:
        raise RerecError(f"prompt {empty[0]} has no tokens. Fix: pass non-empty prompts (render them with the chat "
                         "template first).")
    return encoded


def _eos_ids(model: Any, tokenizer: Any, eos_token_ids: Sequence[int] | int | None) -> set[int]:
    if eos_token_ids is None:
        eos_token_ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if eos_token_ids is None:
            eos_token_ids = tokenizer.eos_token_id
    if eos_token_ids is None:
        return set()
    return {int(eos_token_ids)} if isinstance(eos_token_ids, int) else {int(i) for i in eos_token_ids}


MIN_SHARED_PREFIX = 8  # tokens: a shorter common prompt prefix is computed again rather than copied


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def choose_engine(model: Any, engine: str = "auto") -> str:
    """``lean`` for a model :mod:`rerec.eval.decoder` runs, else ``hf``; an explicit engine is checked."""
    from rerec.eval.decoder import unsupported_reason

    if engine not in ENGINES:
        raise RerecError(f"generation engine {engine!r} is not one of {', '.join(ENGINES)}.")
    reason = unsupported_reason(model)
    if engine == "lean" and reason is not None:
        raise RerecError(f"the lean generation engine cannot run this model: {reason}. Fix: use engine='auto'.")
    if engine == "auto":
        if reason is not None:
            log.info("generation: transformers' generate (the lean decoder cannot run this model: %s)", reason)
        return "hf" if reason is not None else "lean"
    return engine


@torch.no_grad()
def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | Sequence[int]],
    max_new_tokens: int = 128,
    batch_size: int = 8,
    time_budget_s: float | None = None,
    max_prompt_tokens: int | None = None,
    desc: str = "generate",
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    engine: str = "auto",
    eos_token_ids: Sequence[int] | int | None = None,
    sort_by_length: bool = True,
    continuous_batching: bool = True,
    prepack_weights: bool = True,
    share_prefixes: bool = True,
    progress: bool = True,
) -> GenerationResult:
    """Completions of already-rendered prompts (chat template applied, special tokens in the text) or of
    token-id lists.

    Args:
        max_new_tokens: tokens generated per prompt at most (an EOS ends a row earlier).
        batch_size: rows decoded together (``lean``: KV-cache slots; ``hf``: prompts per ``generate``).
        time_budget_s: seconds for the whole call (module docstring); None: no limit.
        max_prompt_tokens: keep only the last this many prompt tokens (None: no limit).
        do_sample, temperature, top_k, top_p: greedy by default; see :func:`pick_tokens`.
        seed: seeds the sampler (same seed, prompts and settings: same completions).
        dtype: the weights' dtype while generating (None: the process's precision).
        engine: ``auto`` (``lean`` where it applies), ``lean`` or ``hf``.
        eos_token_ids: tokens that end a row (None: the model's generation config, else the tokenizer's EOS).
        sort_by_length: serve prompts shortest first (less padding for ``hf``, similar widths for ``lean``).
        continuous_batching, prepack_weights, share_prefixes: ``lean`` engine switches, on by default; off,
            a finished row's slot waits until the whole batch is done, weights are not put in oneDNN's layout,
            and every prompt is computed whole (they exist to measure what each buys: ``bench/generate.py``).
    """
    from rerec.models.precision import resolve_precision

    start = time.perf_counter()
    dtype = dtype or resolve_precision().torch_dtype
    encoded = _encode(tokenizer, prompts, max_prompt_tokens)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i])) if sort_by_length else list(range(len(encoded)))
    eos = _eos_ids(model, tokenizer, eos_token_ids)
    deadline = None if time_budget_s is None else start + time_budget_s
    chosen = choose_engine(model, engine)
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress)
    run = _generate_lean if chosen == "lean" else _generate_hf
    was_training = model.training
    model.eval()
    try:
        token_ids, setup_s, exhausted = run(model, tokenizer, encoded, order, eos, dtype, bar, deadline,
                                            max_new_tokens=max_new_tokens, batch_size=max(1, batch_size),
                                            do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                            seed=seed, **({"refill": continuous_batching, "prepack": prepack_weights,
                                                             "share": share_prefixes} if chosen == "lean" else {}))
    finally:
        model.train(was_training)
        bar.close()
    completions = [None if ids is None else tokenizer.decode(ids, skip_special_tokens=True) for ids in token_ids]
    seconds = time.perf_counter() - start
    n_tokens = sum(len(ids) for ids in token_ids if ids is not None)
    exhausted = exhausted or any(ids is None for ids in token_ids) or (deadline is not None and seconds >= time_budget_s)
    return GenerationResult(completions, n_tokens, seconds, exhausted, token_ids, chosen,
                            str(dtype).replace("torch.", ""), setup_s)


def _generate_lean(model, tokenizer, encoded, order, eos, dtype, bar, deadline, *, max_new_tokens, batch_size,
                   do_sample, temperature, top_k, top_p, seed, refill=True, prepack=True, share=True):
    """Continuous batching over the lean decoder's KV-cache slots (module docstring)."""
    from collections import Counter, deque

    from rerec.eval.decoder import LeanDecoder

    t0 = time.perf_counter()
    decoder = LeanDecoder(model, dtype=dtype, device=model_device(model), prepack=prepack)
    setup_s = time.perf_counter() - t0
    out: list[list[int] | None] = [None] * len(encoded)
    if not encoded:
        return out, setup_s, False
    generator = torch.Generator(device=decoder.device).manual_seed(seed)
    slots = min(batch_size, len(encoded))
    cache = decoder.new_cache(slots, max(len(ids) for ids in encoded) + max_new_tokens)
    waiting = deque(order)
    rows: list[int] = []  # prompt index in each live slot
    made: list[list[int]] = []  # its new tokens

    def out_of_time() -> bool:
        return deadline is not None and time.perf_counter() >= deadline

    def ended(tokens: list[int]) -> bool:
        return tokens[-1] in eos or len(tokens) >= max_new_tokens

    keys = [tuple(ids) for ids in encoded]
    repeats = Counter(keys)  # copies of each prompt not admitted yet
    first_logits: dict[tuple, torch.Tensor] = {}  # last-position logits of prompts that come again

    def prefill(slot: int, i: int) -> torch.Tensor:
        """Encode prompt ``i`` into ``slot``, copying the longest prompt prefix another slot holds (the system
        prompt; all of a prompt GRPO repeats) and computing the rest; (1, vocab) logits."""
        key, ids = keys[i], encoded[i]
        repeats[key] -= 1
        source, shared = None, 0
        for other, j in enumerate(rows if share else []):
            if other != slot and j >= 0:
                common = len(ids) if keys[j] == key else _common_prefix(encoded[j], ids)
                if common > shared:
                    source, shared = other, common
        if shared == len(ids) and key in first_logits:
            cache.copy_prefix(source, slot, shared)
            logits = first_logits[key].clone()
        else:
            start = min(shared, len(ids) - 1) if shared >= MIN_SHARED_PREFIX else 0
            if start:
                cache.copy_prefix(source, slot, start)
            logits = decoder.prefill(cache, slot, torch.tensor(ids), start)[None]
            if repeats[key]:
                first_logits[key] = logits.clone()
        if not repeats[key]:
            first_logits.pop(key, None)
        return logits

    def admit(slot: int) -> bool:
        """Prefill the next waiting prompt into ``slot``; False when none is left (or time is up)."""
        while waiting and not out_of_time():
            i = waiting.popleft()
            logits = prefill(slot, i)
            rows[slot], made[slot] = i, [int(pick_tokens(logits, do_sample, temperature, top_k, top_p, generator)[0])]
            if not ended(made[slot]):
                return True
            out[i] = made[slot]
            bar.update(1)
        return False

    def release(slot: int) -> None:
        """Free ``slot``: the last row moves into it, so live rows stay in slots ``0..n-1``."""
        last = len(rows) - 1
        if slot != last:
            cache.move(last, slot)
            rows[slot], made[slot] = rows[last], made[last]
        rows.pop()
        made.pop()

    def fill() -> None:
        while len(rows) < slots:
            rows.append(-1)
            made.append([])
            if not admit(len(rows) - 1):
                rows.pop()
                made.pop()
                return

    fill()
    while rows and not out_of_time():
        last_tokens = torch.tensor([tokens[-1] for tokens in made])
        picked = pick_tokens(decoder.step(cache, last_tokens, len(rows)), do_sample, temperature, top_k, top_p,
                             generator).tolist()
        for slot, token in enumerate(picked):
            made[slot].append(int(token))
        for slot in sorted((s for s in range(len(rows)) if ended(made[s])), reverse=True):
            out[rows[slot]] = made[slot]
            bar.update(1)
            if not (refill and admit(slot)):
                release(slot)
        if not rows:
            fill()
    exhausted = bool(rows) or bool(waiting)
    for slot, i in enumerate(rows):  # cut short by the budget: keep what they generated
        out[i] = made[slot]
    return out, setup_s, exhausted


def _generate_hf(model, tokenizer, encoded, order, eos, dtype, bar, deadline, *, max_new_tokens, batch_size,
                 do_sample, temperature, top_k, top_p, seed):
    """transformers' ``generate`` over left-padded batches of similar-length prompts."""
    t0 = time.perf_counter()
    weight = next(model.parameters(), None)
    if weight is not None and weight.dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    setup_s = time.perf_counter() - t0
    device = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p) if do_sample \
        else dict(do_sample=False)
    out: list[list[int] | None] = [None] * len(encoded)
    torch.manual_seed(seed)
    exhausted = False
    for b in range(0, len(order), batch_size):
        remaining = None if deadline is None else deadline - time.perf_counter()
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
        new = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                             max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=sorted(eos) or None,
                             max_time=remaining, **sampling)[:, width:].cpu()
        for r, i in enumerate(rows):
            tokens = new[r].tolist()
            ends = [k for k, t in enumerate(tokens) if t in eos]
            out[i] = tokens[: ends[0] + 1] if ends else tokens
        bar.update(len(rows))
    return out, setup_s, exhausted


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
    closed: bool = False  # the trace ran past the last candidate and the box was opened for it (module doc)


BOX_OPENING = "\\boxed{"
CLOSING_NEW_TOKENS = 48  # room for a boxed title or two


def past_last_row(completion: str, n_candidates: int) -> int | None:
    """Where the row after the last candidate starts (a line beginning "N+1. " for N candidates), or None.

    >>> past_last_row("1. A - no.\\n2. B - no.\\n3. A - no.", 2)
    22
    """
    found = re.search(rf"(?m)^{n_candidates + 1}\. ", completion) if n_candidates > 0 else None
    return found.start() if found else None


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
    close_after_last_row: bool = True
    last_generation: GenerationResult | None = field(default=None, repr=False)

    def prompts(self, queries: Sequence[Mapping]) -> list[str]:
        """The rendered prompts of ``queries``, candidates in displayed order (:func:`rerec.prompt.display_order`)."""
        from rerec.prompt import display_order

        return self._render([display_order(q, self.view) for q in queries])

    def _render(self, ordered: Sequence[Mapping]) -> list[str]:
        """The rendered prompts of queries already in displayed order."""
        from rerec.prompt import build_messages, render_prompt

        return [render_prompt(self.tokenizer, build_messages(q, self.view, mode=self.mode,
                                                               max_history=self.max_history)) for q in ordered]

    def rank_all(self, queries: Sequence[Mapping], time_budget_s: float | None = None) -> list[LLMAnswer]:
        from rerec.prompt import answer_ranking, display_order

        # the candidates as the prompt lists them (taste order when the view carries taste), so that a boxed
        # number means the row the model saw; a list shrunk for the prompt is in that order already
        queries = [display_order(q, self.view) for q in queries]
        prompts = self._render(queries)
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
        if self.close_after_last_row:
            left = None if time_budget_s is None else max(0.0, time_budget_s - result.seconds)
            self._close(queries, answers, left)
        return answers

    def _close(self, queries: Sequence[Mapping], answers: list[LLMAnswer], time_budget_s: float | None) -> None:
        """Close, in place, the unanswered traces that ran past the last candidate (module doc)."""
        from rerec.prompt import answer_ranking

        cuts = {}
        for i, (query, answer) in enumerate(zip(queries, answers, strict=True)):
            if answer.completion is not None and not answer.parsed:
                cut = past_last_row(answer.completion, len(query["candidates"]))
                if cut is not None:
                    cuts[i] = answer.completion[:cut] + BOX_OPENING
        if not cuts or time_budget_s == 0.0:
            return
        order = sorted(cuts)
        # the prompt as the first pass saw it (cut to max_prompt_tokens), then the trace up to the box
        prompts = [_encode(self.tokenizer, [answers[i].prompt], self.max_prompt_tokens)[0]
                   + self.tokenizer.encode(cuts[i], add_special_tokens=False) for i in order]
        result = generate_completions(self.model, self.tokenizer, prompts, max_new_tokens=CLOSING_NEW_TOKENS,
                                      batch_size=self.batch_size, time_budget_s=time_budget_s,
                                      desc=f"{self.name}: close", progress=False)
        for i, rest in zip(order, result.completions, strict=True):
            if rest is None:
                continue
            text = cuts[i] + rest
            answer = answer_ranking(text, queries[i], self.view)
            answers[i] = LLMAnswer(answer.ranked, answer.parsed.ok, text, answers[i].prompt, closed=True)
