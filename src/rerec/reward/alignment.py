"""The two graph terms of the dual-graph reward (``docs/method.md``, "Reward"; ReRec, arXiv 2604.07851).

- Query alignment (QAS), on the item–attribute graph: how many of the request's conditions the
  recommended item p meets,

      QAS(p, q) = |{(r, e) in C_q : p has r e}| / |C_q|,

  where C_q are the query's stored conditions that the graph can check: a (relation, entity) pair
  that the ground truth item has (the schema guarantees this for real conditions; interest or
  co-interaction conditions are not graph pairs and drop out). When no condition is checkable, the
  paper's form over the ground truth's (relation, entity) pairs R:

      QAS(p, gt) = |R_p ∩ R_gt| / |R_gt|.

- Preference alignment (PAS), on LightGCN item embeddings M from the user–item graph:

      PAS(p, gt) = (cos(M(p), M(gt)) + 1) / 2  in [0, 1],  0 when either item has no embedding.

Pure functions over any graph with ``satisfies``/``attributes_of`` (e.g.
:class:`rerec.graphs.attributes.ItemAttributeGraph`) and an :class:`ItemEmbeddingTable`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from rerec.data.schema import decode_conditions
from rerec.errors import InputError


class AttributeGraph(Protocol):
    def satisfies(self, item_id: str, relation: str, entity: str) -> bool: ...

    def attributes_of(self, item_id: str) -> Mapping[str, set[str]]: ...


def condition_pairs(conditions: str | Sequence[Mapping] | None) -> list[tuple[str, str]]:
    """The (relation, entity) pairs of a query's conditions (JSON string or list of dicts),
    deduplicated in order; conditions without both keys are skipped."""
    if conditions is None:
        return []
    if isinstance(conditions, str):
        try:
            conditions = decode_conditions(conditions)
        except ValueError:
            return []
    pairs: dict[tuple[str, str], None] = {}
    for condition in conditions:
        if not isinstance(condition, Mapping):
            continue
        relation, entity = condition.get("relation"), condition.get("entity")
        if relation not in (None, "") and entity not in (None, ""):
            pairs[(str(relation), str(entity))] = None
    return list(pairs)


def checkable_conditions(
    pairs: Sequence[tuple[str, str]], attribute_graph: AttributeGraph, ground_truth_item: str | None
) -> list[tuple[str, str]]:
    """The pairs QAS counts: those the ground truth item has in the graph (all pairs when no ground
    truth is given)."""
    if ground_truth_item is None:
        return list(pairs)
    return [(r, e) for r, e in pairs if attribute_graph.satisfies(ground_truth_item, r, e)]


def attribute_pairs(attribute_graph: AttributeGraph, item_id: str) -> set[tuple[str, str]]:
    """R_item: every (relation, entity) pair of the item."""
    return {(r, e) for r, entities in attribute_graph.attributes_of(item_id).items() for e in entities}


def paper_query_alignment(item_id: str | None, ground_truth_item: str | None,
                          attribute_graph: AttributeGraph) -> float:
    """|R_p ∩ R_gt| / |R_gt| (the paper's QAS); 0 when either item is missing or R_gt is empty."""
    if item_id is None or ground_truth_item is None:
        return 0.0
    truth = attribute_pairs(attribute_graph, ground_truth_item)
    if not truth:
        return 0.0
    return len(truth & attribute_pairs(attribute_graph, item_id)) / len(truth)


def query_alignment_score(
    item_id: str | None,
    conditions: str | Sequence[Mapping] | None,
    attribute_graph: AttributeGraph,
    ground_truth_item: str | None = None,
    *,
    checkable: Sequence[tuple[str, str]] | None = None,
) -> float:
    """QAS in [0, 1] (module docstring): the fraction of the query's checkable conditions that
    ``item_id`` satisfies, else the paper's overlap with the ground truth item; 0 for no item.

    ``checkable``: the pairs :func:`checkable_conditions` gives for ``conditions`` and
    ``ground_truth_item``, for a caller that scores many items of one query and computes them once
    (:class:`rerec.reward.scorer.RewardScorer`); ``conditions`` is not read then."""
    if item_id is None:
        return 0.0
    if checkable is None:
        checkable = checkable_conditions(condition_pairs(conditions), attribute_graph, ground_truth_item)
    if checkable:
        return sum(attribute_graph.satisfies(item_id, r, e) for r, e in checkable) / len(checkable)
    return paper_query_alignment(item_id, ground_truth_item, attribute_graph)


class ItemEmbeddingTable:
    """Item id -> L2-normalised embedding row, for cosine look-ups.

    Args:
        ids: item ids (n,), matching the rows of ``embeddings``.
        embeddings: FloatTensor or array (n, d), e.g. LightGCN's final item embeddings.

    Build from what ``train-reward-gnn`` saves with :meth:`from_saved` (the dict
    ``{"ids": list[str], "embeddings": FloatTensor[n, d]}``) or :meth:`load` (its path or folder, read by
    :func:`rerec.reward.lightgcn.load_embeddings`).
    """

    def __init__(self, ids: Sequence[str], embeddings: torch.Tensor | np.ndarray) -> None:
        matrix = np.asarray(
            embeddings.detach().cpu().float().numpy() if isinstance(embeddings, torch.Tensor) else embeddings,
            dtype=np.float64,
        )
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise InputError(
                f"item embeddings have shape {matrix.shape} for {len(ids)} ids",
                fix="save {'ids': [...], 'embeddings': FloatTensor[len(ids), d]} (rerec train-reward-gnn)",
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = matrix / np.where(norms > 0, norms, 1.0)
        self.ids = [str(i) for i in ids]
        self.index = {item_id: row for row, item_id in enumerate(self.ids)}

    @classmethod
    def from_saved(cls, saved: Mapping) -> ItemEmbeddingTable:
        if not isinstance(saved, Mapping) or "ids" not in saved or "embeddings" not in saved:
            raise InputError("item embeddings must be a dict with 'ids' and 'embeddings'",
                             fix="rerun 'rerec train-reward-gnn' to write item_embeddings.pt")
        return cls(saved["ids"], saved["embeddings"])

    @classmethod
    def load(cls, path: str | Path) -> ItemEmbeddingTable:
        """From ``item_embeddings.pt`` or the ``train-reward-gnn`` folder holding it."""
        from rerec.reward.lightgcn import load_embeddings

        return cls(*load_embeddings(path))

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def __len__(self) -> int:
        return len(self.ids)

    def cosine(self, item_a: str, item_b: str) -> float | None:
        """cos(M(a), M(b)); None when either item has no embedding."""
        a, b = self.index.get(item_a), self.index.get(item_b)
        if a is None or b is None:
            return None
        return float(self.matrix[a] @ self.matrix[b])


def preference_alignment_score(item_id: str | None, gt_item_id: str | None,
                               embeddings: ItemEmbeddingTable) -> float:
    """PAS = (cos(M(p), M(gt)) + 1) / 2 in [0, 1]; 0 for a missing or unknown item."""
    if item_id is None or gt_item_id is None:
        return 0.0
    cosine = embeddings.cosine(item_id, gt_item_id)
    if cosine is None:
        return 0.0
    return min(1.0, max(0.0, (cosine + 1.0) / 2.0))
