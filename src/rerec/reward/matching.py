"""Answer text -> candidate item id, and a completion -> its ranked answer (docs/method.md, "Answer
format"). :func:`rank_answer` / :func:`rank_answers` are the one mapping from a completion to what it
recommends, used by the reward, evaluation, SFT validation, the benches and the served model.

A :class:`TitleMatcher` holds one query's candidates in displayed order (1-based numbers) and decides
an answer item by these rules, in this order of precedence:

1. ``number``: a bare candidate reference as the prompt promises it ("7", "#7", "[7]", "(7)", "7.",
   "candidate 7", "option 7", "no. 7") with 7 a displayed number. A number outside 1..n is read as a
   title instead (a film called "1941" among 4 candidates). A bare number ("10", "10.") that is also
   the title of *another* candidate (the film "10" shown as candidate 3 of 20) names two candidates:
   ``ambiguous``, never either one ("#10", "candidate 10" stay numbers).
2. ``exact``: the text equals a candidate's title or its displayed label, title plus year
   ("Cape Fear (1962)").
3. ``number``: a candidate line as the prompt shows it, "7. Title ...": candidate 7, unless the text
   after the number names another candidate (then the answer contradicts itself: ambiguous).
4. ``normalised``: :func:`normalise_title` keys are equal (case, accents, punctuation, whitespace,
   "Matrix, The" == "The Matrix", the year dropped); a year written in the answer picks among
   candidates sharing the key; a title with a parenthetical alternative ("Blue Angel, The (Blaue
   Engel, Der)") also answers to its main part and to the alternative, unless a candidate's own key
   is that text.
5. ``embedding``: cosine similarity of sentence embeddings (all-MiniLM-L6-v2) at or above a
   threshold, only when an embedder is given, only for texts no lexical rule matched.

Texts are compared in :func:`rerec.answer.canonical_text` form (NFC, Unicode format characters such
as U+200B removed) on both sides, so a decomposed accent or an invisible character neither tells two
titles apart nor stops an answer matching.

When a rule finds several candidates (two "Cape Fear" films and the answer "Cape Fear") the item is
``ambiguous``: it credits no candidate, never the first displayed one. :meth:`TitleMatcher.answer_text`
gives the shortest text that maps back to one candidate (the title, else title and year, else its
number), which is what SFT targets box.

Everything except the embedding step is dictionary look-ups on cached normalised strings, so a
matcher is cheap to build and to call; the reward keeps one per distinct candidate list.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, Protocol

import torch

from rerec.answer import ParsedAnswer, canonical_text, parse_answer, unescape

# Articles that MovieLens (and many catalogs) move to the end: "Usual Suspects, The",
# "Postino, Il", "Boot, Das", "Misérables, Les".
ARTICLES = ("the", "a", "an", "la", "le", "les", "l'", "il", "el", "los", "las", "das", "der", "die", "lo")
_ARTICLE_ALT = "|".join(re.escape(a) for a in ARTICLES)
_YEAR_SUFFIX = re.compile(r"\s*[\(\[]\s*(?:1[89]|20)\d\d\s*[\)\]]\s*$")
_YEAR_AT_END = re.compile(r"[\(\[]\s*((?:1[89]|20)\d\d)\s*[\)\]]\s*$")
_TRAILING_ARTICLE = re.compile(rf",\s*(?:{_ARTICLE_ALT})\s*$", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(rf"^(?:{_ARTICLE_ALT})(?:\s+|(?<=')\s*)", re.IGNORECASE)
_PARENTHETICAL = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")
_APOSTROPHES = re.compile(r"['’‘`´]")
_NON_WORD = re.compile(r"[\W_]+")
_BARE_NUMBER = re.compile(r"^\s*\d{1,4}\s*\.?\s*$")
_CANDIDATE_NUMBER = re.compile(
    r"^\s*(?:candidate|option|item|no\.?|number|#)?\s*[\[(#]?\s*(\d{1,4})\s*[\]).:]?\s*$", re.IGNORECASE
)
_NUMBERED_TITLE = re.compile(r"^\s*[\[(#]?\s*(\d{1,4})\s*[\]).:]\s*(.+)$|^\s*#(\d{1,4})\s+(.+)$", re.DOTALL)

MATCH_KINDS = ("exact", "normalised", "number", "embedding", "ambiguous")


def _fold(text: str) -> str:
    """Case-fold and strip accents (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    if not decomposed.isascii():
        decomposed = "".join(c for c in decomposed if not unicodedata.combining(c))
    return decomposed.casefold()


def _words(text: str) -> str:
    text = text.replace("&", " and ")
    return " ".join(_NON_WORD.sub(" ", _APOSTROPHES.sub("", text)).split())


def _drop_articles(text: str) -> str:
    text = _TRAILING_ARTICLE.sub("", text.strip())
    return _LEADING_ARTICLE.sub("", text, count=1)


@lru_cache(maxsize=1 << 16)
def normalise_title(title: str) -> str:
    """A title's matching key: ``"Matrix, The (1999)"`` and ``"the matrix"`` -> ``"matrix"``.

    Format characters removed, accents folded (NFKD), case-folded, a trailing year in brackets dropped, one leading or trailing
    article dropped (also before a trailing parenthetical alternative title), apostrophes removed,
    ``&`` read as "and", other punctuation and runs of whitespace collapsed to one space.
    """
    text = _YEAR_SUFFIX.sub("", _fold(canonical_text(title)))
    paren = _PARENTHETICAL.match(text)
    if paren and paren.group(1):
        text = f"{_drop_articles(paren.group(1))} ({paren.group(2)})"
    else:
        text = _drop_articles(text)
    return _words(text)


@lru_cache(maxsize=1 << 16)
def _alias_keys(title: str) -> tuple[str, ...]:
    """Extra keys for "Main (Alternative)" titles: the main part and the alternative."""
    text = _YEAR_SUFFIX.sub("", _fold(canonical_text(title)))
    paren = _PARENTHETICAL.match(text)
    if not (paren and paren.group(1)):
        return ()
    keys = (_words(_drop_articles(paren.group(1))), _words(_drop_articles(paren.group(2))))
    return tuple(k for k in keys if k)


def title_year(title: str) -> int | None:
    """The year a title ends with, "(1995)" or "[1995]", else None."""
    found = _YEAR_AT_END.search(title)
    return int(found.group(1)) if found else None


class Candidate(NamedTuple):
    """One candidate as the prompt lists it: its id, title and (when known) year."""

    item_id: str
    title: str
    year: int | None = None

    @property
    def label(self) -> str:
        """The title with its year, as an evidence-mode prompt shows it: "Cape Fear (1962)"."""
        if self.year is None or title_year(self.title) is not None:
            return self.title
        return f"{self.title} ({self.year})"


def as_candidates(candidates: Sequence) -> list[Candidate]:
    """``(item_id, title)`` or ``(item_id, title, year)`` tuples (or :class:`Candidate`) -> Candidates."""
    out = []
    for entry in candidates:
        item_id, title, *rest = entry
        year = rest[0] if rest else None
        out.append(Candidate(str(item_id), str(title), None if year is None else int(year)))
    return out


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> torch.Tensor:  # (n, d), rows L2-normalised
        ...


class MatchResult(NamedTuple):
    """``item_id`` None when no single candidate matched; ``how`` one of :data:`MATCH_KINDS` or None
    (nothing matched); ``score`` 1.0 for exact, normalised and number matches, the cosine similarity
    for embedding matches (the best one seen, below threshold, when nothing matched), else 0.0."""

    item_id: str | None
    how: str | None
    score: float


NO_MATCH = MatchResult(None, None, 0.0)
AMBIGUOUS = MatchResult(None, "ambiguous", 0.0)


def _index(table: dict[str, list[int]], key: str, position: int) -> None:
    if key:
        hits = table.setdefault(key, [])
        if position not in hits:
            hits.append(position)


class TitleMatcher:
    """Match answer texts to one query's candidates (precedence in the module docstring).

    Args:
        candidates: ``(item_id, title)`` or ``(item_id, title, year)`` in displayed order, or
            :class:`Candidate`; candidate number i (1-based) is the i-th.
        embedder: anything with ``encode(list[str]) -> Tensor[n, d]`` returning L2-normalised rows
            (:class:`rerec.reward.embedder.TextEmbedder`); None disables the embedding step.
        threshold: the lowest cosine similarity accepted as an embedding match.
    """

    def __init__(self, candidates: Sequence, embedder: Embedder | None = None, threshold: float = 0.8) -> None:
        self.candidates = as_candidates(candidates)
        self.embedder = embedder
        self.threshold = threshold
        self._years = [c.year if c.year is not None else title_year(c.title) for c in self.candidates]
        self._exact: dict[str, list[int]] = {}
        self._keys: dict[str, list[int]] = {}
        self._aliases: dict[str, list[int]] = {}
        for i, c in enumerate(self.candidates):
            for text in (c.title, c.title.strip(), c.label):
                _index(self._exact, canonical_text(text), i)
            _index(self._keys, normalise_title(c.title), i)
            if "(" in c.title:
                for key in _alias_keys(c.title):
                    _index(self._aliases, key, i)
        self._title_embeddings: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.candidates)

    def _result(self, hits: list[int], how: str) -> MatchResult:
        if len(hits) == 1:
            return MatchResult(self.candidates[hits[0]].item_id, how, 1.0)
        return AMBIGUOUS

    def _by_number(self, number: int) -> MatchResult | None:
        if 1 <= number <= len(self.candidates):
            return MatchResult(self.candidates[number - 1].item_id, "number", 1.0)
        return None

    def _normalised(self, text: str) -> MatchResult:
        """Rule 4: the normalised key, narrowed by a year written in the text."""
        key = normalise_title(text)
        hits = self._keys.get(key) or self._aliases.get(key)
        if not hits:
            return NO_MATCH
        year = title_year(text)
        if year is not None and len(hits) > 1:
            agree = [i for i in hits if self._years[i] == year]
            hits = agree or hits
        return self._result(hits, "normalised")

    def _title(self, text: str) -> MatchResult:
        """Rules 2 and 4 (no numbers): what a title text names."""
        text = canonical_text(text)
        hits = self._exact.get(text)
        return self._result(hits, "exact") if hits else self._normalised(text)

    def match_lexical(self, text: str) -> MatchResult:
        """Every rule but the embedding one (dictionary look-ups)."""
        if not isinstance(text, str):
            return NO_MATCH
        text = canonical_text(text)
        if not text.strip():
            return NO_MATCH
        number = _CANDIDATE_NUMBER.match(text)
        if number:
            found = self._by_number(int(number.group(1)))
            if found is not None:
                if _BARE_NUMBER.match(text):  # "10": candidate 10, or the film "10"?
                    titled = self._title(text.strip().rstrip(".").strip())
                    if titled.how is not None and titled.item_id != found.item_id:
                        return AMBIGUOUS
                return found
        stripped = text.strip()
        hits = self._exact.get(text) or self._exact.get(stripped)
        if hits:
            return self._result(hits, "exact")
        numbered = _NUMBERED_TITLE.match(text)
        if numbered:
            index_text, rest = numbered.group(1) or numbered.group(3), numbered.group(2) or numbered.group(4)
            by_number = self._by_number(int(index_text))
            if by_number is not None:
                named = self._title(rest.strip())
                if named.how is None or named.item_id == by_number.item_id:
                    return by_number
                if named.how == "ambiguous" and self._title_could_be(rest.strip(), int(index_text) - 1):
                    return by_number
                return AMBIGUOUS  # "3. Heat" where candidate 3 is another film: the answer contradicts itself
        return self._normalised(stripped)

    def _title_could_be(self, text: str, position: int) -> bool:
        """Whether ``text`` names candidate ``position`` among others (e.g. a remake's shared title)."""
        c = self.candidates[position]
        text = canonical_text(text)
        return (text in {canonical_text(t) for t in (c.title, c.title.strip(), c.label)}
                or normalise_title(text) == normalise_title(c.title))

    def match_embedding(self, texts: list[str]) -> list[MatchResult]:
        """The embedding step alone, for texts the lexical steps did not match (needs an embedder)."""
        if self.embedder is None or not self.candidates:
            return [NO_MATCH for _ in texts]
        if self._title_embeddings is None:
            self._title_embeddings = self.embedder.encode([c.title for c in self.candidates])
        similarities = self.embedder.encode(texts) @ self._title_embeddings.T  # (n_texts, n_candidates)
        best, index = similarities.max(dim=1)
        results = []
        for score, i in zip(best.tolist(), index.tolist(), strict=True):
            if score >= self.threshold:
                results.append(MatchResult(self.candidates[i].item_id, "embedding", float(score)))
            else:
                results.append(MatchResult(None, None, float(score)))
        return results

    def match(self, text: str) -> MatchResult:
        """Match one answer item."""
        return self.match_many([text])[0]

    def match_many(self, texts: Sequence[str]) -> list[MatchResult]:
        """Match a batch of answer items; the embedding step runs once for all that need it (never for an
        ambiguous item: the embedding would only pick one of the candidates it is ambiguous between)."""
        results = [self.match_lexical(t) for t in texts]
        if self.embedder is None or not self.candidates:
            return results
        pending = [i for i, (r, t) in enumerate(zip(results, texts, strict=True))
                   if r.how is None and isinstance(t, str) and t.strip()]
        if pending:
            for i, result in zip(pending, self.match_embedding([texts[i] for i in pending]), strict=True):
                results[i] = result
        return results

    def answer_text(self, item_id: str) -> str:
        """The shortest answer text that :meth:`match_lexical` maps back to ``item_id`` alone: its title,
        else its title and year, else its number ("#7" where a candidate is titled "7"). What SFT
        targets box (before escaping)."""
        for position, c in enumerate(self.candidates):
            if c.item_id == str(item_id):
                for text in (c.title.strip(), c.label.strip(), str(position + 1)):
                    if text and self.match_lexical(text).item_id == c.item_id:
                        return text
                return f"#{position + 1}"
        raise KeyError(f"{item_id!r} is not a candidate")


