"""The answer format shared by every stage: reasoning, then ``\\boxed{Title}`` (top-1) or
``\\boxed{T1; T2; T3}`` (top-K). Training (the reward), prompting and evaluation all parse with
:func:`parse_answer`, so what the reward accepts is exactly what the benchmark accepts.

Rules (DESIGN.md, "Prompt and answer"):

- the answer is the content of the **last complete** ``\\boxed{...}``; braces nest, so
  ``\\boxed{Se7en {1995}}`` keeps ``Se7en {1995}``; a final box that never closes (a truncated
  completion) does not count, and an earlier complete box is used instead;
- the content is split on ``;`` into items, each stripped; empty items are dropped; a LaTeX
  ``\\text{...}`` wrapper around an item is removed;
- parsing is one left-to-right pass over the braces (linear time), and never raises.

>>> parse_answer("Step 1 ... so \\\\boxed{Heat; Fargo}").items
['Heat', 'Fargo']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BOX_OPEN = "\\boxed{"
ITEM_SEPARATOR = ";"

# One token per brace event: a box opening, a plain opening brace or a closing brace.
_BRACE_EVENTS = re.compile(r"\\boxed\{|[{}]")
_BRACES = re.compile(r"[{}]")
_TEXT_WRAPPER = re.compile(r"^\\text(?:bf|it)?\{(.*)\}$", re.DOTALL)


@dataclass
class ParsedAnswer:
    """What a completion answered.

    ``boxed`` is the content of the last complete ``\\boxed{...}`` (None when there is none),
    ``items`` its ``;``-separated entries (stripped, empties dropped), ``n_boxes`` the number of
    complete boxes in the text, and ``ok`` whether there is an answer at all (a box with at least
    one item). Whether the items are valid candidates is the reward's business, not the parser's.
    """

    boxed: str | None = None
    items: list[str] = field(default_factory=list)
    n_boxes: int = 0
    ok: bool = False


def _last_box(text: str) -> tuple[str | None, int]:
    """(content of the complete box that opens last, number of complete boxes)."""
    count = text.count(BOX_OPEN)  # C-speed; the usual answers have exactly one box
    if count == 0:
        return None, 0
    if count == 1:
        start = text.index(BOX_OPEN) + len(BOX_OPEN)
        depth = 0
        for event in _BRACES.finditer(text, start):
            if event.group() == "{":
                depth += 1
            elif depth:
                depth -= 1
            else:
                return text[start : event.start()], 1
        return None, 0
    # stack of (content start, is_box) for each open brace; one pass, so linear in len(text)
    stack: list[tuple[int, bool]] = []
    last_start = -1
    last_content: str | None = None
    n_boxes = 0
    for event in _BRACE_EVENTS.finditer(text):
        token = event.group()
        if token == "}":
            if not stack:
                continue  # a stray closing brace outside any group
            start, is_box = stack.pop()
            if is_box:
                n_boxes += 1
                if start > last_start:  # nested boxes: the one that opens last wins
                    last_start, last_content = start, text[start : event.start()]
        else:
            stack.append((event.end(), token != "{"))
    return last_content, n_boxes


def split_items(boxed: str) -> list[str]:
    """``"A; B ;; C"`` -> ``["A", "B", "C"]``."""
    items = []
    for raw in boxed.split(ITEM_SEPARATOR):
        item = raw.strip()
        if item.startswith("\\text"):
            wrapped = _TEXT_WRAPPER.match(item)
            if wrapped:
                item = wrapped.group(1).strip()
        if item:
            items.append(item)
    return items


def parse_answer(text: str) -> ParsedAnswer:
    """Parse a completion into its boxed answer. Never raises; ``None`` or non-text gives an empty
    answer."""
    if not isinstance(text, str):
        return ParsedAnswer()
    boxed, n_boxes = _last_box(text)
    if boxed is None:
        return ParsedAnswer(boxed=None, items=[], n_boxes=n_boxes, ok=False)
    items = split_items(boxed)
    return ParsedAnswer(boxed=boxed, items=items, n_boxes=n_boxes, ok=bool(items))


def format_answer(titles: list[str]) -> str:
    """``["A", "B"]`` -> ``"\\boxed{A; B}"``, the inverse of :func:`parse_answer` for titles that
    hold no ``;`` and balanced braces (true of every MovieLens title)."""
    return BOX_OPEN + f"{ITEM_SEPARATOR} ".join(t.strip() for t in titles) + "}"
