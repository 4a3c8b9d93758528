"""The user–item interaction graph that LightGCN (and every collaborative baseline) trains on.

Node numbering follows PyG's :class:`~torch_geometric.nn.models.LightGCN` convention for bipartite
graphs: users are nodes ``0..U-1`` and items are nodes ``U..U+I-1``. Each distinct (user, item) pair
is one *interaction edge*; the message-passing graph holds it in both directions, so

- ``edge_index`` is ``(2, 2E)``: the first ``E`` columns are user→item sorted by (user, item), the
  next ``E`` are item→user sorted by (item, user) — i.e. the graph in CSR (row-major) order;
- ``rowptr`` ``(U+I+1,)`` and ``col`` ``(2E,)`` are the same symmetric adjacency in CSR form, with
  ``edge_index[1] == col`` and ``rowptr[n+1] - rowptr[n]`` the degree of node ``n``.

Leakage rule (docs/interfaces.md): the (user, positive) pairs of val and test queries are excluded
with ``exclude_pairs``; the users and items themselves stay in the id maps, so ids never shift.

Everything is vectorised (``pd.factorize``, ``np.argsort``, ``np.bincount``): bench/graphs.py builds
1M interactions in well under a second. ``save``/``load`` use ``torch.save`` of plain tensors and
string lists only, loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rerec.errors import InputError

GRAPH_FILE = "interaction_graph.pt"
FORMAT_VERSION = 1


@dataclass
class InteractionGraph:
    """A bipartite user–item graph.

    Attributes:
        user_ids: node index -> user id, length ``U``.
        item_ids: item index -> item id, length ``I`` (item ``j`` is node ``U + j``).
        edge_user: ``(E,)`` long, user index of each interaction edge, sorted by (user, item).
        edge_item: ``(E,)`` long, item index (``0..I-1``, not offset) of each interaction edge.
        rating: ``(E,)`` float or ``None``; the rating of the kept interaction.
        timestamp: ``(E,)`` long or ``None``; the timestamp of the kept interaction.
        n_excluded: interactions dropped by the leakage rule when the graph was built.
    """

    user_ids: list[str]
    item_ids: list[str]
    edge_user: Tensor
    edge_item: Tensor
    rating: Tensor | None = None
    timestamp: Tensor | None = None
    n_excluded: int = 0

    def __post_init__(self) -> None:
        self._csr: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ sizes
    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    @property
    def num_interactions(self) -> int:
        """Distinct (user, item) edges ``E``; the message-passing graph has ``2E`` directed edges."""
        return int(self.edge_user.numel())

    # ------------------------------------------------------------------ views
    @property
    def csr(self) -> tuple[Tensor, Tensor]:
        """``(rowptr (N+1,), col (2E,))`` of the symmetric graph; ``N = U + I``."""
        if self._csr is None:
            self._csr = _symmetric_csr(self.edge_user, self.edge_item, self.num_users, self.num_items)
        return self._csr

    @property
    def rowptr(self) -> Tensor:
        return self.csr[0]

    @property
    def col(self) -> Tensor:
        return self.csr[1]

    @property
    def edge_index(self) -> Tensor:
        """``(2, 2E)`` long: both directions, in CSR order (``edge_index[1] == col``)."""
        rowptr, col = self.csr
        row = torch.repeat_interleave(torch.arange(self.num_nodes), rowptr.diff())
        return torch.stack([row, col])

    def user_index(self) -> dict[str, int]:
        return {u: k for k, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        return {i: k for k, i in enumerate(self.item_ids)}

    def items_of_user(self, user: int) -> Tensor:
        """Item indices (``0..I-1``) the user interacted with, ascending."""
        rowptr, col = self.csr
        return col[rowptr[user]: rowptr[user + 1]] - self.num_users

    def subgraph(self, keep: Tensor) -> InteractionGraph:
        """The same id maps with only the interaction edges where the bool mask ``keep`` (E,) is set."""
        return InteractionGraph(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            edge_user=self.edge_user[keep],
            edge_item=self.edge_item[keep],
            rating=None if self.rating is None else self.rating[keep],
            timestamp=None if self.timestamp is None else self.timestamp[keep],
            n_excluded=self.n_excluded,
        )

    # ------------------------------------------------------------------ build
    @classmethod
    def from_interactions(
        cls,
        interactions: pd.DataFrame,
        exclude_pairs: pd.DataFrame | Iterable[tuple[str, str]] | None = None,
        item_ids: Iterable[str] | None = None,
        min_rating: float | None = None,
    ) -> InteractionGraph:
        """Build from an ``interactions`` table (``user_id``, ``item_id``, optional ``rating``, ``timestamp``).

        Args:
            interactions: one row per interaction; repeated (user, item) rows become one edge that
                keeps the latest row (by timestamp when present, else the last one).
            exclude_pairs: (user_id, item_id) pairs to leave out — the positives of val/test
                queries — as a DataFrame with those columns or an iterable of tuples.
            item_ids: the item universe (e.g. every catalog item, so cold items get a node too);
                defaults to the items that appear in ``interactions``. Ids are sorted as strings.
            min_rating: keep only interactions rated at least this (``None`` keeps all).
        """
        missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
        if missing:
            raise InputError(f"the interactions table has no {missing[0]} column", column=missing[0],
                             fix="pass a table with user_id and item_id columns (run 'rerec prepare-data')")
        # Factorizing the (arrow-backed) string Series is faster than factorizing an object array.
        users = interactions["user_id"].astype(str)
        items = interactions["item_id"].astype(str)
        user_codes, user_uniques = pd.factorize(users, sort=True)
        if item_ids is not None:
            universe = pd.Index(sorted(set(map(str, item_ids)) | set(pd.unique(items))))
            item_codes = universe.get_indexer(items)
            item_uniques = universe
        else:
            item_codes, item_uniques = pd.factorize(items, sort=True)
        n_items = len(item_uniques)

        rating = interactions["rating"].to_numpy(dtype=np.float32, na_value=np.nan) if "rating" in interactions else None
        keep = liked_edges(rating, min_rating, len(users))
        keys = user_codes.astype(np.int64) * max(n_items, 1) + item_codes
        n_excluded = 0
        if exclude_pairs is not None:
            excluded = _pair_keys(exclude_pairs, pd.Index(user_uniques), pd.Index(item_uniques), n_items)
            if excluded.size:
                at = np.minimum(np.searchsorted(excluded, keys), excluded.size - 1)
                dropped = excluded[at] == keys
                n_excluded = int((dropped & keep).sum())
                keep &= ~dropped

        timestamp = None
        if "timestamp" in interactions and interactions["timestamp"].notna().any():
            timestamp = interactions["timestamp"].to_numpy(dtype=np.float64, na_value=np.nan)
        idx = np.flatnonzero(keep)
        idx = idx[_latest_per_key(keys[idx], None if timestamp is None else timestamp[idx])]

        return cls(
            user_ids=pd.Index(user_uniques).to_numpy(dtype=object).tolist(),
            item_ids=pd.Index(item_uniques).to_numpy(dtype=object).tolist(),
            edge_user=torch.from_numpy(user_codes[idx].astype(np.int64)),
            edge_item=torch.from_numpy(item_codes[idx].astype(np.int64)),
            rating=None if rating is None else torch.from_numpy(rating[idx].copy()),
            timestamp=None if timestamp is None else torch.from_numpy(
                np.nan_to_num(timestamp[idx], nan=-1).astype(np.int64)),
            n_excluded=n_excluded,
        )

    # ------------------------------------------------------------------ I/O
    def to_state(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "user_ids": list(self.user_ids),
            "item_ids": list(self.item_ids),
            "edge_user": self.edge_user.contiguous(),
            "edge_item": self.edge_item.contiguous(),
            "rating": self.rating,
            "timestamp": self.timestamp,
            "n_excluded": int(self.n_excluded),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``interaction_graph.pt`` into the folder ``path`` (or to ``path`` if it ends in .pt)."""
        path = Path(path)
        file = path if path.suffix == ".pt" else path / GRAPH_FILE
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.to_state(), file)
        return file

    @classmethod
    def load(cls, path: str | Path) -> InteractionGraph:
        """Read a graph written by :meth:`save`, from its folder or its ``.pt`` file."""
        path = Path(path)
        file = path if path.suffix == ".pt" else path / GRAPH_FILE
        if not file.is_file():
            raise InputError("the interaction graph is missing", file=str(file),
                             fix="point to a folder written by 'rerec build-graphs'")
        try:
            state = torch.load(file, weights_only=True, map_location="cpu")
        except Exception as exc:  # a truncated or foreign file
            raise InputError(f"cannot read the interaction graph ({exc})", file=str(file),
                             fix="rebuild it with 'rerec build-graphs'") from None
        if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
            raise InputError("not an interaction graph of this rerec version", file=str(file),
                             fix="rebuild it with 'rerec build-graphs'")
        graph = cls(
            user_ids=state["user_ids"], item_ids=state["item_ids"], edge_user=state["edge_user"],
            edge_item=state["edge_item"], rating=state["rating"], timestamp=state["timestamp"],
            n_excluded=int(state["n_excluded"]),
        )
        n = graph.num_interactions
        if graph.edge_item.numel() != n or (n and (int(graph.edge_user.max()) >= graph.num_users
                                                   or int(graph.edge_item.max()) >= graph.num_items)):
            raise InputError("the interaction graph is inconsistent (edges point past the id maps)",
                             file=str(file), fix="rebuild it with 'rerec build-graphs'")
        return graph


