"""The answer format shared by every stage: reasoning, then ``\\boxed{Title}`` (top-1) or
``\\boxed{T1; T2; T3}`` (top-K). Training (the reward and the SFT targets), evaluation and serving all
parse with :func:`parse_answer` and write with :func:`format_answer`, so what the reward accepts is
exactly what the benchmark and the served model accept (docs/method.md, "Answer format").

Rules:

- the answer is the content of the **last complete** ``\\boxed{...}``; braces nest, so
  ``\\boxed{Se7en {1995}}`` keeps ``Se7en {1995}``; a final box that never closes (a truncated
  completion) does not count, and an earlier complete box is used instead (``truncated`` says so);
- inside a box a backslash escapes the four characters the format uses: ``\\;``, ``\\{``, ``\\}`` and
  ``\\\\`` stand for ``;``, ``{``, ``}`` and ``\\``. Any other backslash is literal (``\\text{...}``).
  :func:`format_answer` escapes, so any title round-trips, one with ``;``, braces, a backslash or
  even ``\\boxed{`` in it included;
- the content is split on unescaped ``;`` into items, each unescaped and stripped; empty items are
  dropped; a LaTeX ``\\text{...}`` wrapper around an item is removed;
- parsing is one left-to-right pass (linear time), and never raises.

>>> parse_answer("Step 1 ... so \\\\boxed{Heat; Fargo}").items
['Heat', 'Fargo']
>>> parse_answer(format_answer(["Crimes; Director's Cut"])).items
["Crimes; Director's Cut"]
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

BOX_OPEN = "\\boxed{"
ITEM_SEPARATOR = ";"

# Inside a box: a box opening, an escaped character, or a plain brace.
_BOX_EVENTS = re.compile(r"\\boxed\{|\\[\\;{}]|[{}]")
# Inside a box's content: an escaped character or an item separator.
_ITEM_EVENTS = re.compile(r"\\[\\;{}]|;")
_ESCAPED = re.compile(r"\\([\\;{}])")
_TEXT_WRAPPER = re.compile(r"^\\text(?:bf|it)?\{(.*)\}$", re.DOTALL)
_TO_ESCAPE = re.compile(r"([\\;{}])")


@dataclass
class ParsedAnswer:
    """What a completion answered.

    ``boxed`` is the raw content of the last complete ``\\boxed{...}`` (None when there is none),
    ``items`` its ``;``-separated entries (unescaped, stripped, empties dropped), ``n_boxes`` the number
    of complete boxes in the text, ``ok`` whether there is an answer at all (a box with at least one
    item), ``span`` the ``(start, end)`` characters of the box answered from (``\\boxed{`` to its
    closing brace, inclusive), and ``truncated`` whether a box opened after it never closed (a
    completion cut off in its final answer). Whether the items are candidates is the matcher's
    business (:func:`rerec.reward.matching.rank_answer`), not the parser's.
    """

    boxed: str | None = None
    items: list[str] = field(default_factory=list)
    n_boxes: int = 0
    ok: bool = False
    span: tuple[int, int] | None = None
    truncated: bool = False


def _boxes(text: str) -> tuple[tuple[int, int, int] | None, int, bool]:
    """((box start, content start, content end) of the complete box that opens last, number of
    complete boxes, whether a box opening after it is left unclosed). One pass: linear in len(text)."""
    stack: list[tuple[int, int, bool]] = []  # (opening start, content start, is a box) per open group
    last: tuple[int, int, int] | None = None
    n_boxes, pos = 0, 0
    while True:
        if not stack:  # outside any box only a box opening matters; escapes and braces are plain text
            start = text.find(BOX_OPEN, pos)
            if start < 0:
                break
            stack.append((start, start + len(BOX_OPEN), True))
            pos = start + len(BOX_OPEN)
            continue
        event = _BOX_EVENTS.search(text, pos)
        if event is None:
            break
        token, pos = event.group(), event.end()
        if token == BOX_OPEN:
            stack.append((event.start(), event.end(), True))
        elif token == "{":
            stack.append((event.start(), event.end(), False))
        elif token == "}":
            opened, content, is_box = stack.pop()
            if is_box:
                n_boxes += 1
                if last is None or opened > last[0]:  # nested boxes: the one that opens last wins
                    last = (opened, content, event.start())
        # an escaped character: part of the content, no effect on nesting
    truncated = any(is_box and (last is None or opened > last[0]) for opened, _, is_box in stack)
    return last, n_boxes, truncated


def split_items(boxed: str) -> list[str]:
    """``"A; B ;; C\\\\; D"`` -> ``["A", "B", "C; D"]``: split on unescaped ``;``, unescape, strip."""
    raw, start = [], 0
    for event in _ITEM_EVENTS.finditer(boxed):
        if event.group() == ITEM_SEPARATOR:
            raw.append(boxed[start:event.start()])
            start = event.end()
    raw.append(boxed[start:])
    items = []
    for part in raw:
        part = part.strip()
        if part.startswith("\\text"):  # a LaTeX wrapper, recognised before unescaping: a title that starts
            wrapped = _TEXT_WRAPPER.match(part)  # with "\text{" is written escaped and is not one
            if wrapped:
                part = wrapped.group(1)
        item = unescape(part).strip()
        if item:
            items.append(item)
    return items


def unescape(text: str) -> str:
    """``\\;`` -> ``;``, ``\\{`` -> ``{``, ``\\}`` -> ``}``, ``\\\\`` -> ``\\``; other backslashes stay."""
    return _ESCAPED.sub(r"\1", text) if "\\" in text else text


def escape(title: str) -> str:
    """The inverse of :func:`unescape` for one item: a backslash before each of ``\\ ; { }``."""
    return _TO_ESCAPE.sub(r"\\\1", title)


def parse_answer(text: str) -> ParsedAnswer:
    """Parse a completion into its boxed answer. Never raises; ``None`` or non-text gives an empty
    answer."""
    if not isinstance(text, str):
        return ParsedAnswer()
    box, n_boxes, truncated = _boxes(text)
    if box is None:
        return ParsedAnswer(n_boxes=n_boxes, truncated=truncated)
    opened, content_start, content_end = box
    boxed = text[content_start:content_end]
    items = split_items(boxed)
    return ParsedAnswer(boxed=boxed, items=items, n_boxes=n_boxes, ok=bool(items),
                        span=(opened, content_end + 1), truncated=truncated)


def has_format_characters(text: str) -> bool:
    """Whether ``text`` holds a Unicode format character (category Cf: zero-width space U+200B,
    right-to-left mark U+200F, right-to-left override U+202E, soft hyphen, BOM, ...)."""
    return not text.isascii() and any(unicodedata.category(c) == "Cf" for c in text)


def canonical_text(text: str) -> str:
    """``text`` as titles are compared everywhere: Unicode NFC (a decomposed ``e`` + U+0301 becomes ``é``)
    with every format character (category Cf) removed. Invisible differences cannot tell two titles
    apart, so the loader stores titles in this form and the matcher reads answers in it; ASCII text is
    returned as it is."""
    if text.isascii():
        return text
    if has_format_characters(text):
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFC", text)


def format_answer(items: list[str]) -> str:
    """``["A", "B;C"]`` -> ``"\\boxed{A; B\\;C}"``, the inverse of :func:`parse_answer` for any items
    (stripped, non-empty): the format's own characters are escaped."""
    return BOX_OPEN + f"{ITEM_SEPARATOR} ".join(escape(t.strip()) for t in items) + "}"
