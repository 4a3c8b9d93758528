"""The user's taste as prompt evidence: what the user–item graph says about each candidate.

The item–attribute graph tells a model which candidates meet a request; the user–item graph tells it
which of those this user is likely to like. :class:`TasteIndex` turns the second into one compact
signal per candidate, its **taste rank** among the candidates shown ("taste #1" is the best), so that
the reasoning can go in two steps (which candidates meet the request, then which of those fits this
user) and the preference reward (PAS, from the same LightGCN) rewards something the policy can see.

The rank orders the candidates by, first, how often they are liked together with the items the request
names as liked (:func:`liked_references`: the sum of Jaccard similarities of their sets of liking users,
a like being a rating of at least :data:`LIKED_RATING`; "viewers who liked Fargo also liked ..."), then
by the LightGCN preference score ``e_u · e_i`` (He et al. 2020, arXiv 2002.02126) for a known user, or
``mean(e_h) · e_i`` over a history of items for a user the graph has not seen (a fold-in: the first
propagation layer of LightGCN averages a user's items), then by popularity. A request that
names no item is ranked by LightGCN alone.

Everything comes from the *training* graph (``rerec build-graphs`` leaves held-out positives out) and the
reward stage's embeddings trained on it: no held-out positive reaches a count, an embedding or a prompt.
Measured on make run's validation queries (4 candidates, 531): the rule "meets the most stored
conditions, then taste #1" picks the positive for 0.987 of them, LightGCN alone for 0.748; on interest
requests taste #1 picks it for 0.933 (0.846 when every rating counted as a like; docs/results.md).

Built once per stage (``TasteIndex.build``), saved beside a registered model (``save``/``load``), and read
by :func:`rerec.prompt.build_messages` through the :class:`rerec.prompt.CatalogView` it is attached to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rerec.errors import ConfigError, InputError

TASTE_FILE = "taste.npz"
#: neighbours kept per item (by Jaccard similarity); the rest count as 0
DEFAULT_TOP_K = 200
#: the rating from which an interaction counts as a like in the co-likes (the query generator's
#: ``QueryConfig.min_rating``: an interest request's answer is co-liked, in this sense, with what it names)
LIKED_RATING = 4.0


@dataclass
class TasteIndex:
    """Item neighbours and LightGCN embeddings, indexed by id.

    Attributes:
        item_ids: ``(I,)`` item ids; ``user_ids``: ``(U,)`` user ids.
        item_embeddings: ``(I, d)`` float32 (rows of zeros for items LightGCN has no embedding for);
        user_embeddings: ``(U, d)`` float32.
        popularity: ``(I,)`` training interactions per item.
        neighbour_ptr, neighbour_items, neighbour_jaccard: CSR rows of the top-``k`` Jaccard neighbours
            of each item (``neighbour_ptr`` ``(I + 1,)``; the others ``(nnz,)``).
    """

    item_ids: list[str]
    user_ids: list[str]
    item_embeddings: np.ndarray
    user_embeddings: np.ndarray
    popularity: np.ndarray
    neighbour_ptr: np.ndarray
    neighbour_items: np.ndarray
    neighbour_jaccard: np.ndarray

    def __post_init__(self) -> None:
        self.item_index = {item: n for n, item in enumerate(self.item_ids)}
        self.user_index = {user: n for n, user in enumerate(self.user_ids)}
        self.has_embedding = np.abs(self.item_embeddings).sum(axis=1) > 0

    # ------------------------------------------------------------------ building and storage

    @classmethod
    def build(cls, graph: Any, reward_dir: str | Path, top_k: int = DEFAULT_TOP_K,
              chunk: int = 512, min_rating: float | None = LIKED_RATING) -> TasteIndex:
        """From an :class:`rerec.graphs.interaction.InteractionGraph` (training edges) and the folder
        written by ``rerec train-reward-gnn``. Jaccard neighbours are computed ``chunk`` items at a time
        from the sparse user–item matrix, so memory grows with ``I * chunk``, not ``I**2``.

        Co-likes count only the edges rated at least ``min_rating`` (a graph without ratings, or
        ``min_rating=None``, counts every edge): a viewer who rated Fargo 1 did not like it. Popularity
        counts every training interaction, as the LightGCN baseline's fallback does."""
        import scipy.sparse as sp

        from rerec.graphs.interaction import liked_edges
        from rerec.reward.lightgcn import USER_EMBEDDINGS, load_embeddings

        n_users, n_items = graph.num_users, graph.num_items
        all_items = graph.edge_item.numpy()
        liked = liked_edges(graph.rating, min_rating, len(all_items))
        users = graph.edge_user.numpy()[liked]
        items = all_items[liked]
        matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
        by_item = matrix.T.tocsr()
        support = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
        ptr, cols, vals = [0], [], []
        for start in range(0, n_items, chunk):
            stop = min(start + chunk, n_items)
            co = (by_item[start:stop] @ matrix).toarray()  # (chunk, I) co-liking counts
            union = support[start:stop, None] + support[None, :] - co
            jaccard = np.divide(co, union, out=np.zeros_like(co), where=union > 0)
            jaccard[np.arange(stop - start), np.arange(start, stop)] = 0.0
            for row in jaccard:
                nz = np.flatnonzero(row)
                if len(nz) > top_k:
                    nz = nz[np.argpartition(-row[nz], top_k - 1)[:top_k]]
                nz = np.sort(nz)
                cols.append(nz)
                vals.append(row[nz])
                ptr.append(ptr[-1] + len(nz))

        item_ids, item_rows = load_embeddings(Path(reward_dir))
        user_ids, user_rows = load_embeddings(Path(reward_dir) / USER_EMBEDDINGS)
        dim = item_rows.shape[1]
        item_embeddings = np.zeros((n_items, dim), dtype=np.float32)
        index = {item: n for n, item in enumerate(graph.item_ids)}
        for row, item in enumerate(item_ids):
            if item in index:
                item_embeddings[index[item]] = item_rows[row].float().numpy()
        popularity = np.bincount(all_items, minlength=n_items).astype(np.float32)
        return cls(list(graph.item_ids), list(user_ids), item_embeddings, user_rows.float().numpy(),
                   popularity, np.asarray(ptr, dtype=np.int64),
                   np.concatenate(cols).astype(np.int32) if cols else np.zeros(0, np.int32),
                   np.concatenate(vals).astype(np.float32) if vals else np.zeros(0, np.float32))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / TASTE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, item_ids=np.asarray(self.item_ids, dtype=str),
                            user_ids=np.asarray(self.user_ids, dtype=str), item_embeddings=self.item_embeddings,
                            user_embeddings=self.user_embeddings, popularity=self.popularity,
                            neighbour_ptr=self.neighbour_ptr, neighbour_items=self.neighbour_items,
                            neighbour_jaccard=self.neighbour_jaccard)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TasteIndex:
        path = Path(path)
        if path.is_dir():
            path = path / TASTE_FILE
        if not path.is_file():
            raise InputError("the taste index is missing", file=str(path),
                             fix="pass the folder a registered model or 'TasteIndex.save' wrote")
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
        return cls(item_ids=fields.pop("item_ids").tolist(), user_ids=fields.pop("user_ids").tolist(), **fields)

    # ------------------------------------------------------------------ scoring

    def jaccard(self, item: str, others: Sequence[str]) -> float:
        """Sum over ``others`` of the Jaccard similarity of ``item``'s and each other item's liking users
        (0 outside the kept neighbours)."""
        j = self.item_index.get(str(item))
        if j is None:
            return 0.0
        total = 0.0
        for other in others:
            x = self.item_index.get(str(other))
            if x is None or x == j:
                continue
            lo, hi = self.neighbour_ptr[x], self.neighbour_ptr[x + 1]
            row = self.neighbour_items[lo:hi]
            at = np.searchsorted(row, j)
            if at < len(row) and row[at] == j:
                total += float(self.neighbour_jaccard[lo + at])
        return total

    def preference(self, items: Sequence[str], user_id: str | None = None,
                   history: Sequence[str] = ()) -> np.ndarray | None:
        """LightGCN scores of ``items`` (``(n,)``) for a known user, else for the mean of the history
        items' embeddings; None when neither is known."""
        u = self.user_index.get(str(user_id)) if user_id is not None else None
        if u is not None:
            vector = self.user_embeddings[u]
        else:
            rows = [self.item_index[h] for h in map(str, history) if h in self.item_index]
            rows = [r for r in rows if self.has_embedding[r]]
            if not rows:
                return None
            vector = self.item_embeddings[rows].mean(axis=0)
        out = np.full(len(items), -np.inf, dtype=np.float64)
        for n, item in enumerate(items):
            j = self.item_index.get(str(item))
            if j is not None and self.has_embedding[j]:
                out[n] = float(self.item_embeddings[j] @ vector)
        return out

    def ranks(self, candidates: Sequence[str], *, user_id: str | None = None, history: Sequence[str] = (),
              named: Sequence[str] = ()) -> dict[str, int]:
        """Candidate id -> taste rank (1 = best) among ``candidates`` (module docstring for the order;
        ties keep the displayed order)."""
        candidates = [str(c) for c in candidates]
        co = [self.jaccard(c, named) for c in candidates] if named else [0.0] * len(candidates)
        pref = self.preference(candidates, user_id, history)
        pref = pref if pref is not None else np.zeros(len(candidates))
        pop = [float(self.popularity[self.item_index[c]]) if c in self.item_index else 0.0 for c in candidates]
        order = sorted(range(len(candidates)), key=lambda n: (-co[n], -pref[n], -pop[n], n))
        return {candidates[n]: rank for rank, n in enumerate(order, start=1)}

    def query_ranks(self, query: Mapping) -> dict[str, int]:
        """:meth:`ranks` for a row of the queries table (or a serving request): its ``user_id``, its
        ``history`` and the items its request names as liked (:func:`liked_references`)."""
        return self.ranks(query["candidates"], user_id=query.get("user_id") or None,
                          history=list(query.get("history") or []), named=liked_references(query))


