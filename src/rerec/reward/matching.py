"""Answer text -> candidate item id (DESIGN.md, "Prompt and answer").

A :class:`TitleMatcher` holds one query's candidates in displayed order and tries, in turn:

1. ``exact``: the text equals a candidate title;
2. ``normalised``: :func:`normalise_title` of both sides are equal (case, accents, punctuation,
   whitespace, "Matrix, The" == "The Matrix", a "(1999)" year suffix); a title with a parenthetical
   alternative ("Blue Angel, The (Blaue Engel, Der)") also answers to its main part and to the
   alternative, unless another candidate claims that key first;
3. ``number``: a candidate number as displayed, 1-based ("7", "#7", "[7]", "7.", "(7)"), or a number
   followed by the title ("7. Heat"), where the title decides when it matches;
4. ``embedding``: cosine similarity of sentence embeddings (all-MiniLM-L6-v2) at or above a
   threshold, only when an embedder is given.

Everything except the embedding step is dictionary look-ups on cached normalised strings, so a
matcher is cheap to build and to call; the reward keeps one per distinct candidate list.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple, Protocol

import torch

# Articles that MovieLens (and many catalogs) move to the end: "Usual Suspects, The",
# "Postino, Il", "Boot, Das", "Misérables, Les".
ARTICLES = ("the", "a", "an", "la", "le", "les", "l'", "il", "el", "los", "las", "das", "der", "die", "lo")
_ARTICLE_ALT = "|".join(re.escape(a) for a in ARTICLES)
_YEAR_SUFFIX = re.compile(r"\s*[\(\[]\s*(?:1[89]|20)\d\d\s*[\)\]]\s*$")
_TRAILING_ARTICLE = re.compile(rf",\s*(?:{_ARTICLE_ALT})\s*$", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(rf"^(?:{_ARTICLE_ALT})(?:\s+|(?<=')\s*)", re.IGNORECASE)
_PARENTHETICAL = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")
_APOSTROPHES = re.compile(r"['’‘`´]")
_NON_WORD = re.compile(r"[\W_]+")
_CANDIDATE_NUMBER = re.compile(
    r"^\s*(?:candidate|option|item|no\.?|number|#)?\s*[\[(#]?\s*(\d{1,4})\s*[\]).:]?\s*$", re.IGNORECASE
)
_NUMBERED_TITLE = re.compile(r"^\s*[\[(#]?\s*(\d{1,4})\s*[\]).:]\s*(.+)$|^\s*#(\d{1,4})\s+(.+)$", re.DOTALL)

MATCH_KINDS = ("exact", "normalised", "number", "embedding")


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

    Accents folded (NFKD), case-folded, a trailing year in brackets dropped, one leading or trailing
    article dropped (also before a trailing parenthetical alternative title), apostrophes removed,
    ``&`` read as "and", other punctuation and runs of whitespace collapsed to one space.
    """
    text = _YEAR_SUFFIX.sub("", _fold(title))
    paren = _PARENTHETICAL.match(text)
    if paren and paren.group(1):
        text = f"{_drop_articles(paren.group(1))} ({paren.group(2)})"
    else:
        text = _drop_articles(text)
    return _words(text)


@lru_cache(maxsize=1 << 16)
def _alias_keys(title: str) -> tuple[str, ...]:
    """Extra keys for "Main (Alternative)" titles: the main part and the alternative."""
    text = _YEAR_SUFFIX.sub("", _fold(title))
    paren = _PARENTHETICAL.match(text)
    if not (paren and paren.group(1)):
        return ()
    keys = (_words(_drop_articles(paren.group(1))), _words(_drop_articles(paren.group(2))))
    return tuple(k for k in keys if k)


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> torch.Tensor:  # (n, d), rows L2-normalised
        ...


class MatchResult(NamedTuple):
    """``item_id`` None when nothing matched; ``how`` one of :data:`MATCH_KINDS` or None; ``score``
    1.0 for exact, normalised and number matches, the cosine similarity for embedding matches (the
    best one seen, below threshold, when nothing matched), else 0.0."""

    item_id: str | None
    how: str | None
    score: float


NO_MATCH = MatchResult(None, None, 0.0)


