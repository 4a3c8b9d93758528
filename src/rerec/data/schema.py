"""The data contracts of ``docs/data.md``, shared by every stage.

All ids are strings after loading, whatever the source wrote (RecBole tokens, ints in parquet), so
joins never depend on dtype. Tables:

- ``items``: ``item_id`` (str, unique), ``title`` (str), ``year`` (Int64, nullable),
  ``genres`` (list[str]).
- ``interactions``: ``user_id`` (str), ``item_id`` (str), ``rating`` (float, nullable),
  ``timestamp`` (Int64, nullable).
- ``item_attributes``: long table ``item_id``, ``relation``, ``entity`` (all str), item-centric:
  the item *has* ``relation`` ``entity`` ("42", "director", "m.0abc"). It holds the knowledge graph
  with relation names in one vocabulary (:func:`relation_name`: a user mapping, then
  :data:`KG_RELATIONS`, then a Freebase path's last part) plus the named attributes derived from the
  item table (``genre``, ``year``, ``decade``), so a query condition is one (relation, entity) pair.
  ``co_interaction`` is reserved for interest-query conditions and is never a row.
- ``users`` (optional): ``user_id`` (str, unique) plus demographics.
- ``queries`` (optional, generated when absent): see :data:`QUERY_COLUMNS`.

A query's ``conditions`` is a JSON string: a list of objects with keys ``relation`` and ``entity``
(a pair that must appear in ``item_attributes`` for the positive), ``text`` (how the request phrased
it) and, for multi-hop conditions, ``via`` (the item id the request names, e.g. "the director of
Fargo"). A misinformed query marks the condition whose stated link is wrong with
``"false_premise": {"item_id": ..., "text": ...}``; the true (relation, entity) is still stored.
``positives``, ``candidates`` and ``history`` are lists of item ids.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pandas as pd

ITEM_COLUMNS = ["item_id", "title", "year", "genres"]
INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
ATTRIBUTE_COLUMNS = ["item_id", "relation", "entity"]
QUERY_COLUMNS = [
    "query_id",
    "user_id",
    "type",
    "text",
    "conditions",
    "positives",
    "candidates",
    "split",
]
# Extra query columns written by the generator (optional on input).
QUERY_EXTRA_COLUMNS = ["history", "n_conditions"]

REQUIRED = {
    "items": ["item_id", "title"],
    "interactions": ["user_id", "item_id"],
    "item_attributes": ATTRIBUTE_COLUMNS,
    "users": ["user_id"],
    "queries": QUERY_COLUMNS,
}

QUERY_TYPES = ("explicit", "implicit", "misinformed", "interest")
SPLITS = ("train", "val", "test")

# Named attributes derived from the item table.
NAMED_RELATIONS = ("genre", "year", "decade")

# Freebase relation (either direction) -> item-centric relation name.
KG_RELATIONS = {
    "film.film.actor": "actor",
    "film.actor.film": "actor",
    "film.film.directed_by": "director",
    "film.director.film": "director",
    "film.film.written_by": "writer",
    "film.writer.film": "writer",
    "film.film.produced_by": "producer",
    "film.producer.film": "producer",
    "film.film.genre": "film_genre",
    "film.film_genre.films_in_this_genre": "film_genre",
    "film.film.language": "language",
    "film.film.country": "country",
    "film.film.cinematography": "cinematographer",
    "film.cinematographer.film": "cinematographer",
    "film.film.production_companies": "production_company",
    "film.production_company.films": "production_company",
    "film.film.rating": "content_rating",
    "film.content_rating.film": "content_rating",
    "film.film.subjects": "subject",
    "film.film_subject.films": "subject",
    "film.film.award_nomination": "award_nomination",
    "film.film.award_won": "award_won",
    "film.film.sequel": "sequel",
    "film.film.prequel": "prequel",
}

# People relations usable for multi-hop ("by the director of Fargo") conditions.
PERSON_RELATIONS = ("director", "actor", "writer", "producer")

# The relation of interest-query conditions; never a row of item_attributes.
CO_INTERACTION = "co_interaction"

# A Freebase-style relation path ("film.film.edited_by"): three or more dotted lower-case parts.
_FREEBASE_PATH = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+){2,}$")


def relation_name(raw: str, mapping: dict[str, str] | None = None) -> str:
    """The relation name rerec uses for a source relation ``raw``: one vocabulary for every input format.

    In order: the user's ``mapping`` (keyed by the source name, or by the name the next rules give),
    then :data:`KG_RELATIONS` (Freebase names in either direction), then the last component of any
    other Freebase-style path (``film.film.edited_by`` -> ``edited_by``); any other name is kept.
    """
    mapping = mapping or {}
    if raw in mapping:
        return mapping[raw]
    default = KG_RELATIONS.get(raw) or (raw.rsplit(".", 1)[-1] if _FREEBASE_PATH.match(raw) else raw)
    return mapping.get(default, default)


def parse_relation_map(pairs: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """``["directedBy=director", ...]`` -> ``{"directedBy": "director"}``; raises ConfigError on a bad pair."""
    from rerec.errors import ConfigError

    out: dict[str, str] = {}
    for pair in pairs or ():
        source, sep, target = str(pair).partition("=")
        source, target = source.strip(), target.strip()
        if not sep or not source or not target or "=" in target:
            raise ConfigError(f"relation_map entry {pair!r} is not FROM=TO. Fix: pass e.g. "
                              "--relation-map directedBy=director starring=actor.")
        if target == CO_INTERACTION:
            raise ConfigError(f"relation_map entry {pair!r} maps onto '{CO_INTERACTION}', which rerec reserves for "
                              "interest queries. Fix: map it onto another name.")
        if source in out and out[source] != target:
            raise ConfigError(f"relation_map maps '{source}' twice ({out[source]} and {target}). Fix: keep one.")
        out[source] = target
    return out


@dataclass
class Catalog:
    """A loaded, validated dataset in the contracts above."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    item_attributes: pd.DataFrame
    users: pd.DataFrame | None = None
    queries: pd.DataFrame | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def titles(self) -> dict[str, str]:
        return dict(zip(self.items["item_id"], self.items["title"], strict=True))


def decode_conditions(value: str | list) -> list[dict]:
    """``conditions`` as stored (JSON string) -> list of condition dicts."""
    if isinstance(value, str):
        return json.loads(value) if value else []
    return list(value)


def encode_conditions(conditions: list[dict]) -> str:
    return json.dumps(conditions, sort_keys=True, ensure_ascii=False)