def attach_taste(view: Any, graphs_dir: str | Path | None, reward_dir: str | Path | None) -> Any:
    """``view`` with a :class:`TasteIndex` built from the training graph in ``graphs_dir`` and the LightGCN
    embeddings in ``reward_dir`` (the stages' one way to switch taste evidence on)."""
    from rerec.graphs.interaction import InteractionGraph

    if graphs_dir is None or reward_dir is None:
        raise ConfigError("taste evidence needs the build-graphs folder and the train-reward-gnn folder. Fix: pass "
                          "--graphs and --reward, or switch it off with --taste-evidence false.")
    view.taste = TasteIndex.build(InteractionGraph.load(graphs_dir), reward_dir)
    return view


def taste_source(taste_evidence: bool, reward_dir: str | Path | None) -> str | Path | None:
    """The reward folder to read the user's taste from, or None when taste evidence is off; refused when
    it is on and no reward folder was given."""
    if not taste_evidence:
        return None
    if reward_dir is None:
        raise ConfigError("taste evidence (the profile's or --taste-evidence true) needs the train-reward-gnn "
                          "folder. Fix: pass --reward DIR, or --taste-evidence false.")
    return reward_dir


def liked_references(query: Mapping) -> list[str]:
    """The items a request names as ones the user liked ("I loved Fargo and Heat: what do viewers with
    my taste watch?"): the ``via`` items of ``co_interaction`` conditions, and of conditions without a
    relation. A served request's ``liked`` items arrive as ``co_interaction`` conditions, its other
    ``mentions`` under the relation ``mention`` (:func:`rerec.serving.recommender.to_query`). Items named through a
    person relation ("by the director of Fargo") are left out: measured on validation, their co-likes
    lower the taste rank's accuracy (0.62 against 0.68 on implicit queries) while conditions decide those
    queries anyway."""
    from rerec.data.schema import CO_INTERACTION, decode_conditions

    named: list[str] = []
    for cond in decode_conditions(query.get("conditions") or []):
        via = cond.get("via")
        if via is not None and cond.get("relation") in (None, "", CO_INTERACTION) and str(via) not in named:
            named.append(str(via))
    return named
