"""Knowledge retention on MMLU questions, read from the ``lm-eval==0.4.13`` wheel (installed with
``--no-deps``; we read its JSON and never import ``lm_eval``).

Source: ``lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json``, one string per subject holding the
chain-of-thought few-shot exemplars::

    Q: <question, possibly several lines>
    (A) <choice> (B) <choice> (C) <choice> (D) <choice>
    A: Let's think step by step. <reasoning> The answer is (C).

These are the 5 exemplars per subject of MMLU's dev split (282 parse; they are public, so a model may
have seen them — the score is a *retention* probe, compared model against base model, not an MMLU
result). A question is scored zero-shot by the log-likelihood of each choice letter after
``Answer: (`` — one forward pass per question, cheap on CPU — and the prediction is the most likely
letter among the question's choices.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rerec.errors import RerecError
from rerec.models.loading import model_device
from rerec.paths import lm_eval_dir

COT_PROMPTS = Path("tasks") / "mmlu" / "flan_cot_fewshot" / "_cot_prompts.json"

_ANSWER = re.compile(r"The answer is \(([A-J])\)")
_CHOICE = re.compile(r"\(([A-J])\)\s*(.*?)\s*(?=\([A-J]\)\s|$)", re.S)


@dataclass(frozen=True)
class MMLUQuestion:
    subject: str
    question: str
    choices: dict[str, str]  # letter -> text, in order
    answer: str  # a letter in choices


def parse_cot_block(subject: str, block: str) -> MMLUQuestion | None:
    """One ``Q: ... A: ...`` exemplar -> question, or ``None`` when it does not have that shape."""
    body, sep, cot = block.partition("\nA: ")
    answer = _ANSWER.search(cot)
    if not sep or not answer:
        return None
    # The choices start at the first line that opens with "(A)".
    match = re.search(r"(?:^|\n)\(A\)", body)
    if not match:
        return None
    question = body[: match.start()].strip()
    choices_text = " ".join(body[match.start():].split())
    choices = {letter: text for letter, text in _CHOICE.findall(choices_text)}
    letters = list(choices)
    if not question or len(choices) < 2 or letters != [chr(ord("A") + i) for i in range(len(letters))]:
        return None
    if answer.group(1) not in choices:
        return None
    return MMLUQuestion(subject, question, choices, answer.group(1))


def load_mmlu_questions(path: Path | None = None) -> list[MMLUQuestion]:
    """Every parseable exemplar of the CoT prompt file, subjects in file order."""
    path = Path(path) if path else lm_eval_dir() / COT_PROMPTS
    if not path.exists():
        raise RerecError(f"The MMLU prompt file {path} is missing. Fix: pip install --no-deps lm-eval==0.4.13.")
    data = json.loads(path.read_text(encoding="utf-8"))
    questions = []
    for subject, text in data.items():
        for block in text.split("\n\nQ: ")[1:]:
            q = parse_cot_block(subject, block.strip("\n"))
            if q is not None:
                questions.append(q)
    return questions


def select_questions(questions: list[MMLUQuestion], max_questions: int | None) -> list[MMLUQuestion]:
    """A deterministic, subject-balanced subset: round robin over subjects."""
    if not max_questions or max_questions >= len(questions):
        return list(questions)
    by_subject: dict[str, list[MMLUQuestion]] = {}
    for q in questions:
        by_subject.setdefault(q.subject, []).append(q)
    out: list[MMLUQuestion] = []
    depth = 0
    while len(out) < max_questions:
        for qs in by_subject.values():
            if depth < len(qs) and len(out) < max_questions:
                out.append(qs[depth])
        depth += 1
    return out


def format_question(q: MMLUQuestion) -> str:
    subject = q.subject.replace("_", " ")
    lines = [f"The following is a multiple choice question about {subject}.", "", q.question]
    lines += [f"({letter}) {text}" for letter, text in q.choices.items()]
    return "\n".join(lines) + "\nAnswer: ("


def _letter_token_ids(tokenizer, letters: list[str]) -> list[int]:
    ids = []
    for letter in letters:
        toks = tokenizer.encode(letter, add_special_tokens=False)
        if not toks:
            raise RerecError(f"The tokenizer cannot encode the choice letter {letter!r}.")
        ids.append(toks[0])
    return ids


@torch.no_grad()
def score_mmlu(model, tokenizer, questions: list[MMLUQuestion], batch_size: int = 8,
               max_prompt_tokens: int = 768, desc: str = "mmlu", time_budget_s: float | None = None) -> dict:
    """Zero-shot letter log-likelihood accuracy.

    Returns ``{"accuracy", "n", "per_subject": {subject: accuracy}, "predictions": [letter, ...]}``.
    Prompts are left-padded (positions from the attention mask) and left-truncated to
    ``max_prompt_tokens``, so the letter is always predicted right after ``Answer: (``. Once
    ``time_budget_s`` has passed no new batch starts, and only the questions scored count.
    """
    model.eval()
    device = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    all_letters = sorted({letter for q in questions for letter in q.choices})
    letter_ids = dict(zip(all_letters, _letter_token_ids(tokenizer, all_letters), strict=True))
    predictions: list[str] = []
    started = time.perf_counter()
    for start in tqdm(range(0, len(questions), batch_size), desc=desc, unit="batch"):
        if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            break
        batch = questions[start:start + batch_size]
        # No special tokens at the end (a [SEP] would sit between "(" and the letter); BOS only in front.
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        encoded = [bos + tokenizer.encode(format_question(q), add_special_tokens=False)[-max_prompt_tokens:]
                   for q in batch]
        width = max(map(len, encoded))
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(encoded):
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            mask[i, width - len(ids):] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                       position_ids=position_ids.to(device)).logits[:, -1, :].float()
        for row, q in zip(logits, batch, strict=True):
            letters = list(q.choices)
            scores = row[[letter_ids[x] for x in letters]]
            predictions.append(letters[int(scores.argmax())])
    questions = questions[: len(predictions)]
    correct = [p == q.answer for p, q in zip(predictions, questions, strict=True)]
    per_subject: dict[str, list[bool]] = {}
    for ok, q in zip(correct, questions, strict=True):
        per_subject.setdefault(q.subject, []).append(ok)
    return {
        "accuracy": sum(correct) / len(correct) if correct else 0.0,
        "n": len(correct),
        "chance": (sum(1 / len(q.choices) for q in questions) / len(questions)) if questions else 0.0,
        "per_subject": {s: sum(v) / len(v) for s, v in per_subject.items()},
        "predictions": predictions,
    }