@dataclass
class RankedAnswer:
    """What a completion recommends, in its order.

    ``ranked[i]`` is the candidate id that answer item i names, None where it names no single
    candidate (unknown, or ambiguous): it keeps its position and scores as a miss, so boxing an
    unknown title before the right one loses the top spot. ``kinds[i]`` says how item i matched
    (:data:`MATCH_KINDS`, None for nothing).
    """

    parsed: ParsedAnswer
    ranked: list[str | None] = field(default_factory=list)
    kinds: list[str | None] = field(default_factory=list)

    @property
    def top1(self) -> str | None:
        """The recommended item: the first answer item's candidate (None when it names none)."""
        return self.ranked[0] if self.ranked else None

    def valid(self, top_k: int = 1) -> bool:
        """The format test: an answer of at most ``top_k`` items, each naming one candidate, none twice."""
        return (self.parsed.ok and len(self.ranked) <= top_k and None not in self.ranked
                and len(set(self.ranked)) == len(self.ranked))


def _whole_box(parsed: ParsedAnswer, matcher: TitleMatcher, results: list[MatchResult]) -> list[MatchResult] | None:
    """An unescaped title with a ``;`` in it ("Crimes; Director's Cut") splits into items that name
    nothing; when the whole box names one candidate, it is one item."""
    if len(parsed.items) < 2 or all(r.item_id is not None for r in results) or parsed.boxed is None:
        return None
    whole = matcher._title(unescape(parsed.boxed).strip())
    return [whole] if whole.item_id is not None else None