class TitleMatcher:
    """Match answer texts to one query's candidates.

    Args:
        candidates: (item_id, title) pairs in displayed order; candidate number i (1-based) is the
            i-th pair.
        embedder: anything with ``encode(list[str]) -> Tensor[n, d]`` returning L2-normalised rows
            (:class:`rerec.reward.embedder.TextEmbedder`); None disables the embedding step.
        threshold: the lowest cosine similarity accepted as an embedding match.

    When two candidates share a title (MovieLens has a few), the one displayed first wins.
    """

    def __init__(
        self,
        candidates: Sequence[tuple[str, str]],
        embedder: Embedder | None = None,
        threshold: float = 0.8,
    ) -> None:
        self.candidates = [(str(i), str(t)) for i, t in candidates]
        self.embedder = embedder
        self.threshold = threshold
        self._exact: dict[str, str] = {}
        self._normalised: dict[str, str] = {}
        aliases: list[tuple[str, str]] = []
        for item_id, title in self.candidates:
            self._exact.setdefault(title, item_id)
            stripped = title.strip()
            if stripped is not title:
                self._exact.setdefault(stripped, item_id)
            self._normalised.setdefault(normalise_title(title), item_id)
            if "(" in title:
                aliases.extend((key, item_id) for key in _alias_keys(title))
        for key, item_id in aliases:  # aliases never shadow a primary key
            self._normalised.setdefault(key, item_id)
        self._normalised.pop("", None)
        self._title_embeddings: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.candidates)

    def match_lexical(self, text: str) -> MatchResult:
        """Every step but the embedding one: exact, normalised, number (dictionary look-ups)."""
        item_id = self._exact.get(text)
        if item_id is not None:
            return MatchResult(item_id, "exact", 1.0)
        item_id = self._normalised.get(normalise_title(text))
        if item_id is not None:
            return MatchResult(item_id, "normalised", 1.0)
        number = _CANDIDATE_NUMBER.match(text)
        if number:
            index = int(number.group(1))
            if 1 <= index <= len(self.candidates):
                return MatchResult(self.candidates[index - 1][0], "number", 1.0)
            return NO_MATCH
        numbered = _NUMBERED_TITLE.match(text)
        if numbered:
            index_text, rest = numbered.group(1) or numbered.group(3), numbered.group(2) or numbered.group(4)
            item_id = self._exact.get(rest.strip()) or self._normalised.get(normalise_title(rest))
            if item_id is not None:
                return MatchResult(item_id, "normalised", 1.0)
            index = int(index_text)
            if 1 <= index <= len(self.candidates):
                return MatchResult(self.candidates[index - 1][0], "number", 1.0)
        return NO_MATCH

    def match_embedding(self, texts: list[str]) -> list[MatchResult]:
        """The embedding step alone, for texts the lexical steps did not match (needs an embedder)."""
        if self.embedder is None or not self.candidates:
            return [NO_MATCH for _ in texts]
        if self._title_embeddings is None:
            self._title_embeddings = self.embedder.encode([t for _, t in self.candidates])
        similarities = self.embedder.encode(texts) @ self._title_embeddings.T  # (n_texts, n_candidates)
        best, index = similarities.max(dim=1)
        results = []
        for score, i in zip(best.tolist(), index.tolist(), strict=True):
            if score >= self.threshold:
                results.append(MatchResult(self.candidates[i][0], "embedding", float(score)))
            else:
                results.append(MatchResult(None, None, float(score)))
        return results

    def match(self, text: str) -> MatchResult:
        """Match one answer item."""
        return self.match_many([text])[0]

    def match_many(self, texts: Sequence[str]) -> list[MatchResult]:
        """Match a batch of answer items; the embedding step runs once for all that need it."""
        results = [self.match_lexical(t) if isinstance(t, str) else NO_MATCH for t in texts]
        if self.embedder is None or not self.candidates:
            return results
        pending = [i for i, (r, t) in enumerate(zip(results, texts, strict=True)) if r.item_id is None
                   and isinstance(t, str) and t.strip()]
        if pending:
            for i, result in zip(pending, self.match_embedding([texts[i] for i in pending]), strict=True):
                results[i] = result
        return results
