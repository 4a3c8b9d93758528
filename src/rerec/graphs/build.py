"""rerec build-graphs: the user–item interaction graph and the item–attribute graph.

Input (--data): a folder written by 'rerec prepare-data' with
  interactions.parquet      user_id, item_id[, rating, timestamp]
  item_attributes.parquet   item_id, relation, entity
  items.parquet             item_id, ... (every catalog item gets a node, even without interactions)
  queries.parquet           optional; the (user_id, positive) pairs of its val and test queries are
                            left out of the interaction graph (leakage rule)

Output (--out), written atomically:
  interaction_graph.pt          users 0..U-1, items U..U+I-1, edges both ways, CSR (rerec.graphs.interaction)
  item_attribute_graph.parquet  the item -> (relation, entity) table (rerec.graphs.attributes)
  item_attribute_graph.json     its relations and counts
  manifest.json                 counts, sha256 of every input and output; later stages call
                                verify_manifest() on it
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from rerec.config import add_dataclass_arguments, dataclass_from_args
from rerec.errors import ConfigError, InputError, RerecError
from rerec.io import atomic_dir, file_sha256, write_json
from rerec.tracking import stage_run

from .attributes import META_FILE, TABLE_FILE, ItemAttributeGraph
from .interaction import GRAPH_FILE, InteractionGraph

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
STAGE = "build-graphs"


@dataclass
class GraphConfig:
    """Options of the build-graphs stage."""

    exclude_splits: list[str] = field(
        default_factory=lambda: ["val", "test"],
        metadata={"help": "Query splits whose (user_id, positive) pairs are left out of the interaction "
                          "graph, so LightGCN and the baselines never see what is evaluated."},
    )
    min_rating: float | None = field(
        default=None,
        metadata={"help": "Keep only interactions rated at least this; unset keeps every interaction "
                          "(implicit feedback, as LightGCN is usually trained)."},
    )
    include_all_items: bool = field(
        default=True,
        metadata={"help": "Give every item of items.parquet a node, also those without interactions, "
                          "so every candidate has an embedding."},
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.exclude_splits) - {"train", "val", "test"})
        if unknown:
            raise ConfigError(f"exclude_splits: unknown split(s) {', '.join(unknown)}. "
                              "Fix: use val and/or test (train pairs are what the graph is for).")


def _read_table(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError("file not found", file=str(path),
                         fix="point --data to a folder written by 'rerec prepare-data'")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:
        raise InputError(f"cannot read it as parquet ({exc})", file=str(path),
                         fix="rewrite it with 'rerec prepare-data'") from None
    for column in required:
        if column not in table.columns:
            raise InputError("required column is missing", file=str(path), column=column,
                             fix=f"the table needs the columns {', '.join(required)}")
    return table


def excluded_pairs(queries: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    """The (user_id, item_id) pairs of the positives of queries in ``splits`` (leakage rule)."""
    chosen = queries[queries["split"].isin(splits)]
    pairs = chosen[["user_id", "positives"]].explode("positives").dropna()
    return pd.DataFrame({"user_id": pairs["user_id"].astype(str).to_numpy(),
                         "item_id": pairs["positives"].astype(str).to_numpy()}).drop_duplicates()


def build_graphs(data_dir: str | Path, out_dir: str | Path, config: GraphConfig | None = None) -> dict:
    """Build both graphs from a prepared data folder into ``out_dir``; returns the manifest."""
    config = config or GraphConfig()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise InputError("the data folder does not exist", file=str(data_dir),
                         fix="run 'rerec prepare-data --out DIR' first and pass that DIR as --data")
    with stage_run(STAGE, config) as tracker:
        started = time.perf_counter()
        inputs = {"interactions.parquet": ["user_id", "item_id"],
                  "item_attributes.parquet": ["item_id", "relation", "entity"],
                  "items.parquet": ["item_id"]}
        if (data_dir / "queries.parquet").is_file():
            inputs["queries.parquet"] = ["user_id", "positives", "split"]
        tables = {name: _read_table(data_dir / name, cols) for name, cols in inputs.items()}

        exclude = None
        if "queries.parquet" in tables:
            exclude = excluded_pairs(tables["queries.parquet"], config.exclude_splits)
        else:
            log.warning("%s has no queries.parquet: nothing to exclude from the interaction graph", data_dir)
        interaction_graph = InteractionGraph.from_interactions(
            tables["interactions.parquet"],
            exclude_pairs=exclude,
            item_ids=tables["items.parquet"]["item_id"].astype(str) if config.include_all_items else None,
            min_rating=config.min_rating,
        )
        attribute_graph = ItemAttributeGraph(tables["item_attributes.parquet"])
        attribute_counts = attribute_graph.counts()
        counts = {
            "users": interaction_graph.num_users,
            "items": interaction_graph.num_items,
            "interactions_in": len(tables["interactions.parquet"]),
            "edges": interaction_graph.num_interactions,
            "directed_edges": 2 * interaction_graph.num_interactions,
            "excluded_pairs": 0 if exclude is None else len(exclude),
            "excluded_interactions": interaction_graph.n_excluded,
            "attribute_rows": attribute_counts["rows"],
            "attribute_items": attribute_counts["items"],
            "relations": attribute_counts["relations"],
            "entities": attribute_counts["entities"],
        }
        with atomic_dir(out_dir) as tmp:
            interaction_graph.save(tmp)
            attribute_graph.save(tmp)
            manifest = {
                "stage": STAGE,
                "format_version": 1,
                "config": asdict(config),
                "counts": counts,
                "rows_per_relation": attribute_counts["rows_per_relation"],
                "inputs": {name: file_sha256(data_dir / name) for name in sorted(inputs)},
                "outputs": {name: file_sha256(tmp / name) for name in (GRAPH_FILE, TABLE_FILE, META_FILE)},
                "seconds": round(time.perf_counter() - started, 3),
            }
            write_json(tmp / MANIFEST_FILE, manifest)
        tracker.log_metrics({f"n_{k}": v for k, v in counts.items()})
        tracker.log_metrics({"build_seconds": manifest["seconds"]})
        tracker.log_dict(manifest, "manifest.json")
    return manifest


def verify_manifest(graphs_dir: str | Path) -> dict:
    """Check every output listed in ``graphs_dir/manifest.json`` against its sha256; return the manifest.

    Raises :class:`RerecError` naming the first missing or changed file.
    """
    graphs_dir = Path(graphs_dir)
    path = graphs_dir / MANIFEST_FILE
    if not path.is_file():
        raise RerecError(f"{path}: no graph manifest. Fix: point to a folder written by 'rerec build-graphs'.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        outputs = dict(manifest["outputs"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RerecError(f"{path}: unreadable graph manifest ({exc}). Fix: rerun 'rerec build-graphs'.") from None
    for name, expected in sorted(outputs.items()):
        file = graphs_dir / name
        if not file.is_file():
            raise RerecError(f"{file}: listed in the graph manifest but missing. "
                             "Fix: rerun 'rerec build-graphs' into this folder.")
        actual = file_sha256(file)
        if actual != expected:
            raise RerecError(f"{file}: sha256 {actual[:12]}… does not match the manifest ({expected[:12]}…); "
                             "the file changed after build-graphs wrote it. Fix: rerun 'rerec build-graphs'.")
    return manifest


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="prepared data folder (items, interactions, item_attributes[, queries] parquet)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the graphs and manifest")
    add_dataclass_arguments(parser, GraphConfig)


def cli_main(args: argparse.Namespace) -> int:
    manifest = build_graphs(args.data, args.out, dataclass_from_args(GraphConfig, args))
    c = manifest["counts"]
    print(f"interaction graph: {c['users']} users, {c['items']} items, {c['edges']} edges "
          f"({c['excluded_interactions']} interactions excluded for {c['excluded_pairs']} val/test pairs)")
    print(f"item-attribute graph: {c['attribute_rows']} rows, {c['relations']} relations, {c['entities']} entities")
    print(f"written to {args.out} in {manifest['seconds']:.2f} s")
    return 0