def rank_answers(texts: Sequence[object], matchers: Sequence[TitleMatcher]) -> list[RankedAnswer]:
    """One :class:`RankedAnswer` per completion; ``matchers[i]`` holds completion i's candidates.
    Completions that are not text rank nothing. The embedding step (matchers with an embedder) embeds
    every pending answer item of the batch in one pass when the matchers share one embedder."""
    parsed = [parse_answer(t) for t in texts]
    results: list[list[MatchResult]] = []
    for p, matcher in zip(parsed, matchers, strict=True):
        row = [matcher.match_lexical(item) for item in p.items]
        results.append(_whole_box(p, matcher, row) or row)
    pending = [(i, j) for i, row in enumerate(results) for j, r in enumerate(row)
               if r.how is None and matchers[i].embedder is not None]
    if pending:
        embedders = {id(matchers[i].embedder): matchers[i].embedder for i, _ in pending}
        if len(embedders) == 1:  # warm the shared embedder's cache with one forward pass
            next(iter(embedders.values())).encode(list(dict.fromkeys(parsed[i].items[j] for i, j in pending)))
        for i, j in pending:
            results[i][j] = matchers[i].match_embedding([parsed[i].items[j]])[0]
    return [RankedAnswer(p, [r.item_id for r in row], [r.how for r in row])
            for p, row in zip(parsed, results, strict=True)]


def rank_answer(text: object, matcher: TitleMatcher) -> RankedAnswer:
    """The ranked answer of one completion (:func:`rank_answers` for one)."""
    return rank_answers([text], [matcher])[0]
