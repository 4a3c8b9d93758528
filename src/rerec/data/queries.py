"""RecBench+-style query generation (Huang et al., "Towards Next-Generation Recommender Systems: A
Benchmark for Personalized Recommendation Assistant with LLMs", arXiv 2503.09382), as used by ReRec.

Four query types (:data:`rerec.data.schema.QUERY_TYPES`), each with exactly one positive — an item the
user really liked (rating >= ``min_rating``, or any interaction where there are no ratings) that meets
every condition — and ``n_candidates - 1`` negatives that each fail at least one condition:

- **explicit**: 1-4 named conditions from ``item_attributes`` (``genre``, ``decade`` or ``year``).
- **implicit**: a multi-hop condition through an item X in the user's history: the positive shares a
  ``director`` / ``actor`` / ``writer`` / ``producer`` entity with X ("by the director of Fargo"),
  optionally with one named condition. Stored as the shared (relation, entity) with ``via`` = X.
  Because the request only names X, *every* item that shares any ``relation`` entity with X answers
  it; negatives therefore share none.
- **misinformed**: an implicit (or genre) condition stated with a wrong link — "by the director of
  Fargo, who also directed Toy Story" where Toy Story has none of Fargo's directors, or "another
  comedy like Heat" where Heat is no comedy. The true condition is stored with
  ``false_premise = {"item_id": Y, "text": ...}``, and Y is one of the negatives (the trap).
- **interest**: co-interaction. "People who loved X and Y, like me, also watched ...": the positive is
  in the co-interaction neighbourhood (top ``interest_neighbours`` items by Jaccard similarity of the
  sets of users who liked them, see :func:`co_interaction_neighbours`) of every named history item.
  Stored as ``{"relation": "co_interaction", "entity": X, "via": X}`` per named item. These pairs are
  *not* in ``item_attributes``: query-alignment scoring (QAS) must skip ``co_interaction`` conditions
  and, for a query without any attribute condition, fall back to the paper's form
  |R_p ∩ R_gt| / |R_gt| over the ground truth's relations.

Hard negatives (a ``hard_negative_share`` of the negatives, where enough exist) meet some conditions
but not all; for one-condition queries they are near misses (share another named attribute with the
positive, another person with X, or sit just outside X's co-interaction neighbourhood). No item the
user interacted with (liked or not) is ever a negative, the misinformed trap included. Negatives are
drawn near the positive's popularity (:func:`popularity_weights`), so "the most popular candidate" is
no shortcut. Candidates are shuffled; everything is a function of the seed.

Splits: each (user, liked item) pair has its split before any query is built
(:func:`rerec.data.splits.assign_pair_splits`); a query takes its positive's pair split, and a user's
held-out (val/test) pairs never appear in any of that user's histories or named (``via``) items.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rerec.data import phrasing
from rerec.data.schema import (
    CO_INTERACTION,
    NAMED_RELATIONS,
    PERSON_RELATIONS,
    QUERY_COLUMNS,
    QUERY_TYPES,
    Catalog,
    encode_conditions,
)
from rerec.data.splits import DEFAULT_FRACTIONS, assign_pair_splits
from rerec.errors import ConfigError, InputError

log = logging.getLogger(__name__)

__all__ = ["CO_INTERACTION", "Neighbourhoods", "QueryConfig", "co_interaction_neighbours", "generate_queries",
           "paraphrased_request", "popularity_weights"]

_TIME_RELATIONS = ("decade", "year")
_IGNORED_GENRES = frozenset({"unknown", "(no genres listed)", ""})


_CACHED_MASK_ITEMS = 256


@dataclass
class QueryConfig:
    """How many queries of each type to generate, and how they are built."""

    # --- volume
    n_explicit: int = field(default=2000, metadata={"help": "Explicit queries (1-4 named conditions)."})
    n_implicit: int = field(default=1500, metadata={"help": "Implicit (multi-hop through a history item) queries."})
    n_misinformed: int = field(default=1000, metadata={"help": "Misinformed (wrong link stated as fact) queries."})
    n_interest: int = field(default=1000, metadata={"help": "Interest-based (co-interaction) queries."})
    # --- candidates
    n_candidates: int = field(default=20, metadata={"help": "Candidates per query: 1 positive + N-1 negatives."})
    hard_negative_share: float = field(
        default=0.5, metadata={"help": "Share of negatives that meet some but not all conditions (near misses)."})
    popularity_bandwidth: float = field(
        default=0.2, metadata={"help": "Negatives are drawn with weight exp(-d^2/2b^2), d the gap in log(1 + "
                                       "interactions) to the positive, so popularity alone cannot pick the "
                                       "positive (0 = draw uniformly)."})
    # --- users
    min_rating: float = field(
        default=4.0, metadata={"help": "A positive and a named history item must be rated at least this."})
    history_size: int = field(default=10, metadata={"help": "Items of the user's history shown with a query."})
    # --- conditions
    max_conditions: int = field(default=4, metadata={"help": "Most named conditions in an explicit query (1-4)."})
    extra_named_share: float = field(
        default=0.4, metadata={"help": "Share of implicit/misinformed queries that add a named condition."})
    misinformed_named_share: float = field(
        default=0.3, metadata={"help": "Share of misinformed queries whose wrong link is a genre, not a person."})
    interest_neighbours: int = field(
        default=100, metadata={"help": "Co-interaction neighbourhood size (top items by Jaccard) for interest."})
    max_via_items: int = field(default=3, metadata={"help": "Most history items named by an interest query."})
    paraphrase: float = field(
        default=0.0, metadata={"help": "Share of queries whose request is reworded with the paraphrase templates "
                                       "(rerec.data.phrasing.reword_request, family 'train'; seeded per query). "
                                       "0 (default): every text as the base templates write it, byte for byte."})
    seed: int = field(default=0, metadata={"help": "Random seed: the same seed gives identical queries."})

    def __post_init__(self) -> None:
        counts = {k: v for k, v in asdict(self).items() if k.startswith("n_") and k != "n_candidates"}
        if any(v < 0 for v in counts.values()):
            raise ConfigError(f"Query counts must be >= 0, got {counts}. Fix: pass non-negative --n-* values.")
        if self.n_candidates < 2:
            raise ConfigError(f"n_candidates is {self.n_candidates}. Fix: use at least 2 (1 positive + 1 negative).")
        for name in ("hard_negative_share", "extra_named_share", "misinformed_named_share", "paraphrase"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} is {getattr(self, name)}. Fix: use a value between 0 and 1.")
        if not 1 <= self.max_conditions <= 4:
            raise ConfigError(f"max_conditions is {self.max_conditions}. Fix: use 1 to 4.")
        if self.popularity_bandwidth < 0:
            raise ConfigError(f"popularity_bandwidth is {self.popularity_bandwidth}. Fix: use 0 (off) or a "
                              "positive width in log-interactions, e.g. 0.5.")
        if self.history_size < 1 or self.max_via_items < 1 or self.interest_neighbours < 1:
            raise ConfigError("history_size, max_via_items and interest_neighbours must be >= 1. Fix: raise them.")


class Neighbourhoods:
    """Each item's co-interaction neighbours, ranked: the ``top`` items most similar to it by Jaccard
    similarity of their sets of liking users, most similar first, ties broken by item order; an item is
    never its own neighbour, and items that share no liking user are never neighbours.

    Stored sparse (CSR over item positions in ``catalog.items`` order): ``n_items * top`` positions at
    most, never an items x items matrix. ``limit(m)`` views the first ``m`` of each ranking (the top-m
    neighbourhood is a prefix of the top-``top`` one).
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, m: int | None = None) -> None:
        self.indptr, self.indices = indptr, indices
        self.n = len(indptr) - 1
        self.m = m
        self._sets: dict[int, frozenset[int]] = {}

    def limit(self, m: int) -> Neighbourhoods:
        """The first ``m`` neighbours of each item."""
        return Neighbourhoods(self.indptr, self.indices, m if self.m is None else min(m, self.m))

    def row(self, x: int) -> np.ndarray:
        """Item x's neighbours (positions), most similar first."""
        start, end = self.indptr[x], self.indptr[x + 1]
        if self.m is not None:
            end = min(end, start + self.m)
        return self.indices[start:end]

    def __getitem__(self, key: tuple[int, int]) -> bool:
        """``[x, i]``: whether item i is a neighbour of item x."""
        x, i = key
        x = int(x)
        if x not in self._sets:
            self._sets[x] = frozenset(self.row(x).tolist())
        return int(i) in self._sets[x]

    def mask(self, items: int | list[int]) -> np.ndarray:
        """Bool over all items: a neighbour of (any of) ``items``."""
        out = np.zeros(self.n, dtype=bool)
        for x in np.atleast_1d(items):
            out[self.row(int(x))] = True
        return out

    def to_dense(self) -> np.ndarray:
        """The (n_items, n_items) boolean matrix ``[x, i]`` (for small catalogs and tests)."""
        out = np.zeros((self.n, self.n), dtype=bool)
        for x in range(self.n):
            out[x, self.row(x)] = True
        return out


