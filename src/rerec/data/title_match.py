"""Align two film tables by title and year: the same film under two numberings.

Used to put a knowledge graph's links (keyed by one numbering) onto a catalog's items (keyed by
another): RecBole's ``ml-100k.link`` is keyed by MovieLens *global* movie ids, not ML-100k item ids
(docs/data.md, "The embedded knowledge graph").

Matching is in tiers, and every match records its tier so that each tier can be measured:

* ``exact``: a title alias (below) and the year are equal;
* ``year_off_by_one``: an alias is equal and the years differ by one (the two tables date the same
  release differently: festival year against release year);
* ``fuzzy``: the most similar aliases (:class:`difflib.SequenceMatcher` ratio) reach ``fuzzy_threshold``,
  the years are within one, the numbers in the titles agree ("Supercop 2" is not "Supercop"), and the
  runner-up is at least ``fuzzy_margin`` behind.

A source row that meets two different films of the target is *ambiguous* and dropped; so is a target
film claimed by two source rows. Nothing is guessed: an unmatched row stays unmatched.

Aliases of a title: the title itself and each parenthesised alternative ("Cinema Paradiso (Nuovo
cinema Paradiso)" -> both names; "(a.k.a. Rocket Man)" -> "rocket man"), accents removed, lower case, a
trailing article moved to the front ("Usual Suspects, The" -> "the usual suspects"), "&" read as "and",
punctuation as spaces.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

TIERS = ("exact", "year_off_by_one", "fuzzy")

_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "el", "das", "der", "die", "l'")
_TRAILING_ARTICLE = re.compile(r"^(.*), (" + "|".join(re.escape(a) for a in _ARTICLES) + r")$")
_PARENTHESIS = re.compile(r"\(([^()]*)\)")
_AKA = re.compile(r"^(?:a\.?k\.?a\.?|aka)\s+")
_NUMBER_TOKENS = frozenset({"ii", "iii", "iv", "vi", "vii", "viii", "ix", "x"})


def _plain(text: str) -> str:
    """Lower case, accents removed, the trailing article moved to the front, punctuation as spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower().strip()
    text = _AKA.sub("", text).strip()
    moved = _TRAILING_ARTICLE.match(text)
    if moved:
        text = f"{moved.group(2)} {moved.group(1)}"
    text = text.replace("&", " and ").replace("+", " and ")
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def title_aliases(title: str) -> frozenset[str]:
    """The names a title goes by (module docstring); empty for a blank title.

    >>> sorted(title_aliases("Postman, The (Postino, Il)"))
    ['il postino', 'the postman']
    """
    outside = _PARENTHESIS.sub(" ", title)
    names = [outside, *_PARENTHESIS.findall(title)]
    return frozenset(a for a in (_plain(n) for n in names) if a)


def title_numbers(alias: str) -> frozenset[str]:
    """Sequel numbers of an alias: digits and Roman numerals II-X ("star trek ii" -> {"ii"})."""
    return frozenset(t for t in alias.split() if t.isdigit() or t in _NUMBER_TOKENS)


@dataclass(frozen=True)
class Film:
    """One row of a film table: its id in that table, title and year (``None`` when unknown)."""

    id: str
    title: str
    year: int | None


@dataclass(frozen=True)
class Match:
    """``source_id`` is the film ``target_ids`` (several when the target lists one film twice)."""

    source_id: str
    target_ids: tuple[str, ...]
    tier: str
    score: float


@dataclass(frozen=True)
class Alignment:
    matches: tuple[Match, ...]
    ambiguous: tuple[str, ...]  # source ids that met two different films
    contested: tuple[str, ...]  # source ids dropped because another source row claimed the same film
    unmatched: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        by_tier = {tier: sum(m.tier == tier for m in self.matches) for tier in TIERS}
        return {**by_tier, "matched": len(self.matches), "ambiguous": len(self.ambiguous),
                "contested": len(self.contested), "unmatched": len(self.unmatched)}


def _film_key(film: Film) -> tuple[str, int | None]:
    """One film of the target: its main alias (outside any parenthesis) and its year."""
    main = _plain(_PARENTHESIS.sub(" ", film.title)) or min(title_aliases(film.title), default="")
    return main, film.year


def align_films(source: Iterable[Film], target: Iterable[Film], *, fuzzy_threshold: float = 0.9,
                fuzzy_margin: float = 0.05) -> Alignment:
    """Match every source film to one target film (module docstring for the tiers and the rules)."""
    target = list(target)
    films: dict[tuple, list[str]] = defaultdict(list)  # a target film -> its ids (duplicates share one key)
    by_alias_year: dict[tuple[str, int], set[tuple]] = defaultdict(set)
    by_year: dict[int, list[tuple[str, tuple]]] = defaultdict(list)
    for film in target:
        key = _film_key(film)
        films[key].append(film.id)
        if film.year is None:
            continue
        for alias in title_aliases(film.title):
            by_alias_year[alias, film.year].add(key)
            by_year[film.year].append((alias, key))

    found: dict[str, tuple[tuple, str, float]] = {}
    ambiguous, unmatched = [], []
    for film in source:
        aliases = title_aliases(film.title)
        if film.year is None or not aliases:
            unmatched.append(film.id)
            continue
        hit = None
        for tier, years in (("exact", (film.year,)), ("year_off_by_one", (film.year - 1, film.year + 1))):
            keys = {k for a in aliases for y in years for k in by_alias_year.get((a, y), ())}
            if keys:
                hit = (tier, keys, 1.0)
                break
        if hit is None:
            hit = _fuzzy(aliases, film.year, by_year, fuzzy_threshold, fuzzy_margin)
        if hit is None:
            unmatched.append(film.id)
        elif len(hit[1]) > 1:
            ambiguous.append(film.id)
        else:
            found[film.id] = (next(iter(hit[1])), hit[0], hit[2])

    claims: dict[tuple, list[str]] = defaultdict(list)
    for source_id, (key, _, _) in found.items():
        claims[key].append(source_id)
    contested = sorted(s for ids in claims.values() if len(ids) > 1 for s in ids)
    matches = tuple(Match(s, tuple(sorted(films[key])), tier, round(score, 4))
                    for s, (key, tier, score) in found.items() if s not in set(contested))
    return Alignment(matches, tuple(ambiguous), tuple(contested), tuple(unmatched))


def _fuzzy(aliases: frozenset[str], year: int, by_year: dict, threshold: float,
           margin: float) -> tuple[str, set, float] | None:
    """The most similar target film within a year whose sequel numbers agree, if clearly the best."""
    best: dict[tuple, float] = {}
    for y in (year - 1, year, year + 1):
        for alias, key in by_year.get(y, ()):
            for mine in aliases:
                if title_numbers(mine) != title_numbers(alias):
                    continue
                score = difflib.SequenceMatcher(None, mine, alias).ratio()
                if score > best.get(key, 0.0):
                    best[key] = score
    ranked = sorted(best.items(), key=lambda kv: -kv[1])
    if not ranked or ranked[0][1] < threshold:
        return None
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < margin:
        return "fuzzy", {ranked[0][0], ranked[1][0]}, ranked[0][1]
    return "fuzzy", {ranked[0][0]}, ranked[0][1]
