"""Teacher-forced accuracy on the decision words of a scratchpad trace.

A ``table`` or ``scan`` trace (:mod:`rerec.train.traces`) is mostly copying: the candidate's line, the
condition labels. What the model must get right are a few words: each check's ``yes``/``no``, each
row's ``fits``/``no`` and the first token of the boxed answer. Feeding the true trace and asking the
model for each of those words (argmax of the next-token distribution) measures the three skills
apart, with one forward pass and no generation — cheap enough to log at every SFT evaluation, and it
shows *which* step a model has not learned yet (checks, verdicts, or copying the row that fits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rerec.models.loading import model_device

KINDS = ("check", "verdict", "answer")
_BOX = "\\boxed{"


def decision_offsets(trace: str) -> list[tuple[str, int]]:
    """``(kind, character offset)`` of each decision word of ``trace``, in order of appearance.

    Kinds: ``check`` (a condition's yes/no in a row), ``verdict`` (the row's fits/no), ``answer`` (the
    first character inside the last ``\\boxed{``). Rows are found from the trace's ``Wanted:`` labels,
    so a title containing "no" or ": " is never mistaken for a decision. Prose traces have only the answer.
    """
    found: list[tuple[str, int]] = []
    wanted = re.search(r"^Wanted: (.+)\.$", trace, flags=re.M)
    if wanted:
        labels = wanted.group(1).split("; ")
        # a decade check may first name the candidate's own decade: "(1940s) 1930s no" (derive_decades)
        row = re.compile(": " + ", ".join(r"(?:\(\d{4}s\) )?" + re.escape(label) + " (yes|no)" for label in labels)
                         + r" - (fits|no)\.$", flags=re.M)
        for match in row.finditer(trace):
            found += [("check", match.start(g)) for g in range(1, len(labels) + 1)]
            found.append(("verdict", match.start(len(labels) + 1)))
    box = trace.rfind(_BOX)
    if box >= 0 and box + len(_BOX) < len(trace):
        found.append(("answer", box + len(_BOX)))
    return sorted(found, key=lambda kind_offset: kind_offset[1])


def token_at(offsets: Sequence[tuple[int, int]], char: int) -> int | None:
    """Index of the token whose character span holds ``char`` (None when no token does)."""
    for i, (start, end) in enumerate(offsets):
        if start <= char < end:
            return i
    return None


def decision_accuracy(model: Any, tokenizer: Any, examples: Sequence[dict], batch_size: int = 4,
                      autocast_dtype: Any = None) -> dict[str, float]:
    """Teacher-forced accuracy per decision kind over ``examples`` (``{"prompt", "completion"}``).

    Returns ``{"check": ., "verdict": ., "answer": ., "n_check": ., ...}``; a kind with no decisions in
    ``examples`` is left out. A decision is right when the model's most likely next token, given the
    prompt and the true trace so far, is the trace's token at that place. ``autocast_dtype`` (e.g.
    ``torch.bfloat16``): run the forward pass under autocast, as the trainer computes (SFT logs this at
    every evaluation, and a float32 pass of a 135M model over 32 traces takes about twice as long on a CPU).
    """
    import contextlib

    import torch

    items = []  # (input ids, [(kind, token index)])
    for ex in examples:
        text = ex["prompt"] + ex["completion"]
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        places = []
        for kind, offset in decision_offsets(ex["completion"]):
            i = token_at(enc["offset_mapping"], len(ex["prompt"]) + offset)
            if i is not None and i > 0:
                places.append((kind, i))
        if places:
            items.append((enc["input_ids"], places))
    right = dict.fromkeys(KINDS, 0)
    total = dict.fromkeys(KINDS, 0)
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        for b in range(0, len(items), batch_size):
            batch = items[b:b + batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (seq, _) in enumerate(batch):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            device = model_device(model)
            autocast = (torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype is not None
                        else contextlib.nullcontext())
            with torch.no_grad(), autocast:
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, (seq, places) in enumerate(batch):
                for kind, i in places:
                    total[kind] += 1
                    right[kind] += int(int(logits[row, i - 1].argmax()) == seq[i])
    finally:
        model.train(was_training)
    out: dict[str, float] = {}
    for kind in KINDS:
        if total[kind]:
            out[kind] = right[kind] / total[kind]
            out[f"n_{kind}"] = total[kind]
    return out