def co_interaction_neighbours(catalog: Catalog, top_m: int, min_rating: float, wide: int = 1) -> Neighbourhoods:
    """Each item's ``top_m * wide`` co-interaction neighbours (:class:`Neighbourhoods`; ``[x, i]`` is True
    when item i is among the items most similar to x by Jaccard similarity of their sets of liking users,
    rows and columns in ``catalog.items`` order). Memory and time grow with the liked interactions
    (the sum over users of their liked items squared), not with items squared."""
    return _co_interaction_ranking(catalog, min_rating, top_m * wide)


def popularity_weights(popularity: np.ndarray, pool: np.ndarray, positive: int, bandwidth: float) -> np.ndarray | None:
    """Sampling weights over ``pool`` (item positions) peaked at the positive's popularity:
    ``exp(-d^2 / 2b^2)`` with ``d = |log1p(pop[i]) - log1p(pop[positive])|``, floored so every item stays
    possible, normalised to sum to 1. ``None`` (uniform) when ``bandwidth`` is 0.

    Without it, negatives drawn uniformly from a long-tailed catalog are far less popular than the
    liked positive, and "pick the most popular candidate" answers a third of the queries.
    """
    if bandwidth <= 0 or len(pool) == 0:
        return None
    logpop = np.log1p(popularity.astype(np.float64))
    gap = logpop[pool] - logpop[positive]
    weights = np.exp(-0.5 * (gap / bandwidth) ** 2) + 1e-9
    return weights / weights.sum()


# Work per chunk of items: entries of the dense (chunk, n_items) block, and expanded co-likes.
_CHUNK_CELLS = 1 << 24
_CHUNK_PAIRS = 1 << 24


