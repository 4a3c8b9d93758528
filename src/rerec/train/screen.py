"""Screening: the curriculum's first assessment, made before RFT starts.

Why: GRPO learns only from a group of completions whose rewards differ. A model that has had its SFT
warm-up answers most training prompts right in every completion, so at a CPU budget of a few steps most
groups carry one reward and no advantage (in make run's four steps, 10 of 16 were like that). The
curriculum would retire those prompts, but only after a window of rollouts spent on them. Screening asks
the start model once, greedily, on a seeded sample of the training prompts (``curriculum.screen`` of
them, stratified by type) and trains only on the ones it misses:

    keep = missed prompts                               (greedy top-1 not a positive)
         + answered ones (seeded order): answered_per_missed x |missed|, or enough to reach the minimum

Why keep answered ones at all: the prompts a model misses are not a fair sample. Its greedy choice is
mostly the first row (the user's taste #1), and the positive is the first row in 83% of 800 screened
training prompts but in 46% of the 63 it missed. Trained on misses alone, RFT learned to reject the
first row whatever it held ("Chain Reaction (1996): 1990s no"; docs/results.md). Answered prompts
keep the first row's true share in the mix, and a rollout that rejects a right first row there
earns less than its group.

The greedy answer is read as evaluation reads it (:func:`rerec.eval.choice.evaluate_choice`), so "missed"
means what Acc@1 means. One generation per screened prompt (about 0.2 s each for SmolLM2 on 2 cores).
The result is kept with the run (``screen.json``) so ``--resume`` trains on the same prompts.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rerec.io import write_json


@dataclass
class ScreenResult:
    """One screening: per screened prompt its id, type and whether the start model answered it."""

    prompt_ids: list[str]
    types: list[str]
    hits: list[bool]
    seconds: float = 0.0

    def summary(self) -> dict:
        """Counts for the stage's metrics and log: screened, missed, accuracy and misses by type."""
        n = len(self.hits)
        missed_by_type: dict[str, int] = {}
        for t, hit in zip(self.types, self.hits, strict=True):
            if not hit:
                missed_by_type[t] = missed_by_type.get(t, 0) + 1
        return {"screened": n, "missed": n - sum(self.hits), "accuracy": sum(self.hits) / n if n else None,
                "missed_by_type": dict(sorted(missed_by_type.items())), "seconds": round(self.seconds, 1)}

    def save(self, path: str | Path) -> None:
        write_json(path, asdict(self))  # atomic: every process of a torchrun job writes the same file

    @classmethod
    def load(cls, path: str | Path) -> ScreenResult:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def keep_for_training(prompt_ids: Sequence[str], hits: Sequence[bool], minimum: int, seed: int,
                      answered_per_missed: float = 0.0) -> list[str]:
    """The screened prompts RFT trains on, in ``prompt_ids`` order: every missed one, and answered ones (in a
    seeded order) ``answered_per_missed`` for each missed one (rounded), or more until there are ``minimum``.

    >>> keep_for_training(["a", "b", "c", "d"], [True, False, True, False], minimum=1, seed=0)
    ['b', 'd']
    >>> len(keep_for_training(["a", "b", "c", "d"], [True, True, True, False], minimum=3, seed=0))
    3
    >>> len(keep_for_training(["a", "b", "c", "d", "e"], [True, False, True, True, False], minimum=1, seed=0,
    ...                       answered_per_missed=1.0))
    4
    """
    if len(prompt_ids) != len(hits):
        raise ValueError(f"{len(prompt_ids)} prompt ids but {len(hits)} screening results")
    if answered_per_missed < 0:
        raise ValueError(f"answered_per_missed must be >= 0, got {answered_per_missed}")
    missed = {p for p, hit in zip(prompt_ids, hits, strict=True) if not hit}
    answered = [p for p, hit in zip(prompt_ids, hits, strict=True) if hit]
    random.Random(f"{seed}:screen").shuffle(answered)
    n_answered = max(round(answered_per_missed * len(missed)), minimum - len(missed), 0)
    top_up = set(answered[:n_answered])
    return [p for p in prompt_ids if p in missed or p in top_up]


def screen_prompts(model: Any, tokenizer: Any, rows: list[dict], view: Any, *, mode: str, max_history: int,
                   max_new_tokens: int, batch_size: int = 16) -> ScreenResult:
    """Greedy answers of ``model`` on ``rows`` (query rows as RFT shows them) and whether each is right."""
    from rerec.eval.choice import evaluate_choice

    result = evaluate_choice(model, tokenizer, rows, view, mode=mode, max_history=max_history,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, desc="screen")
    return ScreenResult(prompt_ids=[str(r["query_id"]) for r in rows], types=[str(r.get("type", "")) for r in rows],
                        hits=[bool(h) for h in result["hits"]], seconds=float(result["generate_s"]))