def liked_edges(rating: Any, min_rating: float | None, n_edges: int) -> np.ndarray:
    """``(n_edges,)`` bool: the edges rated at least ``min_rating`` (every edge when there are no ratings or
    ``min_rating`` is None; an unrated edge, NaN, counts). The one rule for "a like": the graph builder keeps
    these edges, and :class:`rerec.taste.TasteIndex` counts co-likes over them."""
    if rating is None or min_rating is None:
        return np.ones(n_edges, dtype=bool)
    return ~(np.asarray(rating) < min_rating)  # in the ratings' own dtype, as the graph builder always compared


def _argsort(values: np.ndarray) -> np.ndarray:
    """Stable argsort of integers; torch's radix sort beats numpy's timsort on these keys."""
    if values.size and values.max() < 2**31 and values.min() >= -(2**31):
        values = values.astype(np.int32)
    return torch.sort(torch.from_numpy(values), stable=True).indices.numpy()


def _latest_per_key(keys: np.ndarray, timestamp: np.ndarray | None) -> np.ndarray:
    """Positions that sort ``keys`` ascending, one per distinct key: the row with the latest timestamp
    (ties and missing timestamps: the last row). Only duplicated keys pay for the tie-break sort."""
    order = _argsort(keys)
    sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    if not same.any():
        return order
    in_group = np.zeros(len(order), dtype=bool)
    in_group[1:] |= same
    in_group[:-1] |= same
    rows = order[in_group]
    ts = np.zeros(len(rows)) if timestamp is None else np.nan_to_num(timestamp[rows], nan=-np.inf)
    rows = rows[np.lexsort((rows, ts, keys[rows]))]
    is_last = np.ones(len(rows), dtype=bool)
    is_last[:-1] = keys[rows][1:] != keys[rows][:-1]
    # Each duplicated key keeps its first sorted slot, filled with the group's winner (same key order).
    first_of_group = in_group & np.concatenate([[True], ~same])
    order[first_of_group] = rows[is_last]
    return order[~in_group | first_of_group]


