"""What the training stages read from a prepared data folder: the catalog as prompts show it and the
query rows of a split. sft-warmup and rft load their prompts through these; benches and experiments
that build the same prompts use them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rerec.errors import InputError
from rerec.prompt import CatalogView


def load_view_and_queries(data_dir: str | Path, graphs_dir: str | Path | None) -> tuple[CatalogView, Any]:
    """The catalog index (attributes from the graphs folder when given) and the queries table."""
    from rerec.data.load import load_catalog

    catalog = load_catalog(Path(data_dir))
    if catalog.queries is None or not len(catalog.queries):
        raise InputError("the data folder has no queries", file=str(Path(data_dir) / "queries.parquet"),
                         fix="run 'rerec prepare-data' first and pass its output folder as --data")
    graph = None
    if graphs_dir is not None:
        from rerec.graphs.attributes import ItemAttributeGraph

        graph = ItemAttributeGraph.load(graphs_dir)
    return CatalogView.from_catalog(catalog, graph), catalog.queries


def query_rows(queries: Any, split: str, limit: int = 0, seed: int = 0) -> list[dict]:
    """Queries of one split as dicts; ``limit`` takes a seeded sample stratified by type."""
    part = queries[queries["split"] == split]
    if limit and len(part) > limit:
        per_type = max(1, limit // max(part["type"].nunique(), 1))
        keep = [i for _, g in part.groupby("type", sort=True)
                for i in g.sample(min(len(g), per_type), random_state=seed).index]
        part = part.loc[keep]
    return [row._asdict() if hasattr(row, "_asdict") else dict(row) for row in part.to_dict("records")]