def _co_interaction_ranking(catalog: Catalog, min_rating: float, top: int) -> Neighbourhoods:
    """The ``top`` co-interaction neighbours of every item (:class:`Neighbourhoods`).

    Sparse and chunked: for a chunk of items x, every user who liked x contributes each of their liked
    items i to the count co[x, i] (a ragged gather of user rows, then one ``bincount`` into a
    (chunk, n_items) block), so the work is the sum over users of their liked items squared and the
    memory one block. Jaccard ``co / (support_x + support_i - co)`` is computed in float32 exactly as
    the dense product did, and each row's ranking is by (Jaccard descending, item position ascending)
    through one int64 key per cell: the float32 bit pattern (order-preserving for values >= 0) above the
    reversed position, so an ``argpartition`` on it has no ties to break.
    """
    item_ids = catalog.items["item_id"].astype(str).to_numpy()
    n = len(item_ids)
    position = pd.Index(item_ids)
    liked = _liked_interactions(catalog.interactions, min_rating)
    users = pd.Index(np.sort(liked["user_id"].astype(str).unique()))
    rows = users.get_indexer(liked["user_id"].astype(str))
    cols = position.get_indexer(liked["item_id"].astype(str))
    keep = cols >= 0
    pairs = np.unique(rows[keep].astype(np.int64) * max(n, 1) + cols[keep])  # one per (user, item), user-major
    pair_user, pair_item = pairs // max(n, 1), pairs % max(n, 1)
    user_ptr = np.searchsorted(pair_user, np.arange(len(users) + 1))  # user -> their liked items (sorted)
    by_item = np.argsort(pair_item, kind="stable")
    item_users = pair_user[by_item]
    item_ptr = np.searchsorted(pair_item[by_item], np.arange(n + 1))  # item -> users who liked it
    support = np.diff(item_ptr).astype(np.float32)
    user_len = np.diff(user_ptr)
    cost = np.bincount(pair_item, weights=user_len[pair_user], minlength=n)  # expanded co-likes per item
    k = min(top, n - 1)
    shift = max(int(n).bit_length(), 1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    chunks_out: list[np.ndarray] = []
    start = 0
    while start < n and k > 0:
        # as many items as fit both budgets (at least one)
        width = max(1, min(n - start, _CHUNK_CELLS // max(n, 1)))
        spent = np.cumsum(cost[start:start + width])
        width = max(1, int(np.searchsorted(spent, _CHUNK_PAIRS, side="right")))
        stop = start + width
        lo, hi = item_ptr[start], item_ptr[stop]
        chunk_users = item_users[lo:hi]
        chunk_rows = np.repeat(np.arange(width), np.diff(item_ptr[start:stop + 1]))
        lengths = user_len[chunk_users]
        offsets = np.repeat(user_ptr[chunk_users] - (np.cumsum(lengths) - lengths), lengths)
        co_items = pair_item[offsets + np.arange(int(lengths.sum()))]
        co = np.bincount(np.repeat(chunk_rows, lengths) * n + co_items, minlength=width * n)
        co = co.reshape(width, n).astype(np.float32)
        union = support[start:stop, None] + support[None, :] - co
        jaccard = np.divide(co, union, out=np.zeros_like(co), where=union > 0)
        del co, union
        jaccard[np.arange(width), np.arange(start, stop)] = -1.0
        key = (jaccard.view(np.int32).astype(np.int64) << shift) | (n - 1 - np.arange(n, dtype=np.int64))
        top_k = np.argpartition(key, n - k, axis=1)[:, n - k:]  # k < n: the k largest keys, unordered
        top_key = np.take_along_axis(key, top_k, axis=1)
        order = np.argsort(-top_key, axis=1, kind="stable")
        ranked = np.take_along_axis(top_k, order, axis=1)
        positive = np.take_along_axis(jaccard, ranked, axis=1) > 0  # co-liked: a prefix of each ranking
        counts = positive.sum(axis=1)
        indptr[start + 1:stop + 1] = counts
        chunks_out.append(ranked[positive])
        start = stop
    indices = np.concatenate(chunks_out) if chunks_out else np.empty(0, dtype=np.int64)
    return Neighbourhoods(np.cumsum(indptr), indices)


def _liked_interactions(interactions: pd.DataFrame, min_rating: float) -> pd.DataFrame:
    if "rating" in interactions and interactions["rating"].notna().any():
        return interactions[interactions["rating"].fillna(-np.inf) >= min_rating]
    return interactions


class _Positions(frozenset):
    """A set of item positions read like a boolean vector over all items: ``positions[p]``."""

    def __getitem__(self, p: int) -> bool:
        return p in self


@dataclass
class _User:
    """One user, in memory that grows with their interactions (no vector over all items is kept: a
    catalog of 162k users and 62k items would need 20 GB of them)."""

    user_id: str
    items: np.ndarray  # item positions, by timestamp
    liked: np.ndarray  # positions rated >= min_rating, by timestamp
    liked_split: np.ndarray  # the split of a query answered by each liked item (aligned with liked)
    n_items: int
    _shown: _Positions | None = None

    @property
    def mask(self) -> np.ndarray:
        """Bool over all items: interacted (built when asked for)."""
        out = np.zeros(self.n_items, dtype=bool)
        out[self.items] = True
        return out

    @property
    def split(self) -> dict[int, str]:
        """Liked position -> the split of a query answered by it."""
        return dict(zip(self.liked.tolist(), self.liked_split.tolist(), strict=True))

    @property
    def shown(self) -> _Positions:
        """Positions interacted and not held out, so they may appear in any prompt (``user.shown[p]``);
        built on first use."""
        if self._shown is None:
            heldout = set(self.liked[self.liked_split != "train"].tolist())
            self._shown = _Positions(p for p in self.items.tolist() if p not in heldout)
        return self._shown


class _Index:
    """The catalog indexed once: attribute sets per item, item masks per (relation, entity), users."""

    def __init__(self, catalog: Catalog, config: QueryConfig,
                 fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> None:
        self.config = config
        self.fractions = fractions
        items = catalog.items
        self.item_ids = items["item_id"].astype(str).to_numpy()
        self.titles = items["title"].astype(str).to_numpy()
        self.n = len(self.item_ids)
        # one code per film: a catalog may list one film under two ids (ML-100k lists 18 such pairs)
        years = items["year"].astype("string").fillna("") if "year" in items else pd.Series([""] * self.n)
        self.film = pd.factorize(pd.Series(self.titles).str.lower().str.strip() + "\x00" + years.to_numpy())[0]
        self.position = pd.Index(self.item_ids)
        attrs = catalog.item_attributes
        pos = self.position.get_indexer(attrs["item_id"].astype(str))
        attrs = pd.DataFrame({"pos": pos, "relation": attrs["relation"].astype(str),
                              "entity": attrs["entity"].astype(str)})[pos >= 0].drop_duplicates()
        attrs = attrs.sort_values(["relation", "entity", "pos"], kind="stable")
        # (relation, entity) -> sorted item positions; item -> relation -> sorted entities.
        # numpy splits instead of pandas groupby iteration: there are tens of thousands of groups.
        relations, entities = attrs["relation"].tolist(), attrs["entity"].tolist()
        changed = (attrs["relation"].to_numpy()[1:] != attrs["relation"].to_numpy()[:-1]) | (
            attrs["entity"].to_numpy()[1:] != attrs["entity"].to_numpy()[:-1])
        bounds = np.flatnonzero(changed) + 1
        starts = [0, *bounds.tolist()]
        self.pair_items: dict[tuple[str, str], np.ndarray] = {
            (relations[start], entities[start]): chunk
            for start, chunk in zip(starts, np.split(attrs["pos"].to_numpy(), bounds), strict=True)
        } if len(attrs) else {}
        self.item_attrs: list[dict[str, list[str]]] = [{} for _ in range(self.n)]
        by_item = attrs.sort_values(["pos", "relation", "entity"], kind="stable")
        for p, rel, ent in zip(by_item["pos"].tolist(), by_item["relation"].tolist(), by_item["entity"].tolist(),
                               strict=True):
            self.item_attrs[p].setdefault(rel, []).append(ent)
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self.popularity = np.bincount(
            self.position.get_indexer(catalog.interactions["item_id"].astype(str)).clip(0), minlength=self.n)
        self.users = self._index_users(catalog.interactions)
        self._neighbours: tuple[Neighbourhoods, Neighbourhoods] | None = None
        self._catalog = catalog

    def _index_users(self, interactions: pd.DataFrame) -> list[_User]:
        frame = pd.DataFrame({"user_id": interactions["user_id"].astype(str),
                              "pos": self.position.get_indexer(interactions["item_id"].astype(str))})
        has_rating = "rating" in interactions and interactions["rating"].notna().any()
        frame["liked"] = (interactions["rating"].fillna(-np.inf).to_numpy() >= self.config.min_rating
                          if has_rating else True)
        frame["ts"] = (interactions["timestamp"].fillna(0).astype("int64").to_numpy()
                       if "timestamp" in interactions else 0)
        frame = frame[frame["pos"] >= 0].sort_values(["user_id", "ts", "pos"], kind="stable")
        if frame.empty:
            return []
        frame = frame.drop_duplicates(["user_id", "pos"], keep="last")  # loaded catalogs hold none
        user_codes, user_ids = pd.factorize(frame["user_id"])  # sorted frame: codes are ascending
        bounds = np.flatnonzero(np.diff(user_codes)) + 1
        positions, liked = frame["pos"].to_numpy(), frame["liked"].to_numpy(dtype=bool)
        # every (user, liked item) pair is given the split of any query it answers, before any query is
        # built, so no history or request can show a held-out answer (see rerec.data.splits)
        pair_split = np.asarray(assign_pair_splits(int(liked.sum()), self.fractions, self.config.seed), dtype=object)
        split_bounds = np.cumsum(liked)[bounds - 1]  # liked pairs before each user's first row
        users = []
        for user_id, items, likes, splits in zip(user_ids, np.split(positions, bounds), np.split(liked, bounds),
                                                 np.split(pair_split, split_bounds), strict=True):
            users.append(_User(str(user_id), items, items[likes], splits, self.n))
        return users

    def mask(self, relation: str, entity: str) -> np.ndarray:
        """Bool over all items: has ``(relation, entity)``. Cached for entities of many items only, so
        the cache stays within (attribute rows / _CACHED_MASK_ITEMS) vectors on any catalog. Callers
        must not modify it."""
        key = (relation, entity)
        if key in self._masks:
            return self._masks[key]
        items = self.pair_items.get(key, np.empty(0, dtype=int))
        m = np.zeros(self.n, dtype=bool)
        m[items] = True
        if len(items) >= _CACHED_MASK_ITEMS:
            self._masks[key] = m
        return m

    def union(self, relation: str, entities: list[str]) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for entity in entities:
            out |= self.mask(relation, entity)
        return out

    def neighbours(self) -> tuple[Neighbourhoods, Neighbourhoods]:
        """(top ``interest_neighbours``, top 3x that for near misses), computed once."""
        if self._neighbours is None:
            c = self.config
            wide = _co_interaction_ranking(self._catalog, c.min_rating, 3 * c.interest_neighbours)
            self._neighbours = (wide.limit(c.interest_neighbours), wide)
        return self._neighbours

    def graph_relations(self) -> set[str]:
        """Relations of a knowledge graph: every relation except those derived from the item table."""
        return {r for r, _ in self.pair_items} - set(NAMED_RELATIONS)

    def has_relation(self, relation: str) -> np.ndarray:
        key = (relation, "*")
        if key not in self._masks:
            self._masks[key] = np.array([relation in a for a in self.item_attrs])
        return self._masks[key]

    def genres(self, p: int) -> list[str]:
        return [g for g in self.item_attrs[p].get("genre", []) if g not in _IGNORED_GENRES]


class _Generator:
    def __init__(self, index: _Index, config: QueryConfig) -> None:
        self.ix, self.c = index, config
        self.users_with_likes = [u for u in index.users if len(u.liked) >= 1 and len(u.items) >= 2]
        self.n_neg = config.n_candidates - 1

    # --- shared pieces -------------------------------------------------------------------------
    def history(self, user: _User, positive: int, must: list[int], rng: np.random.Generator) -> list[int]:
        """Up to ``history_size`` of the user's shown items (named items first, then liked, then any),
        never the positive nor a held-out item, in the user's timestamp order."""
        size = max(self.c.history_size, len(must))
        chosen = list(dict.fromkeys(must))
        for pool in (user.liked, user.items):
            rest = [int(p) for p in pool if p != positive and p not in chosen and user.shown[p]]
            take = min(size - len(chosen), len(rest))
            if take > 0:
                chosen += [rest[i] for i in sorted(rng.choice(len(rest), size=take, replace=False))]
        order = {int(p): i for i, p in enumerate(user.items)}
        return sorted(chosen, key=lambda p: order.get(p, -1))

    def finish(self, rng: np.random.Generator, user: _User, qtype: str, text: str, positive: int,
               history: list[int], conditions: list[dict], satisfied: list[np.ndarray],
               near_miss: np.ndarray, trap: int | None = None) -> dict | None:
        """Pick negatives (each fails >= 1 condition; a share of them hard) and assemble the row."""
        k = len(satisfied)
        met = np.sum(satisfied, axis=0)
        if met[positive] != k:  # pragma: no cover - a generator bug, not a user error
            raise AssertionError("positive does not meet its own conditions")
        film = self.ix.film
        shown_films = film[history] if len(history) else np.zeros(0, dtype=film.dtype)
        if film[positive] in set(shown_films.tolist()):  # "by the writer of Chasing Amy": Chasing Amy again
            return None
        negative = (met < k) & ~user.mask  # never an item the user interacted with (liked or not)
        # nor the positive's film, nor a film of the history, under another id
        negative &= (film != film[positive]) & ~np.isin(film, shown_films)
        negative[positive] = False
        # hard: meets some conditions but not all; with one condition, a near miss
        hard = negative & (near_miss if k == 1 else met > 0)
        easy = negative & ~hard
        forced = [trap] if trap is not None and negative[trap] else []
        hard[forced] = easy[forced] = False
        if int(negative.sum()) < self.n_neg:
            return None
        want_hard = max(int(round(self.c.hard_negative_share * self.n_neg)) - len(forced), 0)
        hard_pool, easy_pool = np.flatnonzero(hard), np.flatnonzero(easy)
        n_hard = min(want_hard, len(hard_pool))
        n_easy = min(self.n_neg - len(forced) - n_hard, len(easy_pool))
        n_hard = self.n_neg - len(forced) - n_easy  # top up from the hard pool when easy ones run out
        negatives = (forced + self.draw(rng, hard_pool, n_hard, positive)
                     + self.draw(rng, easy_pool, n_easy, positive))
        candidates = [positive] + [int(x) for x in negatives]
        candidates = [candidates[i] for i in rng.permutation(len(candidates))]
        ids = self.ix.item_ids
        return {
            "user_id": user.user_id,
            "type": qtype,
            "text": text,
            "conditions": encode_conditions(conditions),
            "positives": [str(ids[positive])],
            "candidates": [str(ids[i]) for i in candidates],
            "history": [str(ids[i]) for i in history],
            "n_conditions": k,
            "split": user.split[positive],
        }

    def draw(self, rng: np.random.Generator, pool: np.ndarray, size: int, positive: int) -> list[int]:
        """``size`` items of ``pool`` without replacement, weighted towards the positive's popularity."""
        if size <= 0:
            return []
        return [int(x) for x in rng.choice(pool, size=size, replace=False,
                                           p=popularity_weights(self.ix.popularity, pool, positive,
                                                                self.c.popularity_bandwidth))]

    def named_condition(self, p: int, relation: str, rng: np.random.Generator) -> tuple[dict, np.ndarray] | None:
        """One of p's named attributes ('genre' or a time relation) as a stored condition."""
        if relation == "genre":
            genres = self.ix.genres(p)
            if not genres:
                return None
            entity = genres[int(rng.integers(len(genres)))]
        else:
            values = self.ix.item_attrs[p].get(relation, [])
            if not values:
                return None
            entity = values[0]
        text = phrasing.named_extra_fragment(relation, entity, rng)
        return {"relation": relation, "entity": entity, "text": text}, self.ix.mask(relation, entity)

    def pick_user(self, rng: np.random.Generator) -> _User:
        return self.users_with_likes[int(rng.integers(len(self.users_with_likes)))]

    # --- explicit ------------------------------------------------------------------------------
    def explicit(self, rng: np.random.Generator) -> dict | None:
        user = self.pick_user(rng)
        k = int(rng.integers(1, self.c.max_conditions + 1))
        liked = user.liked[rng.permutation(len(user.liked))]
        sizes = np.array([len(self.ix.genres(p)) + any(r in self.ix.item_attrs[p] for r in _TIME_RELATIONS)
                          for p in liked])
        if len(sizes) == 0:
            return None
        if not (sizes >= k).any():
            k = int(sizes.max())
        if k == 0:
            return None
        p = int(liked[int(np.flatnonzero(sizes >= k)[0])])
        genres = self.ix.genres(p)
        times = [r for r in _TIME_RELATIONS if r in self.ix.item_attrs[p]]
        use_time = bool(times) and (k > len(genres) or rng.random() < 0.6)
        chosen_genres = sorted(rng.choice(genres, size=k - use_time, replace=False).tolist()) if k - use_time else []
        conditions, satisfied = [], []
        words = []
        for g in chosen_genres:
            words.append(phrasing.genre_word(g))
            conditions.append({"relation": "genre", "entity": g, "text": words[-1]})
            satisfied.append(self.ix.mask("genre", g))
        time_text = None
        if use_time:
            relation = "decade" if "decade" in times and (rng.random() < 0.6 or "year" not in times) else times[-1]
            entity = self.ix.item_attrs[p][relation][0]
            time_text = phrasing.time_fragment(relation, entity, rng)
            conditions.append({"relation": relation, "entity": entity, "text": time_text})
            satisfied.append(self.ix.mask(relation, entity))
        # one-condition near misses share another named attribute with the positive
        stated = {(c["relation"], c["entity"]) for c in conditions}
        near = np.zeros(self.ix.n, dtype=bool)
        for rel in ("genre", *_TIME_RELATIONS):
            for ent in self.ix.item_attrs[p].get(rel, []):
                if (rel, ent) not in stated and ent not in _IGNORED_GENRES:
                    near |= self.ix.mask(rel, ent)
        history = self.history(user, p, [], rng)
        text = phrasing.explicit_text(words, time_text, rng)
        return self.finish(rng, user, "explicit", text, p, history, conditions, satisfied, near)

    # --- implicit and misinformed ----------------------------------------------------------------
    def hop(self, user: _User, rng: np.random.Generator) -> tuple[int, int, str, str] | None:
        """(positive p, via item x, relation, shared entity): p liked, x in the user's history."""
        options: list[tuple[int, int, str, str]] = []
        for p in user.liked[rng.permutation(len(user.liked))][:30]:
            p = int(p)
            for rel in PERSON_RELATIONS:
                for ent in self.ix.item_attrs[p].get(rel, []):
                    for x in self.ix.pair_items[(rel, ent)]:
                        if x != p and user.shown[x]:
                            options.append((p, int(x), rel, ent))
            if len(options) >= 8:
                break
        if not options:
            return None
        relations = sorted({o[2] for o in options})
        relation = relations[int(rng.integers(len(relations)))]  # balance relations (actors dominate)
        options = [o for o in options if o[2] == relation]
        return options[int(rng.integers(len(options)))]

    def hop_condition(self, p: int, x: int, rel: str, ent: str) -> tuple[np.ndarray, np.ndarray]:
        """(items that answer 'the <rel> of x' = share any rel-entity with x, near misses = share
        another person with x)."""
        satisfied = self.ix.union(rel, self.ix.item_attrs[x][rel])
        near = np.zeros(self.ix.n, dtype=bool)
        for other in PERSON_RELATIONS:
            if other != rel:
                near |= self.ix.union(other, self.ix.item_attrs[x].get(other, []))
        return satisfied, near

    def extra_named(self, p: int, rng: np.random.Generator) -> tuple[dict, np.ndarray] | None:
        if rng.random() >= self.c.extra_named_share:
            return None
        return self.named_condition(p, "genre" if rng.random() < 0.6 else "decade", rng)

    def implicit(self, rng: np.random.Generator) -> dict | None:
        user = self.pick_user(rng)
        found = self.hop(user, rng)
        if found is None:
            return None
        p, x, rel, ent = found
        satisfied, near = self.hop_condition(p, x, rel, ent)
        hop_text = phrasing.hop_fragment(rel, self.ix.titles[x], rng)
        conditions = [{"relation": rel, "entity": ent, "text": hop_text, "via": str(self.ix.item_ids[x])}]
        masks = [satisfied]
        extra = self.extra_named(p, rng)
        if extra is not None:
            conditions.append(extra[0])
            masks.append(extra[1])
        text = phrasing.implicit_text([c["text"] for c in conditions], self.ix.titles[x], rng)
        history = self.history(user, p, [x], rng)
        return self.finish(rng, user, "implicit", text, p, history, conditions, masks, near)

    def premise_item(self, wrong: np.ndarray, user: _User, rng: np.random.Generator) -> int | None:
        """A well-known item (top quarter by interactions) from ``wrong`` that the user never interacted
        with — the false premise, which becomes a negative (the trap)."""
        pool = wrong & ~user.mask
        known = pool & (self.ix.popularity >= np.quantile(self.ix.popularity, 0.75))
        choices = np.flatnonzero(known if known.any() else pool)
        return int(rng.choice(choices)) if len(choices) else None

    def misinformed(self, rng: np.random.Generator) -> dict | None:
        if rng.random() < self.c.misinformed_named_share:
            return self.misinformed_genre(rng)
        user = self.pick_user(rng)
        found = self.hop(user, rng)
        if found is None:
            return None
        p, x, rel, ent = found
        satisfied, near = self.hop_condition(p, x, rel, ent)
        has_relation = self.ix.has_relation(rel)
        history = self.history(user, p, [x], rng)
        extra = self.extra_named(p, rng)
        # the trap meets the named condition where it can, so only the false link rules it out
        wrong = has_relation & ~satisfied
        y = None
        if extra is not None:
            y = self.premise_item(wrong & extra[1], user, rng)
        if y is None:
            y = self.premise_item(wrong, user, rng)
        if y is None:
            return None
        hop_text = phrasing.hop_fragment(rel, self.ix.titles[x], rng)
        premise = phrasing.premise_fragment(rel, self.ix.titles[y], rng)
        conditions = [{"relation": rel, "entity": ent, "text": hop_text, "via": str(self.ix.item_ids[x]),
                       "false_premise": {"item_id": str(self.ix.item_ids[y]), "text": premise}}]
        masks = [satisfied]
        if extra is not None:
            conditions.append(extra[0])
            masks.append(extra[1])
        text = phrasing.misinformed_hop_text(hop_text, premise, [c["text"] for c in conditions[1:]], rng)
        return self.finish(rng, user, "misinformed", text, p, history, conditions, masks, near, trap=y)

    def misinformed_genre(self, rng: np.random.Generator) -> dict | None:
        user = self.pick_user(rng)
        p = int(user.liked[int(rng.integers(len(user.liked)))])
        genres = self.ix.genres(p)
        if not genres:
            return None
        genre = genres[int(rng.integers(len(genres)))]
        satisfied = self.ix.mask("genre", genre)
        history = self.history(user, p, [], rng)
        y = self.premise_item(~satisfied, user, rng)
        if y is None:
            return None
        text, premise = phrasing.misinformed_named_text(genre, self.ix.titles[y], rng)
        conditions = [{"relation": "genre", "entity": genre, "text": phrasing.genre_word(genre),
                       "false_premise": {"item_id": str(self.ix.item_ids[y]), "text": premise}}]
        near = np.zeros(self.ix.n, dtype=bool)
        for rel in _TIME_RELATIONS:
            near |= self.ix.union(rel, self.ix.item_attrs[p].get(rel, []))
        return self.finish(rng, user, "misinformed", text, p, history, conditions, [satisfied], near, trap=y)

    # --- interest ------------------------------------------------------------------------------
    def interest(self, rng: np.random.Generator) -> dict | None:
        neighbours, wide = self.ix.neighbours()
        user = self.pick_user(rng)
        want = int(rng.integers(1, self.c.max_via_items + 1))
        for p in user.liked[rng.permutation(len(user.liked))][:30]:
            p = int(p)
            vias = [int(h) for h in user.liked if h != p and user.shown[h] and neighbours[h, p]]
            if len(vias) >= want:
                break
        else:
            return None
        chosen = sorted(rng.choice(vias, size=want, replace=False).tolist())
        titles = [self.ix.titles[x] for x in chosen]
        conditions = [{"relation": CO_INTERACTION, "entity": str(self.ix.item_ids[x]),
                       "text": phrasing.interest_fragment(self.ix.titles[x], rng), "via": str(self.ix.item_ids[x])}
                      for x in chosen]
        masks = [neighbours.mask(x) for x in chosen]
        near = wide.mask(chosen)
        history = self.history(user, p, chosen, rng)
        text = phrasing.interest_text(titles, rng)
        return self.finish(rng, user, "interest", text, p, history, conditions, masks, near)


def generate_queries(catalog: Catalog, config: QueryConfig | None = None, *,
                     fractions: tuple[float, float, float] | None = None, progress: bool = True) -> pd.DataFrame:
    """Generate the query table: :data:`QUERY_COLUMNS` plus ``history`` and ``n_conditions``.

    ``split`` is the split of the query's (user, positive) pair (:func:`rerec.data.splits.assign_pair_splits`
    with ``fractions``, default ``config.fractions`` or 0.8/0.1/0.1). ``query_id`` is ``"<type>-<n>"`` in
    generation order. Deterministic for ``config.seed``: each type draws from its own RNG stream, so
    changing one type's count does not change the others.

    Raises :class:`InputError` when a type is asked for (``n_<type> > 0``) and the catalog cannot give
    a single query of it, saying why and which flag fixes it; fewer than asked is a logged warning. A
    catalog without any knowledge graph (genres and years only, like ml-latest-small) cannot support
    implicit and misinformed queries by construction: those two are skipped with a warning instead, and
    listed in the returned frame's ``attrs["skipped_types"]`` with the reason.
    """
    config = config or QueryConfig()
    fractions = tuple(fractions or getattr(config, "fractions", DEFAULT_FRACTIONS))
    index = _Index(catalog, config, fractions)
    generator = _Generator(index, config)
    if not generator.users_with_likes:
        raise InputError("no user has both a liked item and a second interaction, so no query can be built",
                         file="interactions", fix="provide interactions with ratings >= min_rating "
                         "(or lower --min-rating)")
    targets = {"explicit": config.n_explicit, "implicit": config.n_implicit,
               "misinformed": config.n_misinformed, "interest": config.n_interest}
    skipped = {}
    if not index.graph_relations():
        for qtype in ("implicit", "misinformed"):
            if targets[qtype]:
                skipped[qtype] = (f"the catalog has no knowledge graph (item_attributes holds only "
                                  f"{', '.join(sorted({r for r, _ in index.pair_items})) or 'nothing'}), and "
                                  f"{qtype} queries hop through a person relation such as director or actor")
                log.warning("%s queries skipped: %s", qtype, skipped[qtype])
                targets[qtype] = 0
    rows: list[dict] = []
    bar = tqdm(total=sum(targets.values()), desc="queries", unit="q", disable=not progress)
    for type_index, qtype in enumerate(QUERY_TYPES):
        rng = np.random.default_rng([config.seed, type_index])
        make = getattr(generator, qtype)
        seen: set[tuple] = set()
        made, attempts = 0, 0
        while made < targets[qtype] and attempts < 20 * targets[qtype] + 100:
            attempts += 1
            row = make(rng)
            if row is None:
                continue
            key = (row["user_id"], row["positives"][0], row["conditions"])
            if key in seen:
                continue
            seen.add(key)
            row["query_id"] = f"{qtype}-{made:05d}"
            if config.paraphrase > 0:  # its own RNG: every other draw, and so every query, stays as it was
                _paraphrase(row, index, config, type_index, made)
            rows.append(row)
            made += 1
            bar.update(1)
        if targets[qtype] and not made:
            bar.close()
            reason, fix = _why_none(qtype, index)
            raise InputError(f"no {qtype} query could be built from this catalog ({reason}), although "
                             f"--n-{qtype} {targets[qtype]} asks for them", file=catalog.source or None,
                             fix=f"{fix}, or ask for none: --n-{qtype} 0 to prepare-data, or "
                                 f"--config-overrides '{{\"prepare\": {{\"n_{qtype}\": 0}}}}' to rerec run "
                                 "(the pipeline's config_overrides parameter on Kubeflow)")
        if made < targets[qtype]:
            log.warning("generated %d of %d %s queries: the catalog has too few qualifying users/items",
                        made, targets[qtype], qtype)
    bar.close()
    columns = QUERY_COLUMNS + ["history", "n_conditions"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["n_conditions"] = frame["n_conditions"].astype("int64")
    frame.attrs["skipped_types"] = skipped
    return frame


def _paraphrase(row: dict, index: _Index, config: QueryConfig, type_index: int, n: int) -> None:
    """Reword ``row["text"]`` with the training paraphrases for a ``config.paraphrase`` share of queries
    (:func:`paraphrased_request`)."""
    if not hasattr(index, "titles_by_id"):
        index.titles_by_id = dict(zip((str(i) for i in index.item_ids), index.titles, strict=True))
    text = paraphrased_request(row, index.titles_by_id, config.seed, config.paraphrase, type_index, n)
    if text:
        row["text"] = text


def paraphrased_request(query: dict, titles, seed: int, share: float, type_index: int | None = None,
                        n: int | None = None) -> str | None:
    """The request ``prepare-data --paraphrase share`` (data seed ``seed``) writes for ``query`` (its
    ``type``, ``conditions`` and ``query_id``) in the training paraphrases, or None where it keeps the
    base template's text: the query is not in the drawn share, or its conditions are not a shape the
    paraphrases say. The draw has an RNG of its own, seeded by (seed, type, query number), so the same query
    gets the same words here and in ``prepare-data``. ``type_index`` and ``n`` default to those of a generated
    query id ("explicit-00011": type 0, number 11); another id takes its number from a CRC-32 of the id.
    ``titles``: item id -> title (a mapping or a callable)."""
    import zlib

    from rerec.data.schema import decode_conditions

    qtype = str(query["type"])
    if type_index is None:
        type_index = QUERY_TYPES.index(qtype) if qtype in QUERY_TYPES else len(QUERY_TYPES)
    if n is None:
        query_id = str(query.get("query_id", ""))
        prefix, _, number = query_id.rpartition("-")
        n = int(number) if prefix == qtype and number.isdigit() else zlib.crc32(query_id.encode())
    rng = np.random.default_rng([seed, 0x9A4A, type_index, n])
    if rng.random() >= share:
        return None
    return phrasing.reword_request(qtype, decode_conditions(query["conditions"]), titles, "train", rng)


def _why_none(qtype: str, index: _Index) -> tuple[str, str]:
    """(why no query of ``qtype`` could be built, what to do), from what the catalog lacks."""
    relations = sorted({r for r, _ in index.pair_items})
    found = f"its relations: {', '.join(relations[:15]) or 'none'}{', ...' if len(relations) > 15 else ''}"
    people = [r for r in PERSON_RELATIONS if r in relations]
    map_fix = ("name your person relations as rerec does, e.g. --relation-map directedBy=director "
               "starring=actor (docs/data.md lists the vocabulary)")
    if qtype in ("implicit", "misinformed") and not people:
        return (f"{qtype} queries hop through a person relation ({', '.join(PERSON_RELATIONS)}) and "
                f"item_attributes has none; {found}"), map_fix
    if qtype == "explicit" and not any(r in relations for r in ("genre", *_TIME_RELATIONS)):
        return ("explicit queries state genres, years or decades and the catalog has none",
                "give items a year or genres (items.year, items.genres)")
    if qtype == "interest":
        return ("interest queries need items liked by the same users (co-interactions) and a user who liked "
                "two of them", "add interactions, or lower --min-rating")
    return (f"no user has a liked item that meets such a query's conditions ({found})",
            "add interactions or attributes, or lower --min-rating")
