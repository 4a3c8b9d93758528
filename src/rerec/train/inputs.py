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


def data_seed(data_dir: str | Path) -> int:
    """The seed ``prepare-data`` generated the queries with (its ``manifest.json``), 0 for a data folder
    without one."""
    import json

    manifest = Path(data_dir) / "manifest.json"
    if not manifest.is_file():
        return 0
    try:
        return int(json.loads(manifest.read_text(encoding="utf-8")).get("config", {}).get("seed", 0))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"the data folder's manifest cannot be read: {exc}", file=str(manifest),
                         fix="rerun 'rerec prepare-data' to write it again") from None


def query_rows(queries: Any, split: str, limit: int = 0, seed: int = 0) -> list[dict]:
    """Queries of one split as dicts; ``limit`` takes a seeded sample stratified by type."""
    part = queries[queries["split"] == split]
    if limit and len(part) > limit:
        per_type = max(1, limit // max(part["type"].nunique(), 1))
        keep = [i for _, g in part.groupby("type", sort=True)
                for i in g.sample(min(len(g), per_type), random_state=seed).index]
        part = part.loc[keep]
    return [row._asdict() if hasattr(row, "_asdict") else dict(row) for row in part.to_dict("records")]
