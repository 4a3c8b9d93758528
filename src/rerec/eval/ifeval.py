"""Instruction-following retention in the style of IFEval (Zhou et al. 2023, arXiv 2311.07911):
verifiable instructions whose compliance a program checks, no judge model.

:func:`build_instructions` crosses :data:`TASKS` (short writing requests, some about films, most not)
with the checker types of :data:`CHECKERS`; each (task, checker) pair gets its own arguments (word
limits, keywords, phrases) chosen deterministically, so the set is the same on every run:
8 tasks x 18 checkers = 144 instructions. Score: the fraction of instructions followed (IFEval's
"strict prompt-level accuracy" with one instruction per prompt), and the same per checker.

A blank response follows no instruction (otherwise "no commas" or "forbidden words" would reward a
model that says nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_WORD = re.compile(r"\b\w+\b")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if _WORD.search(s)])


def count_bullets(text: str) -> int:
    return len(re.findall(r"^\s*[*\-]\s+\S", text, flags=re.M))


def split_paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\s*\*\*\*\s*", text.strip()) if p.strip()]


def _strip_fences(text: str) -> str:
    text = text.strip()
    match = re.fullmatch(r"```(?:json|JSON)?\s*(.*?)\s*```", text, flags=re.S)
    return match.group(1) if match else text


def _is_json(text: str) -> bool:
    try:
        json.loads(_strip_fences(text))
    except ValueError:
        return False
    return True


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, flags=re.I) is not None


# name -> (instruction template, check(response, **kwargs) -> bool)
CHECKERS: dict[str, tuple[str, Callable[..., bool]]] = {
    "max_words": ("Answer with at most {n} words.", lambda r, n: count_words(r) <= n),
    "min_words": ("Answer with at least {n} words.", lambda r, n: count_words(r) >= n),
    "max_sentences": ("Answer in at most {n} sentences.", lambda r, n: count_sentences(r) <= n),
    "lowercase": ("Your entire response must be in lowercase letters. No capital letters are allowed.",
                  lambda r: r == r.lower() and any(c.isalpha() for c in r)),
    "uppercase": ("Your entire response must be in English and in capital letters only.",
                  lambda r: r == r.upper() and any(c.isalpha() for c in r)),
    "bullets": ("Your answer must contain exactly {n} bullet points. Use markdown bullet points such as:\n"
                "* This is a point.", lambda r, n: count_bullets(r) == n),
    "json": ("Wrap your entire output in JSON format. You can use markdown ticks such as ```.", _is_json),
    "keywords": ("Include the keywords {words} in the response.",
                 lambda r, words: all(_has_word(r, w) for w in words)),
    "forbidden": ("Do not include the words {words} in the response.",
                  lambda r, words: not any(_has_word(r, w) for w in words)),
    "starts_with": ("Start your response with the phrase '{phrase}'.",
                    lambda r, phrase: r.strip().lower().startswith(phrase.lower())),
    "ends_with": ("Finish your response with this exact phrase: '{phrase}'. No other words should follow it.",
                  lambda r, phrase: r.strip().endswith(phrase)),
    "paragraphs": ("There should be exactly {n} paragraphs. Paragraphs are separated with the markdown "
                   "divider: ***", lambda r, n: len(split_paragraphs(r)) == n),
    "title": ("Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
              lambda r: re.search(r"<<[^<>\n]+>>", r) is not None),
    "no_commas": ("In your entire response, refrain from the use of any commas.", lambda r: "," not in r),
    "placeholders": ("The response must contain at least {n} placeholders represented by square brackets, "
                     "such as [address].", lambda r, n: len(re.findall(r"\[[^\[\]\n]+\]", r)) >= n),
    "quoted": ("Wrap your entire response with double quotation marks.",
               lambda r: len(r.strip()) > 1 and r.strip()[0] == '"' and r.strip()[-1] == '"'),
    "word_frequency": ("Use the word '{word}' at least {n} times.",
                       lambda r, word, n: len(re.findall(rf"\b{re.escape(word)}\b", r, flags=re.I)) >= n),
    "postscript": ("At the end of your response, please explicitly add a postscript starting with P.S.",
                   lambda r: re.search(r"^\s*P\.\s?S\.", r, flags=re.M | re.I) is not None),
}


@dataclass(frozen=True)
class Task:
    prompt: str
    keywords: tuple[str, str]  # two words that fit the task
    forbidden: tuple[str, str]  # two words the task invites
    opening: str


TASKS: tuple[Task, ...] = (
    Task("Recommend a movie for a rainy Sunday afternoon and explain why.", ("cozy", "story"),
         ("rain", "movie"), "My pick"),
    Task("Describe your favourite city park to a friend.", ("trees", "bench"), ("green", "park"), "Imagine"),
    Task("Write a short review of a science fiction film you like.", ("plot", "effects"),
         ("space", "film"), "In short"),
    Task("Explain how to make a cup of tea.", ("kettle", "minutes"), ("water", "tea"), "First"),
    Task("Write a short note inviting neighbours to a summer barbecue.", ("Saturday", "garden"),
         ("food", "summer"), "Dear neighbours"),
    Task("Give advice to a student starting university.", ("sleep", "friends"), ("study", "university"),
         "Welcome"),
    Task("Describe the plot of a classic comedy film without naming it.", ("wedding", "misunderstanding"),
         ("funny", "comedy"), "Once upon a time"),
    Task("Explain why people enjoy watching old movies.", ("nostalgia", "actors"), ("old", "movies"),
         "Old films"),
)


@dataclass(frozen=True)
class Instruction:
    instruction_id: str
    checker: str
    prompt: str  # the task followed by the instruction, sent to the model as the user turn
    kwargs: dict = field(default_factory=dict)

    def check(self, response: str) -> bool:
        return check(self.checker, response, **self.kwargs)


def check(checker: str, response: str, **kwargs) -> bool:
    if not response or not response.strip():
        return False
    return bool(CHECKERS[checker][1](response, **kwargs))


def _kwargs_for(checker: str, task: Task, i: int) -> dict:
    """Arguments that vary with the task index ``i``, so instructions are not all alike."""
    return {
        "max_words": {"n": (20, 40, 60, 80)[i % 4]},
        "min_words": {"n": (15, 25, 35, 45)[i % 4]},  # reachable within ~80 new tokens
        "max_sentences": {"n": 2 + i % 3},
        "bullets": {"n": 2 + i % 3},
        "keywords": {"words": list(task.keywords)},
        "forbidden": {"words": list(task.forbidden)},
        "starts_with": {"phrase": task.opening},
        "ends_with": {"phrase": ("Is there anything else I can help with?", "Enjoy!", "That is all.",
                                 "Thank you for reading.")[i % 4]},
        "paragraphs": {"n": 2 + i % 3},
        "placeholders": {"n": 1 + i % 3},
        "word_frequency": {"word": task.keywords[0], "n": 2 + i % 2},
    }.get(checker, {})


def _describe(kwargs: dict) -> dict:
    out = dict(kwargs)
    if "words" in out:
        out["words"] = ", ".join(f"'{w}'" for w in out["words"])
    return out


def build_instructions(max_instructions: int | None = None) -> list[Instruction]:
    """Every (task, checker) pair, interleaved by checker so any prefix covers all checkers."""
    out = []
    for c, checker in enumerate(CHECKERS):
        for i, task in enumerate(TASKS):
            kwargs = _kwargs_for(checker, task, i)
            text = CHECKERS[checker][0].format(**_describe(kwargs))
            out.append((i, c, Instruction(f"{checker}:{i}", checker, f"{task.prompt} {text}", kwargs)))
    ordered = [ins for _, _, ins in sorted(out, key=lambda t: (t[0], t[1]))]
    return ordered[:max_instructions] if max_instructions else ordered


def score_responses(instructions: Sequence[Instruction], responses: Sequence[str]) -> dict:
    """``{"accuracy", "n", "per_checker": {checker: accuracy}, "followed": [bool, ...]}``."""
    followed = [ins.check(r) for ins, r in zip(instructions, responses, strict=True)]
    per_checker: dict[str, list[bool]] = {}
    for ins, ok in zip(instructions, followed, strict=True):
        per_checker.setdefault(ins.checker, []).append(ok)
    return {
        "accuracy": sum(followed) / len(followed) if followed else 0.0,
        "n": len(followed),
        "per_checker": {k: sum(v) / len(v) for k, v in per_checker.items()},
        "followed": followed,
    }
