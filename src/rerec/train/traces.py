"""Reasoning traces synthesised from the graphs, the SFT warm-up's targets (``docs/design.md``).

A trace checks the request's stored conditions against the candidates, says what rules candidates
out, notices a misinformed premise, and ends with the boxed answer naming the positive (:func:`rerec.prompt.answer_text`: its title, or
title and year when another candidate shares the title). Every factual
sentence is decided by the item-attribute index (:class:`rerec.prompt.CatalogView`) and recorded as a
:class:`Fact`, so tests can check each one against the graph. Several styles, picked by a seeded RNG,
keep the model from learning one sentence.

Traces stay short on purpose: on a CPU every completion token costs (``docs/design.md``, "Model profiles").
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from rerec.data.phrasing import genre_word
from rerec.data.schema import decode_conditions
from rerec.prompt import CatalogView, answer_text, describe_shared

STYLES = ("checklist", "eliminate", "direct", "table", "scan")
#: What ``synthesize_trace`` picks from when no style is given: the styles of free prose. ``table`` (one
#: line per candidate) and ``scan`` (table rows up to the first that fits) are opted into, e.g. by the CPU
#: profiles (``SFTWarmupConfig.trace_styles``).
PROSE_STYLES = ("checklist", "eliminate", "direct")

_HOP = {"director": "by the director of {x}", "writer": "by the writer of {x}",
        "producer": "from a producer of {x}", "actor": "with an actor from {x}"}


@dataclass(frozen=True)
class Fact:
    """One checkable claim of a trace: ``item_id`` has (``holds=True``) or lacks the pair."""

    item_id: str
    relation: str
    entity: str
    holds: bool


@dataclass
class Trace:
    text: str
    style: str
    answer_id: str
    facts: list[Fact] = field(default_factory=list)
    #: False when the evidence the prompt shows points elsewhere: the user's taste (the candidate's
    #: "taste #k") ranks another fitting candidate first. The trace still names ``answer_id``, but its
    #: last step would then be a claim the prompt does not support; SFT leaves such traces out
    #: (``SFTWarmupConfig.faithful_only``).
    evidence_picks_answer: bool = True


def condition_phrase(cond: Mapping, view: CatalogView) -> str:
    """How a trace names a condition: "a comedy", "from the 1990s", "by the director of Fargo"."""
    relation, entity = cond["relation"], str(cond["entity"])
    if relation == "genre":
        word = genre_word(entity)
        return ("an " if word[:1] in "aeiou" else "a ") + word
    if relation == "decade":
        return f"from the {entity}"
    if relation == "year":
        return f"from {entity}"
    via = cond.get("via")
    if via is not None:
        return _HOP.get(relation, "sharing a " + relation + " with {x}").format(x=view.name(via))
    return str(cond.get("text") or f"{relation} {entity}")


def condition_label(cond: Mapping, view: CatalogView) -> str:
    """A condition's short name for a table's "Wanted" line: "comedy", "1990s", and for a multi-hop
    condition the words an evidence-mode prompt shows on a candidate that meets it ("same director as
    Fargo", "shares an actor with Toy Story"; :func:`rerec.prompt.describe_shared`)."""
    relation, entity = cond["relation"], str(cond["entity"])
    if relation == "genre":
        return genre_word(entity)
    if relation in ("decade", "year"):
        return entity
    via = cond.get("via")
    if via is not None:
        return describe_shared(relation, 1, view.name(via))
    return str(cond.get("text") or f"{relation} {entity}")


def check_label(cond: Mapping, view: CatalogView) -> str:
    """A condition's name in a table row's check: :func:`condition_label`, but a multi-hop condition is
    its relation alone ("director yes"). A candidate line mentions a relation as evidence about the
    request's items, so the check reads whether the copied line names it; the condition's full name
    (5-15 tokens again per row) is in the "Wanted" line. A row that repeats the full name asks the model to
    check words the candidate line does not contain. The line names the relation exactly when the
    condition holds, except for evidence about a misinformed premise's item and facts cut by
    ``max_facts``."""
    if cond.get("via") is not None:
        return str(cond["relation"])
    return condition_label(cond, view)


def item_decade(view: CatalogView, item: str) -> str | None:
    """The candidate's decade as the attribute graph records it ("1940s"), None when it records none."""
    decades = sorted(view.attributes.get(str(item), {}).get("decade", ()))
    return decades[0] if len(decades) == 1 else None


def _table_rows(candidates: list[str], conditions: list[dict], view: CatalogView, facts: list[Fact],
                lines_shown: list[str] | None = None, stop_at: str | None = None,
                derive_decades: bool = False) -> list[str]:
    """One row per candidate, in the displayed order: the candidate as the prompt lists it (its line
    copied, or its number and title), then each condition with yes/no, then "fits" or "no". Copying the
    line first puts the evidence next to the checks, so each check compares nearby text. Every yes/no
    is a recorded fact. ``stop_at`` ends the rows at that candidate's row. With ``derive_decades`` a
    decade check first writes the candidate's own decade, read off the year just copied: "(1940s) 1930s
    no", so the yes/no compares two decades side by side instead of a year with a decade."""
    lines = []
    labels = [check_label(cond, view) for cond in conditions]  # the same in every row
    for number, item in enumerate(candidates, start=1):
        checks, fits = [], True
        for cond, label in zip(conditions, labels, strict=True):
            holds = view.satisfies(item, cond["relation"], str(cond["entity"]))
            facts.append(Fact(item, cond["relation"], str(cond["entity"]), holds))
            own = item_decade(view, item) if derive_decades and cond["relation"] == "decade" else None
            checks.append((f"({own}) " if own else "") + f"{label} {'yes' if holds else 'no'}")
            fits = fits and holds
        shown = lines_shown[number - 1] if lines_shown else f"{number}. {view.title(item)}"
        lines.append(f"{shown}: {', '.join(checks)} - {'fits' if fits else 'no'}.")
        if item == stop_at:
            break
    return lines


def _fits(item: str, conditions: list[dict], view: CatalogView) -> bool:
    return all(view.satisfies(item, c["relation"], str(c["entity"])) for c in conditions)


def no_fit_query(query: Mapping, view: CatalogView) -> dict | None:
    """The same request over a list WITHOUT its match: the positives are removed and the answer becomes
    the closest remaining candidate (most conditions met; ties: the first shown). None when fewer than
    two candidates would remain or no condition can be decided.

    A ``table``/``scan`` trace of it checks every row, finds none that fits and names the closest. SFT
    can mix a few in (``no_fit_rate``) so that a model which misjudges every row still ends its scan after
    the last candidate with a boxed answer, instead of inventing further rows until the token limit.
    Off by default: at a short CPU budget, examples without a match muddle the per-row verdicts more than
    they help the model stop.
    """
    conditions = [c for c in decode_conditions(query.get("conditions") or []) if c["relation"] in view.relations]
    positives = {str(p) for p in query["positives"]}
    rest = [str(c) for c in query["candidates"] if str(c) not in positives]
    if not conditions or len(rest) < 2:
        return None
    met = [sum(view.satisfies(c, k["relation"], str(k["entity"])) for k in conditions) for c in rest]
    closest = rest[max(range(len(rest)), key=lambda i: (met[i], -i))]
    if _fits(closest, conditions, view):  # another candidate fits after all: not a list without a match
        return None
    return {**query, "candidates": rest, "positives": [closest], "no_fit": True}


def _negated(cond: Mapping, view: CatalogView, item: str) -> str:
    return f"{view.name(item)} is not {condition_phrase(cond, view)}"


def _affirmed(cond: Mapping, view: CatalogView, item: str) -> str:
    return f"{view.name(item)} is {condition_phrase(cond, view)}"


def _premise_note(cond: Mapping, view: CatalogView, facts: list[Fact]) -> str | None:
    """The misinformed link, said only when the graph confirms it is false."""
    premise = cond.get("false_premise") or {}
    item = premise.get("item_id")
    if item is None:
        return None
    relation, entity = cond["relation"], str(cond["entity"])
    if view.satisfies(item, relation, entity):
        return None
    facts.append(Fact(str(item), relation, entity, False))
    if relation == "genre":
        return f"Note: the request is wrong about {view.name(item)}: it is not {condition_phrase(cond, view)}."
    via = cond.get("via")
    link = f"the {relation} of {view.name(via)}" if via is not None else f"that {relation}"
    return f"Note: the request is wrong: {link} did not make {view.name(item)}."


def synthesize_trace(query: Mapping, view: CatalogView, style: str | None = None, seed: int = 0,
                     max_checks: int = 3, styles: tuple[str, ...] = PROSE_STYLES,
                     candidate_lines: list[str] | None = None, derive_decades: bool = False) -> Trace:
    """A reasoning trace for ``query`` ending with the boxed title of its first positive.

    Args:
        query: a ``queries.parquet`` row (``conditions``, ``positives``, ``candidates``, ``query_id``).
        view: the catalog index the facts are decided by.
        style: one of :data:`STYLES`; ``None`` picks one of ``styles`` with a seeded RNG (seed and query id).
        max_checks: at most this many negatives are discussed in prose styles (traces stay short).
        styles: the styles a ``None`` style picks from.
        candidate_lines: the numbered candidate lines as the prompt shows them
            (:func:`rerec.prompt.candidate_lines`); ``table`` rows start by copying them.
        derive_decades: ``table``/``scan`` rows write a candidate's decade before a decade check
            (:func:`_table_rows`).

    Styles: ``checklist`` (the wanted conditions, then negatives ruled out), ``eliminate`` (one ruling-out
    sentence), ``direct`` (why the positive fits) and ``table`` (a scratchpad row per candidate in the
    displayed order: the candidate's line, a yes/no per condition, "fits" or "no" — every candidate is checked, so
    the choice rests on checks a small model can copy from its prompt) and ``scan`` (the table's rows up to
    the positive's, then the box: the answer copies the row just above it, and the trace is shorter. Queries
    from :mod:`rerec.data.queries` have one candidate that fits every condition, the positive, so the scan
    stops at the first row that fits; when none fits, as in :func:`no_fit_query`, every row is checked and
    the closest, the query's positive, is named). With taste evidence (``view.taste``), when several rows fit:
    a list in taste order (:func:`rerec.prompt.display_order`, as every prompt lists it) stops at the first
    that fits, the user's favourite among them; a list in another order checks every row, names the fitting
    ones ("Fit: 2, 3.") and chooses by taste ("By taste: ..."). Queries without a condition the graph can
    decide (interest) take the taste #1 line ("By taste: ...") with taste evidence, else fall back to
    ``direct``.
    """
    rng = np.random.default_rng([seed, zlib.crc32(str(query.get("query_id", "")).encode())])
    for name in (style, *styles) if style else styles:
        if name not in STYLES:
            raise ValueError(f"unknown trace style {name!r}; use one of {STYLES}")
    style = style or styles[int(rng.integers(len(styles)))]
    positive = str(list(query["positives"])[0])
    candidates = [str(c) for c in query["candidates"]]
    # Conditions the attribute index can decide (interest queries' co-interaction links are not in it).
    conditions = [c for c in decode_conditions(query.get("conditions") or []) if c["relation"] in view.relations]
    facts: list[Fact] = []
    lines: list[str] = []

    for cond in conditions:
        note = _premise_note(cond, view, facts)
        if note:
            lines.append(note)

    met = [c for c in conditions if view.satisfies(positive, c["relation"], str(c["entity"]))]
    negatives = [c for c in candidates if c != positive]
    order = [negatives[i] for i in rng.permutation(len(negatives))]
    ruled_out: list[tuple[str, dict]] = []
    for item in order:
        missing = [c for c in conditions if not view.satisfies(item, c["relation"], str(c["entity"]))]
        if missing:
            ruled_out.append((item, missing[int(rng.integers(len(missing)))]))
        if len(ruled_out) >= max_checks:
            break

    fitting = [c for c in candidates if _fits(c, conditions, view)]  # every candidate when nothing is checkable
    taste_line, picks_answer, in_taste_order = None, True, False
    if view.taste is not None and style in ("table", "scan"):
        shown = candidate_lines or [f"{n}. {view.title(c)}" for n, c in enumerate(candidates, start=1)]
        # the shown line without its number: "(taste #1) Heat (1995) - ...", so the step names the rank first
        taste_line = f"By taste: {shown[candidates.index(positive)].split('. ', 1)[-1]}."
        # the taste step names the positive; it is true to the prompt only when the positive ranks first by
        # taste among the candidates that step chooses from (those that fit, or all when nothing is checkable)
        ranks = view.taste.query_ranks(query)

        def taste_rank(item: str) -> int:
            return ranks.get(item, len(candidates) + 1)

        if positive in fitting and len(fitting) > 1:
            picks_answer = min(fitting, key=taste_rank) == positive
        # listed in taste order (rerec.prompt.display_order, as every prompt is): the first row that fits is
        # the favourite among those that fit, so the scan stops there and needs no taste step
        in_taste_order = sorted(candidates, key=taste_rank) == candidates
    if style in ("table", "scan") and conditions:
        lines.append("Wanted: " + "; ".join(condition_label(c, view) for c in conditions) + ".")
        choose_by_taste = (taste_line is not None and len(fitting) > 1 and positive in fitting
                           and not (style == "scan" and in_taste_order))
        lines += _table_rows(candidates, conditions, view, facts, candidate_lines,
                            stop_at=positive if style == "scan" and fitting and not choose_by_taste else None,
                            derive_decades=derive_decades)
        if not fitting:  # a list without a match (see no_fit_query): every row checked, the closest named
            lines.append(f"None fits every condition; the closest is {view.name(positive)}.")
        elif choose_by_taste:
            # step two: several fit the request, the user's taste chooses among them
            lines.append("Fit: " + ", ".join(str(candidates.index(c) + 1) for c in fitting) + ".")
            lines.append(taste_line)
    elif taste_line:  # nothing the attribute graph can decide (interest): the taste alone chooses
        lines.append(taste_line)
    elif style == "checklist" and conditions:
        wants = "; ".join(condition_phrase(c, view) for c in conditions)
        lines.append(f"The request asks for a movie that is: {wants}.")
        for item, cond in ruled_out:
            facts.append(Fact(item, cond["relation"], str(cond["entity"]), False))
            lines.append(f"- {_negated(cond, view, item)}.")
        for cond in met:
            facts.append(Fact(positive, cond["relation"], str(cond["entity"]), True))
        if met:
            lines.append(f"- {view.name(positive)} fits: it is " + " and ".join(
                condition_phrase(c, view) for c in met) + ".")
    elif style == "eliminate" and ruled_out:
        reasons = []
        for item, cond in ruled_out:
            facts.append(Fact(item, cond["relation"], str(cond["entity"]), False))
            reasons.append(_negated(cond, view, item))
        lines.append("Ruling out: " + "; ".join(reasons) + ".")
        lines.append(f"That leaves {view.name(positive)}.")
    else:
        for cond in met[:2]:
            facts.append(Fact(positive, cond["relation"], str(cond["entity"]), True))
        if met:
            lines.append(" and ".join([_affirmed(met[0], view, positive)] + [condition_phrase(c, view)
                                                                              for c in met[1:2]]) + ".")
        else:
            lines.append(f"{view.name(positive)} fits the request best.")
        style = "direct"
    if not lines:
        lines.append(f"{view.name(positive)} fits the request best.")
    lines.append(answer_text(positive, query, view))
    return Trace(text="\n".join(lines), style=style, answer_id=positive, facts=facts,
                 evidence_picks_answer=picks_answer)
