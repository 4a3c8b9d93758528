"""The data contracts of DESIGN.md ("Data"), shared by every stage.

All ids are strings after loading, whatever the source wrote (RecBole tokens, ints in parquet), so
joins never depend on dtype. Tables:

- ``items``: ``item_id`` (str, unique), ``title`` (str), ``year`` (Int64, nullable),
  ``genres`` (list[str]).
- ``interactions``: ``user_id`` (str), ``item_id`` (str), ``rating`` (float, nullable),
  ``timestamp`` (Int64, nullable).
- ``item_attributes``: long table ``item_id``, ``relation``, ``entity`` (all str), item-centric:
  the item *has* ``relation`` ``entity`` ("42", "director", "m.0abc"). It holds the knowledge graph
  with relation names normalised by :data:`KG_RELATIONS` plus the named attributes derived from the
  item table (``genre``, ``year``, ``decade``), so a query condition is one (relation, entity) pair.
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
