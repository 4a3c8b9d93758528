"""The one module that builds prompts (``docs/design.md``, "Prompts"; ``docs/method.md``, "Answer format").

Training (SFT traces, RFT rollouts), evaluation and serving all call :func:`build_messages` and
:func:`render_prompt`, and read answers back with :func:`answer_ranking` (the parser of
:mod:`rerec.answer` and the matcher of :mod:`rerec.reward.matching`), so what a model is trained on is
exactly what it is evaluated and served on.

A prompt is the model's chat template around two turns:

- system: the task and the answer format (short steps, then ``\\boxed{Title}``; a number also counts);
- user: the request, optionally the last few history titles, and the numbered candidates. In
  ``evidence`` mode (the default, the production setting: a company's catalog is unknown to any
  pretrained model) each candidate carries what the catalog knows: year, genres, and the knowledge-graph
  entities it shares with the items the request names (a condition's ``via`` item, a misinformed
  premise's item) or the user's history, e.g. "same director as Fargo", "shares 2 actors with Toy
  Story". When the view carries the user's taste (:mod:`rerec.taste`), the candidates are listed in
  taste order (:func:`display_order`: "1." is the user's taste #1) and each evidence line starts with
  the candidate's taste rank ("(taste #1)"). With ``CatalogView.decades`` the line also names the
  candidate's decade beside its year ("Dumbo (1941) - 1940s; animation, ..."), so a check of a decade
  request compares two decades written side by side instead of a year with a decade. ``titles`` mode
  lists titles only (the paper's setting: the model must know the items).

>>> view = CatalogView.from_catalog(catalog)
>>> messages = build_messages(query, view, mode="evidence")
>>> text = render_prompt(tokenizer, messages)
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rerec.answer import format_answer, parse_answer
from rerec.data.phrasing import display_title, genre_word
from rerec.data.schema import PERSON_RELATIONS, Catalog, decode_conditions
from rerec.errors import ConfigError

__all__ = ["CatalogView", "build_messages", "candidate_lines", "decade_of", "render_prompt", "answer_ranking", "answer_text",
           "query_matcher", "shrink_candidates", "display_order",
           "describe_shared", "format_answer", "parse_answer", "SYSTEM_PROMPT", "MODES"]

MODES = ("evidence", "titles")

SYSTEM_PROMPT = (
    "You recommend one movie from a numbered list of candidates. Think in a few short steps: check the "
    "request against the candidates and rule out the ones that do not fit. Then give the chosen title "
    "in a box, like \\boxed{Title}. A candidate number, like \\boxed{3}, is also accepted."
)

# Relations whose shared entities are shown as evidence (people: the multi-hop relations).
EVIDENCE_RELATIONS = PERSON_RELATIONS
_PLURAL = {"actor": "actors", "director": "directors", "writer": "writers", "producer": "producers"}
_YEAR_SUFFIX = re.compile(r"\((?:1[89]|20)\d\d\)\s*$")


@dataclass
class CatalogView:
    """What prompts and traces need of a catalog, indexed once.

    ``attributes``: item id -> relation -> entities (item-centric, as in ``item_attributes``);
    ``popularity``: item id -> number of interactions (for the popularity baseline).
    """

    titles: dict[str, str]
    years: dict[str, int | None] = field(default_factory=dict)
    genres: dict[str, list[str]] = field(default_factory=dict)
    attributes: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    popularity: dict[str, int] = field(default_factory=dict)
    #: the user's taste (:class:`rerec.taste.TasteIndex`); when set, evidence lines carry "taste #k"
    taste: Any = None
    #: evidence lines carry each candidate's decade after its year ("Dumbo (1941) - 1940s; animation, ...")
    decades: bool = False

    @classmethod
    def from_tables(cls, items: Any, item_attributes: Any = None, interactions: Any = None) -> CatalogView:
        """From the ``items`` / ``item_attributes`` / ``interactions`` tables of :mod:`rerec.data.schema`
        (``item_attributes`` may also be an ``ItemAttributeGraph``'s ``table``)."""
        ids = items["item_id"].astype(str).tolist()
        titles = dict(zip(ids, items["title"].astype(str), strict=True))
        years: dict[str, int | None] = {}
        if "year" in items:
            for item, year in zip(ids, items["year"], strict=True):
                years[item] = None if pd.isna(year) else int(year)
        genres: dict[str, list[str]] = {}
        if "genres" in items:
            for item, value in zip(ids, items["genres"], strict=True):
                genres[item] = [str(g) for g in value] if value is not None and not isinstance(value, float) else []
        attributes: dict[str, dict[str, set[str]]] = {}
        if item_attributes is not None and len(item_attributes):
            for item, relation, entity in zip(item_attributes["item_id"].astype(str),
                                              item_attributes["relation"].astype(str),
                                              item_attributes["entity"].astype(str), strict=True):
                attributes.setdefault(item, {}).setdefault(relation, set()).add(entity)
        popularity: dict[str, int] = {}
        if interactions is not None and len(interactions):
            popularity = {str(k): int(v) for k, v in interactions["item_id"].astype(str).value_counts().items()}
        return cls(titles=titles, years=years, genres=genres, attributes=attributes, popularity=popularity)

    @classmethod
    def from_catalog(cls, catalog: Catalog, graph: Any = None) -> CatalogView:
        """From a loaded :class:`Catalog`; ``graph`` (an ``ItemAttributeGraph``) replaces its attributes."""
        attributes = graph.table if graph is not None else catalog.item_attributes
        return cls.from_tables(catalog.items, attributes, catalog.interactions)

    @property
    def relations(self) -> set[str]:
        """Relations present in the attribute index."""
        if not hasattr(self, "_relations"):
            self._relations = {r for rels in self.attributes.values() for r in rels}
        return self._relations

    def satisfies(self, item_id: str, relation: str, entity: str) -> bool:
        return str(entity) in self.attributes.get(str(item_id), {}).get(relation, ())

    def shared(self, item_a: str, item_b: str, relations: Sequence[str] = EVIDENCE_RELATIONS) -> dict[str, set[str]]:
        """relation -> entities both items have (only relations with at least one)."""
        a, b = self.attributes.get(str(item_a), {}), self.attributes.get(str(item_b), {})
        out = {r: a.get(r, set()) & b.get(r, set()) for r in relations}
        return {r: e for r, e in out.items() if e}

    def title(self, item_id: str) -> str:
        return self.titles.get(str(item_id), str(item_id))

    def name(self, item_id: str) -> str:
        """How a person writes the title ("The Usual Suspects"), for reasoning text."""
        return display_title(self.title(item_id))


def decade_of(year: int) -> str:
    """The decade a year falls in, as requests and the attribute graph name it: 1941 -> "1940s"."""
    return f"{int(year) // 10 * 10}s"


def describe_shared(relation: str, count: int, other_name: str) -> str:
    """("director", 1, "Fargo") -> "same director as Fargo"; ("actor", 2, ...) -> "shares 2 actors with ..."."""
    if count == 1:
        return f"shares an actor with {other_name}" if relation == "actor" else f"same {relation} as {other_name}"
    return f"shares {count} {_PLURAL.get(relation, relation + 's')} with {other_name}"


def reference_items(query: Mapping, include_history: bool = True, max_history: int = 5) -> list[str]:
    """Items the request names (``via`` and misinformed premises), then the last history items."""
    refs: list[str] = []
    for cond in decode_conditions(query.get("conditions") or []):
        for item in (cond.get("via"), (cond.get("false_premise") or {}).get("item_id")):
            if item is not None and str(item) not in refs:
                refs.append(str(item))
    if include_history and max_history > 0:
        for item in list(query.get("history") or [])[-max_history:]:
            if str(item) not in refs:
                refs.append(str(item))
    return refs


def candidate_evidence(view: CatalogView, item_id: str, refs: Sequence[str], max_facts: int = 3) -> list[str]:
    """Shared-entity facts of one candidate against the reference items, most specific first."""
    facts: list[str] = []
    for ref in refs:
        if ref == str(item_id):
            continue
        for relation, entities in view.shared(item_id, ref).items():
            facts.append(describe_shared(relation, len(entities), view.name(ref)))
    return facts[:max_facts]


def candidate_line(view: CatalogView, number: int, item_id: str, mode: str, refs: Sequence[str],
                   taste_rank: int | None = None) -> str:
    title = view.title(item_id)
    if mode == "titles":
        return f"{number}. {title}"
    # the taste rank goes before the title: a trace that writes "(taste #1)" is followed, in the prompt, by
    # the title it names, which a small model copies (after the title it would have to look back for it)
    parts = [f"{number}. " + (f"(taste #{taste_rank}) " if taste_rank is not None else "") + title]
    year = view.years.get(str(item_id))
    if year is not None and not _YEAR_SUFFIX.search(title):
        parts[0] += f" ({year})"
    genres = view.genres.get(str(item_id)) or []
    details = [", ".join(genre_word(g) for g in genres)] if genres else []
    if view.decades and year is not None:
        details.insert(0, decade_of(year))
    details += candidate_evidence(view, item_id, refs)
    return parts[0] + (" - " + "; ".join(details) if details else "")


def candidate_lines(query: Mapping, view: CatalogView, mode: str = "evidence", include_history: bool = True,
                    max_history: int = 5) -> list[str]:
    """The numbered candidate lines exactly as :func:`build_messages` shows them ("3. Heat (1995) - ...")."""
    if mode not in MODES:
        raise ConfigError(f"Unknown prompt mode '{mode}'. Fix: use one of {', '.join(MODES)}.")
    refs = reference_items(query, include_history, max_history) if mode == "evidence" else []
    ranks = view.taste.query_ranks(query) if mode == "evidence" and view.taste is not None else {}
    return [candidate_line(view, i, str(c), mode, refs, ranks.get(str(c)))
            for i, c in enumerate(query["candidates"], start=1)]


def build_messages(
    query: Mapping,
    catalog_view: CatalogView,
    mode: str = "evidence",
    include_history: bool = True,
    max_history: int = 5,
    system_prompt: str = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """The chat for one query: ``[{"role": "system", ...}, {"role": "user", ...}]``.

    ``query`` is a row of ``queries.parquet`` (``text``, ``conditions``, ``candidates`` in displayed
    order, optional ``history``). Candidates are numbered from 1 in their stored order.
    """
    if mode not in MODES:
        raise ConfigError(f"Unknown prompt mode '{mode}'. Fix: use one of {', '.join(MODES)}.")
    view = catalog_view
    lines = [f"Request: {str(query['text']).strip()}"]
    history = list(query.get("history") or [])[-max_history:] if include_history and max_history > 0 else []
    if history:
        lines.append("I watched: " + "; ".join(view.name(h) for h in history))
    lines.append("Candidates:")
    lines += candidate_lines(query, view, mode, include_history, max_history)
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": "\n".join(lines)}]


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text through the tokenizer's chat template, ending where the assistant starts."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def query_matcher(query: Mapping, view: CatalogView, embedder: Any = None, threshold: float = 0.8) -> Any:
    """A :class:`rerec.reward.matching.TitleMatcher` over the query's candidates in displayed order, with
    each candidate's title and year as the catalog knows them."""
    from rerec.reward.matching import TitleMatcher

    candidates = [str(c) for c in query["candidates"]]
    return TitleMatcher([(c, view.title(c), view.years.get(c)) for c in candidates], embedder=embedder,
                        threshold=threshold)


def answer_ranking(text: str, query: Mapping, view: CatalogView) -> Any:
    """What a completion recommends for ``query``: a :class:`rerec.reward.matching.RankedAnswer` whose
    ``ranked`` holds one candidate id per answer item, None for an item naming no single candidate."""
    from rerec.reward.matching import rank_answer

    return rank_answer(text, query_matcher(query, view))


def answer_text(item_id: str, query: Mapping, view: CatalogView) -> str:
    """The boxed answer naming ``item_id`` among the query's candidates: its title when that is
    unambiguous, else title and year, else its number (:meth:`TitleMatcher.answer_text`), escaped."""
    return format_answer([query_matcher(query, view).answer_text(str(item_id))])


def shrink_candidates(query: Mapping, n: int, view: CatalogView | None = None, seed: int = 0) -> dict:
    """A copy of ``query`` showing only ``n`` candidates: its positives, then the trap items of a misinformed
    query (each condition's ``false_premise.item_id``: without them the false premise tests nothing), then
    the hardest other negatives (those meeting most of the stored conditions; ties broken by a seeded
    shuffle); listed in displayed order (:func:`display_order`: taste order when ``view`` carries a taste
    index, else stored order).

    CPU profiles show few candidates (``docs/data.md``, "Fewer candidates on a CPU"); training and evaluation must shrink with the same
    function and seed so they see the same lists.
    """
    candidates = [str(c) for c in query["candidates"]]
    if n <= 0 or len(candidates) <= n:
        return display_order(query, view)
    positives = {str(p) for p in query["positives"]}
    conditions = decode_conditions(query.get("conditions") or [])
    traps = [str(c["false_premise"]["item_id"]) for c in conditions
             if isinstance(c.get("false_premise"), dict) and c["false_premise"].get("item_id") is not None]
    traps = [t for t in dict.fromkeys(traps) if t in candidates and t not in positives]
    rng = np.random.default_rng([seed, zlib.crc32(str(query.get("query_id", "")).encode())])
    negatives = [c for c in candidates if c not in positives]
    order = rng.permutation(len(negatives))
    rank = np.empty(len(negatives), dtype=np.int64)
    rank[order] = np.arange(len(negatives))  # negative i's place in the seeded shuffle
    if view is not None and conditions:
        met = [sum(view.satisfies(c, k["relation"], k["entity"]) for k in conditions) for c in negatives]
        ranked = sorted(range(len(negatives)), key=lambda i: (-met[i], int(rank[i])))
    else:
        ranked = [int(i) for i in order]
    others = [negatives[i] for i in ranked if negatives[i] not in traps]
    keep = positives | set((traps + others)[: max(n - len(positives), 0)])
    out = dict(query)
    out["candidates"] = [c for c in candidates if c in keep]
    return display_order(out, view)


def display_order(query: Mapping, view: CatalogView | None) -> dict:
    """A copy of ``query`` with its candidates in the order a prompt lists them: by the user's taste rank
    (:meth:`rerec.taste.TasteIndex.query_ranks`, taste #1 first) when ``view`` carries a taste index, else
    as stored.

    Why: a scan trace checks the rows from the top and stops at the first one that meets the request, so
    in taste order the row it stops at is the user's favourite among those that fit, the choice the taste
    step used to make at the end of the trace; and a model that has not learned the checks yet falls back on
    the taste #1 row rather than on the list's random order. The ranks come from training interactions only
    (:mod:`rerec.taste`), so the order tells nothing the taste labels do not. Idempotent: ties keep the
    order given, so ordering an ordered list changes nothing. Every stage that builds a prompt calls it
    (:func:`shrink_candidates`, :class:`rerec.eval.generate.LLMRanker`, :func:`rerec.eval.choice.evaluate_choice`),
    so training, evaluation and serving number the candidates alike."""
    out = dict(query)
    taste = getattr(view, "taste", None)
    if taste is None:
        return out
    candidates = [str(c) for c in query["candidates"]]
    ranks = taste.query_ranks(out)
    out["candidates"] = sorted(candidates, key=lambda c: ranks[c])
    return out
