"""The item–attribute graph behind query alignment (QAS): which (relation, entity) pairs an item has.

Built from the item-centric long table ``item_attributes`` (``item_id``, ``relation``, ``entity``; see
:mod:`rerec.data.schema`): the Freebase knowledge graph with normalised relation names (``actor``,
``director``, ``writer``, ...) plus the named attributes ``genre``, ``year`` and ``decade``. A query
condition is one (relation, entity) pair, so ``satisfies(item, relation, entity)`` is the QAS test.

Two views:
- lookups for the reward and the query generator: :meth:`ItemAttributeGraph.satisfies`,
  :meth:`attributes_of`, :meth:`shared_entities`, :meth:`items_with` (dict/set indexes, built lazily
  on the first lookup, O(1) per call after that);
- tensors for graph models: :meth:`edge_index_dict` (item → entity per relation) and
  :meth:`to_hetero_data` (a PyG ``HeteroData`` with ``item`` and ``entity`` nodes).

Saved as ``item_attribute_graph.parquet`` (the deduplicated, sorted table) plus
``item_attribute_graph.json`` (relations and counts).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rerec.errors import InputError
from rerec.io import write_json

TABLE_FILE = "item_attribute_graph.parquet"
META_FILE = "item_attribute_graph.json"
COLUMNS = ["item_id", "relation", "entity"]


class ItemAttributeGraph:
    """Items linked to entities by named relations.

    Args:
        table: ``item_id``, ``relation``, ``entity`` (converted to str, nulls dropped, deduplicated
            and sorted by item, relation, entity).
    """

    def __init__(self, table: pd.DataFrame) -> None:
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise InputError(f"the item-attribute table has no {missing[0]} column", column=missing[0],
                             fix="pass a long table with item_id, relation and entity columns")
        table = table[COLUMNS].dropna()
        table = table.astype({c: str for c in COLUMNS}) if len(table) else table.astype(object)
        table = table.drop_duplicates().sort_values(COLUMNS, kind="stable").reset_index(drop=True)
        self.table = table
        self._by_item: dict[str, dict[str, set[str]]] | None = None
        self._by_entity: dict[tuple[str, str], set[str]] | None = None

    # ------------------------------------------------------------------ sizes
    @property
    def relations(self) -> list[str]:
        return sorted(self.table["relation"].unique().tolist())

    @property
    def item_ids(self) -> list[str]:
        return sorted(self.table["item_id"].unique().tolist())

    @property
    def entity_ids(self) -> list[str]:
        return sorted(self.table["entity"].unique().tolist())

    def __len__(self) -> int:
        return len(self.table)

    def counts(self) -> dict[str, int | dict[str, int]]:
        return {
            "rows": len(self.table),
            "items": int(self.table["item_id"].nunique()),
            "entities": int(self.table["entity"].nunique()),
            "relations": int(self.table["relation"].nunique()),
            "rows_per_relation": {k: int(v) for k, v in self.table["relation"].value_counts().sort_index().items()},
        }

    # ------------------------------------------------------------------ lookups
    def _index(self) -> tuple[dict[str, dict[str, set[str]]], dict[tuple[str, str], set[str]]]:
        if self._by_item is None or self._by_entity is None:
            by_item: dict[str, dict[str, set[str]]] = {}
            by_entity: dict[tuple[str, str], set[str]] = {}
            t = self.table
            for item, relation, entity in zip(t["item_id"].tolist(), t["relation"].tolist(),
                                              t["entity"].tolist(), strict=True):
                by_item.setdefault(item, {}).setdefault(relation, set()).add(entity)
                by_entity.setdefault((relation, entity), set()).add(item)
            self._by_item, self._by_entity = by_item, by_entity
        return self._by_item, self._by_entity

    def satisfies(self, item_id: str, relation: str, entity: str) -> bool:
        """Whether the item has ``relation`` ``entity`` (one query condition)."""
        return str(entity) in self._index()[0].get(str(item_id), {}).get(relation, ())

    def attributes_of(self, item_id: str) -> dict[str, set[str]]:
        """relation -> entities of the item (a copy; empty for an unknown item)."""
        return {r: set(e) for r, e in self._index()[0].get(str(item_id), {}).items()}

    def shared_entities(self, item_a: str, item_b: str) -> dict[str, set[str]]:
        """relation -> entities both items have, for relations where they share at least one."""
        by_item = self._index()[0]
        a, b = by_item.get(str(item_a), {}), by_item.get(str(item_b), {})
        shared = {r: a[r] & b[r] for r in a.keys() & b.keys()}
        return {r: e for r, e in sorted(shared.items()) if e}

    def items_with(self, relation: str, entity: str) -> set[str]:
        """Every item that has ``relation`` ``entity`` (a copy; empty when none)."""
        return set(self._index()[1].get((relation, str(entity)), ()))

    # ------------------------------------------------------------------ tensors
    def edge_index_dict(self, item_ids: list[str] | None = None) -> dict[str, Tensor]:
        """relation -> ``(2, E_r)`` long: row 0 item index, row 1 entity index (into :attr:`entity_ids`).

        ``item_ids`` fixes the item numbering (e.g. ``InteractionGraph.item_ids`` so both graphs
        share item indices); rows with items outside it are dropped. Defaults to :attr:`item_ids`.
        """
        items = pd.Index(item_ids if item_ids is not None else self.item_ids)
        entities = pd.Index(self.entity_ids)
        t = self.table
        item_idx = items.get_indexer(t["item_id"])
        entity_idx = entities.get_indexer(t["entity"])
        out: dict[str, Tensor] = {}
        relation = t["relation"].to_numpy()
        for rel in self.relations:
            mask = (relation == rel) & (item_idx >= 0)
            out[rel] = torch.from_numpy(np.stack([item_idx[mask], entity_idx[mask]]).astype(np.int64))
        return out

    def to_hetero_data(self, item_ids: list[str] | None = None):
        """A ``torch_geometric.data.HeteroData``: ``item`` and ``entity`` node types, one edge type
        ``("item", relation, "entity")`` per relation plus its reverse ``("entity", "rev_" + relation, "item")``."""
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["item"].num_nodes = len(item_ids if item_ids is not None else self.item_ids)
        data["entity"].num_nodes = len(self.entity_ids)
        for rel, edge_index in self.edge_index_dict(item_ids).items():
            data["item", rel, "entity"].edge_index = edge_index
            data["entity", f"rev_{rel}", "item"].edge_index = edge_index.flip(0)
        return data

    # ------------------------------------------------------------------ I/O
    def save(self, folder: str | Path) -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        table_path, meta_path = folder / TABLE_FILE, folder / META_FILE
        self.table.to_parquet(table_path, index=False)
        write_json(meta_path, {"format_version": 1, "relations": self.relations, **self.counts()})
        return [table_path, meta_path]

    @classmethod
    def load(cls, folder: str | Path) -> ItemAttributeGraph:
        """Read a graph written by :meth:`save` (the folder, or the parquet file itself)."""
        folder = Path(folder)
        table_path = folder if folder.suffix == ".parquet" else folder / TABLE_FILE
        if not table_path.is_file():
            raise InputError("the item-attribute graph is missing", file=str(table_path),
                             fix="point to a folder written by 'rerec build-graphs'")
        try:
            table = pd.read_parquet(table_path)
        except Exception as exc:
            raise InputError(f"cannot read the item-attribute graph ({exc})", file=str(table_path),
                             fix="rebuild it with 'rerec build-graphs'") from None
        graph = cls(table)
        meta_path = table_path.with_name(META_FILE)
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("rows") != len(graph):
                raise InputError(f"the table has {len(graph)} rows but its metadata says {meta.get('rows')}",
                                 file=str(table_path), fix="rebuild it with 'rerec build-graphs'")
        return graph