def _pair_keys(pairs: pd.DataFrame | Iterable[tuple[str, str]], users: pd.Index, items: pd.Index,
               n_items: int) -> np.ndarray:
    """(user_id, item_id) pairs -> ``user * n_items + item`` keys, dropping ids not in the graph."""
    if isinstance(pairs, pd.DataFrame):
        pu, pi = pairs["user_id"].astype(str).to_numpy(), pairs["item_id"].astype(str).to_numpy()
    else:
        listed = list(pairs)
        if not listed:
            return np.empty(0, dtype=np.int64)
        pu, pi = (np.asarray([str(p[k]) for p in listed], dtype=object) for k in (0, 1))
    u, i = users.get_indexer(pu), items.get_indexer(pi)
    ok = (u >= 0) & (i >= 0)
    return np.unique(u[ok].astype(np.int64) * max(n_items, 1) + i[ok])


def _symmetric_csr(edge_user: Tensor, edge_item: Tensor, n_users: int, n_items: int) -> tuple[Tensor, Tensor]:
    """CSR of the symmetric bipartite graph from interaction edges sorted by (user, item)."""
    u = edge_user.numpy()
    i = edge_item.numpy()
    key = u * max(n_items, 1) + i
    if key.size and not np.all(key[1:] >= key[:-1]):  # built by hand, not by from_interactions
        order = _argsort(key)
        u, i = u[order], i[order]
    # Edges are sorted by (user, item); a stable sort by item gives the item rows sorted by (item, user).
    by_item = _argsort(i)
    col = np.concatenate([i + n_users, u[by_item]])
    degree = np.concatenate([np.bincount(u, minlength=n_users), np.bincount(i, minlength=n_items)])
    rowptr = np.zeros(n_users + n_items + 1, dtype=np.int64)
    np.cumsum(degree, out=rowptr[1:])
    return torch.from_numpy(rowptr), torch.from_numpy(col.astype(np.int64))
