"""Benchmark: build both graphs from synthetic data, as build-graphs does.

1,000,000 interactions (string ids, ratings, timestamps; 50,000 users, 20,000 items with a Zipf-like
popularity, 1% duplicates) with 10,000 val/test pairs excluded, and an item-attribute table with
20 rows per item. Times the interaction graph (factorize, exclusion, dedup, CSR and edge_index), the
attribute graph (normalisation plus the lookup index) and saving both. The interaction graph is built
--repeats times (fastest counts: the CPU is shared). Ends by printing one JSON line.

    .venv/bin/python bench/graphs.py [--interactions 1000000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np
import pandas as pd
import torch

from rerec.graphs.attributes import ItemAttributeGraph
from rerec.graphs.interaction import InteractionGraph


def synthetic_interactions(n: int, n_users: int, n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    users = rng.integers(0, n_users, n)
    items = np.minimum((rng.pareto(1.2, n) * n_items / 20).astype(np.int64), n_items - 1)
    return pd.DataFrame({
        "user_id": pd.array(np.char.add("u", users.astype(str)), dtype=object),
        "item_id": pd.array(np.char.add("i", items.astype(str)), dtype=object),
        "rating": rng.integers(1, 6, n).astype(np.float64),
        "timestamp": rng.integers(8_000_000_00, 9_000_000_00, n),
    })


def synthetic_attributes(n_items: int, per_item: int, rng: np.random.Generator) -> pd.DataFrame:
    relations = np.array(["actor", "director", "writer", "producer", "genre", "year", "decade", "language"])
    n = n_items * per_item
    item = np.repeat(np.arange(n_items), per_item)
    relation = relations[rng.integers(0, len(relations), n)]
    entity = np.char.add("m.", rng.integers(0, n_items * 3, n).astype(str))
    return pd.DataFrame({"item_id": np.char.add("i", item.astype(str)).astype(object),
                         "relation": relation.astype(object), "entity": entity.astype(object)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--attributes-per-item", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    interactions = synthetic_interactions(args.interactions, args.users, args.items, rng)
    dup = interactions.sample(frac=0.01, random_state=0)
    interactions = pd.concat([interactions, dup], ignore_index=True)
    excluded = interactions.sample(n=10_000, random_state=1)[["user_id", "item_id"]]
    attributes = synthetic_attributes(args.items, args.attributes_per_item, rng)

    # The CPU is shared: the interaction graph is built --repeats times and the fastest build counts.
    # CPU seconds are reported too: with other jobs on the machine, wall time overstates the cost.
    t_interactions = cpu_interactions = float("inf")
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        graph = InteractionGraph.from_interactions(interactions, exclude_pairs=excluded)
        edge_index = graph.edge_index  # materialises the CSR too
        t_interactions = min(t_interactions, time.perf_counter() - t0)
        cpu_interactions = min(cpu_interactions, time.process_time() - c0)

    t0 = time.perf_counter()
    attribute_graph = ItemAttributeGraph(attributes)
    t_attr_table = time.perf_counter() - t0
    t0 = time.perf_counter()
    attribute_graph.satisfies("i0", "actor", "m.0")  # builds the lookup index
    t_attr_index = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        graph.save(tmp)
        attribute_graph.save(tmp)
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        rowptr, _ = InteractionGraph.load(tmp).csr
        assert rowptr[-1] == 2 * graph.num_interactions
        t_load = time.perf_counter() - t0

    n_rows = len(interactions)
    print(f"interaction graph: {graph.num_users} users, {graph.num_items} items, "
          f"{graph.num_interactions} edges, edge_index {tuple(edge_index.shape)}, {graph.n_excluded} excluded")
    print(f"attribute graph: {len(attribute_graph)} rows, {len(attribute_graph.relations)} relations")
    figures = {
        "interactions": n_rows,
        "edges": graph.num_interactions,
        "interactions_per_s": round(n_rows / t_interactions),
        "interaction_graph_build_s": round(t_interactions, 3),
        "interactions_per_cpu_s": round(n_rows / cpu_interactions),
        "interaction_graph_build_cpu_s": round(cpu_interactions, 3),
        "attribute_rows": len(attributes),
        "attribute_rows_per_s": round(len(attributes) / (t_attr_table + t_attr_index)),
        "attribute_table_build_s": round(t_attr_table, 3),
        "attribute_index_build_s": round(t_attr_index, 3),
        "save_s": round(t_save, 3),
        "load_interaction_graph_s": round(t_load, 3),
        "build_total_s": round(t_interactions + t_attr_table + t_attr_index + t_save, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "interaction_build_repeats": args.repeats,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
