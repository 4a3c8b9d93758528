"""Does a catalog's knowledge graph describe the catalog's own items?

A link file keyed by another numbering (RecBole's ``ml-100k.link`` holds MovieLens global ids, not
ML-100k ids) attaches every fact to the wrong item and still loads without an error. What gives it away
is the item table: films that share a director, an actor or a writer share genres and are made within a
few years of each other far more often than two films drawn at random, and a sequel's title echoes its
predecessor's. A scrambled graph loses all three.

:func:`graph_agreement` measures, over item pairs that share an entity of a graph relation (every
relation except the ``genre``/``year``/``decade`` rows derived from the item table):

* ``genre``: the share of pairs with a common catalog genre, against the same share for random pairs;
* ``year``: the share of pairs made at most ``near_years`` apart, against random pairs;
* ``sequel``: for item-to-item relations named sequel/prequel, the share of pairs whose titles share a
  word of four letters or more, against random pairs.

Each is reported with its chance level, and a z-score against a permutation null: the catalog's
genres (years, titles) shuffled over the same items ``n_permutations`` times and measured on the same
pairs, which keeps the pairs' dependence (an actor's twenty films give 190 pairs, not 190 independent
draws). The graph *agrees* when any measured z reaches ``min_z``; it is *at chance* when every
measured z stays below it over at least ``min_pairs`` pairs; it is *not measured* when the catalog has no
genres or years, or too few pairs to tell.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from rerec.data.schema import NAMED_RELATIONS

SEQUEL_RELATIONS = frozenset({"sequel", "prequel"})
_WORD = re.compile(r"[a-z0-9]{4,}")
_COMMON_WORDS = frozenset({"the", "with", "from", "part", "movie", "film", "story", "and", "that", "this"})


@dataclass(frozen=True)
class Agreement:
    """One signal: ``observed`` share over ``pairs`` graph pairs, ``chance`` share of random pairs."""

    pairs: int
    observed: float
    chance: float
    z: float


@dataclass
class GraphAgreement:
    verdict: str  # "agrees" | "at chance" | "not measured" | "no graph"
    signals: dict[str, Agreement] = field(default_factory=dict)
    relations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "relations": self.relations,
                "signals": {k: asdict(a) for k, a in self.signals.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> GraphAgreement:
        return cls(data["verdict"], {k: Agreement(**a) for k, a in data["signals"].items()}, data["relations"])

    def summary(self) -> str:
        if not self.signals:
            return f"knowledge graph vs item table: {self.verdict}"
        parts = [f"{name} {a.observed:.0%} vs {a.chance:.0%} at random (z = {a.z:.1f}, {a.pairs:,} pairs)"
                 for name, a in self.signals.items()]
        return f"knowledge graph vs item table: {self.verdict}; " + "; ".join(parts)


def _signal(values, pairs: np.ndarray, chance_pairs: np.ndarray, same, rng: np.random.Generator,
            n_permutations: int) -> Agreement:
    """``same`` measured on the graph's pairs, on random pairs, and on the graph's pairs with ``values``
    shuffled over the items (the permutation null that gives z)."""
    observed = _share(values, pairs, same)
    chance = _share(values, chance_pairs, same)
    null = np.array([_share(values[rng.permutation(len(values))], pairs, same) for _ in range(n_permutations)])
    z = (observed - null.mean()) / max(float(null.std()), 1e-9)
    return Agreement(len(pairs), observed, chance, float(z))


def entity_pairs(attributes: pd.DataFrame, *, max_group: int = 50, max_pairs: int = 50_000,
                 seed: int = 0) -> np.ndarray:
    """(n, 2) item-index pairs sharing an entity of a graph relation, as positions into the sorted
    unique ``item_id`` of ``attributes``; entities held by more than ``max_group`` items (a language, a
    country) are left out, and at most ``max_pairs`` pairs are drawn (seeded)."""
    graph = attributes[~attributes["relation"].isin(NAMED_RELATIONS)]
    codes, _ = pd.factorize(graph["item_id"].astype("str"), sort=True)
    groups = pd.DataFrame({"item": codes, "key": graph["relation"].astype("str") + "\x00" + graph["entity"].astype("str")})
    pairs = []
    for items in groups.groupby("key", sort=False)["item"].agg(lambda s: np.unique(s.to_numpy())):
        if 2 <= len(items) <= max_group:
            i, j = np.triu_indices(len(items), k=1)
            pairs.append(np.stack([items[i], items[j]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.unique(np.concatenate(pairs), axis=0)
    if len(pairs) > max_pairs:
        pairs = pairs[np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False)]
    return pairs


def _share(values, pairs: np.ndarray, same) -> float:
    return float(np.mean(same(values[pairs[:, 0]], values[pairs[:, 1]])))


def _random_pairs(n_items: int, n: int, rng: np.random.Generator) -> np.ndarray:
    i = rng.integers(0, n_items, size=n)
    j = (i + rng.integers(1, n_items, size=n)) % n_items  # never an item with itself
    return np.stack([i, j], axis=1)


def graph_agreement(items: pd.DataFrame, attributes: pd.DataFrame, item_pairs: pd.DataFrame | None = None, *,
                    near_years: int = 5, min_pairs: int = 100, min_z: float = 5.0, n_random: int = 20_000,
                    n_permutations: int = 30, seed: int = 0) -> GraphAgreement:
    """Agreement of the graph in ``attributes`` with ``items`` (``item_id``, ``title``, optional ``year``,
    ``genres``). ``item_pairs`` (``item_id``, ``relation``, ``other_item_id``) are facts between two
    items (sequel ...); without it they are read from ``attributes`` rows whose entity is an item id."""
    graph = attributes[~attributes["relation"].isin(NAMED_RELATIONS)]
    if graph.empty:
        return GraphAgreement("no graph")
    rng = np.random.default_rng(seed)
    linked = np.sort(graph["item_id"].astype("str").unique())
    table = items.set_index(items["item_id"].astype("str")).reindex(linked)
    pairs = entity_pairs(attributes, seed=seed)
    chance_pairs = _random_pairs(len(linked), n_random, rng) if len(linked) > 1 else np.zeros((0, 2), int)
    signals: dict[str, Agreement] = {}

    if "genres" in table and len(pairs) and len(chance_pairs):
        vocab = sorted({g for gs in table["genres"].dropna() for g in gs})
        if vocab:
            index = {g: k for k, g in enumerate(vocab)}
            hot = np.zeros((len(table), len(vocab)), dtype=bool)
            for row, gs in enumerate(table["genres"]):
                for g in (gs if isinstance(gs, list | np.ndarray) else []):
                    hot[row, index[g]] = True
            has = hot.any(axis=1)

            def common(a, b):
                return (a & b).any(axis=1)

            keep, keep_chance = has[pairs].all(axis=1), has[chance_pairs].all(axis=1)
            if keep.sum() and keep_chance.sum():
                signals["genre"] = _signal(hot, pairs[keep], chance_pairs[keep_chance], common, rng, n_permutations)

    if "year" in table and len(pairs) and len(chance_pairs):
        years = pd.to_numeric(table["year"], errors="coerce").to_numpy(dtype=float)
        dated = ~np.isnan(years)
        keep, keep_chance = dated[pairs].all(axis=1), dated[chance_pairs].all(axis=1)
        if keep.sum() and keep_chance.sum():
            def near(a, b):
                return np.abs(a - b) <= near_years

            signals["year"] = _signal(years, pairs[keep], chance_pairs[keep_chance], near, rng, n_permutations)

    sequels = _sequel_pairs(items, attributes, item_pairs)
    if len(sequels):
        titles = items.set_index(items["item_id"].astype("str"))["title"]
        words = np.array([_title_words(t) for t in titles], dtype=object)
        position = {item: k for k, item in enumerate(titles.index)}
        sequel_pairs = np.array([(position[a], position[b]) for a, b in sequels])
        draws = _random_pairs(len(words), min(n_random, 5_000), rng)

        def shared_word(a, b):
            return np.array([bool(x & y) for x, y in zip(a, b, strict=True)])

        signals["sequel"] = _signal(words, sequel_pairs, draws, shared_word, rng, n_permutations)

    measured = {k: a for k, a in signals.items() if a.pairs >= min_pairs or k == "sequel" and a.pairs >= 10}
    if not measured:
        verdict = "not measured"
    elif any(a.z >= min_z for a in measured.values()):
        verdict = "agrees"
    else:
        verdict = "at chance"
    return GraphAgreement(verdict, signals, sorted(graph["relation"].astype("str").unique()))


def _title_words(title) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(str(title).lower()) if w not in _COMMON_WORDS)


def _sequel_pairs(items: pd.DataFrame, attributes: pd.DataFrame,
                  item_pairs: pd.DataFrame | None) -> list[tuple[str, str]]:
    if item_pairs is None:
        ids = set(items["item_id"].astype("str"))
        rows = attributes[attributes["relation"].isin(SEQUEL_RELATIONS) & attributes["entity"].isin(ids)]
        item_pairs = pd.DataFrame({"item_id": rows["item_id"], "relation": rows["relation"],
                                   "other_item_id": rows["entity"]})
    rows = item_pairs[item_pairs["relation"].isin(SEQUEL_RELATIONS)
                      & (item_pairs["item_id"] != item_pairs["other_item_id"])]
    return sorted({tuple(sorted(p)) for p in zip(rows["item_id"].astype("str"),
                                                rows["other_item_id"].astype("str"), strict=True)})
