"""prepare-data: validate and normalise a dataset, generate RecBench+-style queries, split them.

Input (--input DIR; default: the embedded MovieLens-100k with its Freebase knowledge graph):
  a folder of parquet tables  items.parquet, interactions.parquet, item_attributes.parquet,
                              optional users.parquet and queries.parquet
  or RecBole atomic files     NAME.item, NAME.inter, optional NAME.user, NAME.kg, NAME.link
  Bad input stops with a message naming the file, column, row and fix; nothing is written.

Output (--out DIR, written all at once; a failed run leaves nothing behind):
  items.parquet interactions.parquet item_attributes.parquet [users.parquet]
  queries.parquet   query_id, user_id, type (explicit|implicit|misinformed|interest), text,
                    conditions (JSON), positives, candidates, split (train|val|test), history,
                    n_conditions. Generated unless the input already has queries.parquet, which
                    is then kept as it is (splits included).
  stats.json        queries by type x number of conditions, candidates, split shares, table sizes,
                    relations, what loading normalised (normalisations) and the leakage audit
  manifest.json     row counts and sha256 of every file, the config, the seed and the normalisations

Unusual but valid input is normalised and every change is counted and logged (re-watches deduplicated,
genres split or decoded, control characters in titles replaced, relation names mapped; docs/data.md).
The written folder passes the same validation as every later stage before it replaces --out.

A statistics table by query type and number of conditions (like RecBench+'s) is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rerec.config import add_dataclass_arguments, dataclass_from_args
from rerec.data.kg_check import GraphAgreement, graph_agreement
from rerec.data.queries import QueryConfig, generate_queries
from rerec.data.schema import QUERY_TYPES, SPLITS, decode_conditions, parse_relation_map
from rerec.data.splits import audit_queries
from rerec.data.validate import require_pipeline_splits
from rerec.errors import ConfigError, InputError, RerecError
from rerec.io import atomic_dir, file_sha256, write_json
from rerec.tracking import stage_run

log = logging.getLogger(__name__)

STAGE = "prepare-data"


@dataclass
class PrepareConfig(QueryConfig):
    """Query generation (see :class:`rerec.data.queries.QueryConfig`), the train/val/test split and how
    the input's relation names map onto rerec's."""

    relation_map: list[str] = field(
        default_factory=list,
        metadata={"help": "Relation names of the input mapped onto rerec's, as FROM=TO pairs, e.g. "
                          "directedBy=director starring=actor. Freebase names (film.film.directed_by) are "
                          "mapped without it; see docs/data.md for the vocabulary."})
    train_fraction: float = field(default=0.8, metadata={"help": "Share of queries in the train split."})
    val_fraction: float = field(default=0.1, metadata={"help": "Share of queries in the validation split."})
    test_fraction: float = field(default=0.1, metadata={"help": "Share of queries in the test split."})
    kg_check: str = field(
        default="refuse",
        metadata={"help": "What to do with a knowledge graph that agrees with the item table no better than "
                          "chance (items sharing a director share genres and years no more often than random "
                          "items: the mark of a link file keyed by other ids): refuse it, or warn and go on.",
                  "choices": ["refuse", "warn"]})

    def __post_init__(self) -> None:
        super().__post_init__()
        fractions = self.fractions
        if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(f"train/val/test fractions {fractions} must be non-negative and sum to 1. "
                              "Fix: e.g. --train-fraction 0.8 --val-fraction 0.1 --test-fraction 0.1.")
        self.relation_mapping()  # refuse a malformed pair now, before any data is read

    def relation_mapping(self) -> dict[str, str]:
        return parse_relation_map(self.relation_map)

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (self.train_fraction, self.val_fraction, self.test_fraction)


def query_statistics(queries: pd.DataFrame) -> dict:
    """Per type: #queries, #queries by number of conditions (1-4), mean candidates, share by split."""
    n_conditions = (queries["n_conditions"] if "n_conditions" in queries
                    else queries["conditions"].map(lambda c: len(decode_conditions(c))))
    frame = pd.DataFrame({"type": queries["type"], "n_conditions": n_conditions.astype(int),
                          "n_candidates": queries["candidates"].map(len), "split": queries["split"]})
    by_type = {}
    for qtype in [*QUERY_TYPES, "all"]:
        part = frame if qtype == "all" else frame[frame["type"] == qtype]
        if part.empty and qtype != "all":
            continue
        by_type[qtype] = {
            "n_queries": len(part),
            "by_n_conditions": {str(k): int(v) for k, v in part["n_conditions"].value_counts().sort_index().items()},
            "avg_candidates": float(part["n_candidates"].mean()) if len(part) else 0.0,
            "split_share": {s: float((part["split"] == s).mean()) if len(part) else 0.0 for s in SPLITS},
        }
    return {"n_queries": len(frame), "by_type": by_type,
            "n_by_split": {s: int((frame["split"] == s).sum()) for s in SPLITS}}


def statistics_table(stats: dict):
    """The RecBench+-style table (rich): rows are query types, columns counts and shares."""
    from rich.table import Table

    table = Table(title="Queries by type and number of conditions (1-4); avg candidates; share by split")
    for name in ("type", "queries", "1", "2", "3", "4", "cand", "train", "val", "test"):
        table.add_column(name, justify="left" if name == "type" else "right", no_wrap=True)
    for qtype in [t for t in (*QUERY_TYPES, "all") if t in stats["by_type"]]:  # stats.json sorts its keys
        row = stats["by_type"][qtype]
        by_k = row["by_n_conditions"]
        extra = sum(v for k, v in by_k.items() if int(k) > 4)
        table.add_row(qtype, f"{row['n_queries']:,}",
                      *[f"{by_k.get(str(k), 0):,}" + (f" (+{extra} more)" if k == 4 and extra else "")
                        for k in (1, 2, 3, 4)],
                      f"{row['avg_candidates']:.1f}", *[f"{row['split_share'][s]:.1%}" for s in SPLITS],
                      end_section=qtype == QUERY_TYPES[-1])
    return table


def prepare_data(input_dir: Path | None, out_dir: Path, config: PrepareConfig | None = None, *,
                 progress: bool = True) -> dict:
    """Load and validate ``input_dir`` (``None``: embedded MovieLens-100k), generate and split the
    queries, and write the prepared folder ``out_dir`` atomically. Returns the stats and manifest.

    The written folder is loaded back with the validation every later stage applies before it replaces
    ``out_dir``; what loading normalised is listed under ``normalisations`` in stats.json and
    manifest.json, and the leakage rules' counts under ``audit``.
    """
    from rerec.data.load import load_catalog, save_catalog

    config = config or PrepareConfig()
    with stage_run(STAGE, config) as tracker:
        catalog = load_catalog(input_dir, relation_map=config.relation_mapping())
        agreement = check_graph(catalog, config.kg_check)
        if catalog.queries is not None:
            log.info("keeping the %d queries of the input", len(catalog.queries))
            skipped = {}
            queries = catalog.queries
            require_pipeline_splits(queries, str(Path(catalog.source or ".") / "queries.parquet"))
            generated = False
        else:
            queries = generate_queries(catalog, config, fractions=config.fractions, progress=progress)
            skipped = queries.attrs.get("skipped_types", {})
            generated = True
        catalog.queries = queries
        stats = query_statistics(queries)
        stats["tables"] = {name: len(getattr(catalog, name)) for name in
                           ("items", "interactions", "item_attributes", "users") if getattr(catalog, name) is not None}
        stats["n_users"] = int(catalog.interactions["user_id"].nunique())
        stats["queries_generated"] = generated
        if generated:
            stats["requested"] = {t: getattr(config, f"n_{t}") for t in QUERY_TYPES}
        stats["normalisations"] = catalog.meta.get("normalisations", [])
        stats["relations"] = {str(k): int(v) for k, v in
                              catalog.item_attributes["relation"].value_counts().sort_index().items()}
        stats["audit"] = audit_queries(queries, catalog.interactions)
        stats["kg_agreement"] = agreement.as_dict()
        stats["skipped_types"] = skipped
        if not generated and (stats["audit"]["heldout_in_history"] or stats["audit"]["negatives_in_user_items"]):
            log.warning("the input's queries break the leakage rules (kept as given): %s", stats["audit"])
        with atomic_dir(out_dir) as tmp:
            written = save_catalog(catalog, tmp)
            _check_reloads(tmp)
            write_json(tmp / "stats.json", stats)
            rows = {name: len(getattr(catalog, name)) for name in written}
            manifest = {
                "stage": STAGE,
                "source": catalog.source or "embedded MovieLens-100k",
                "seed": config.seed,
                "config": dataclasses.asdict(config),
                "queries_generated": generated,
                "normalisations": stats["normalisations"],
                "files": {path.name: {"rows": rows[name], "sha256": file_sha256(path)}
                          for name, path in sorted(written.items())},
            }
            manifest["files"]["stats.json"] = {"sha256": file_sha256(tmp / "stats.json")}
            write_json(tmp / "manifest.json", manifest)
        tracker.log_metrics({
            "n_queries": stats["n_queries"],
            **{f"n_queries_{t}": row["n_queries"] for t, row in stats["by_type"].items() if t != "all"},
            **{f"n_{s}": n for s, n in stats["n_by_split"].items()},
            **{f"n_{name}": n for name, n in stats["tables"].items()},
            **{f"audit_{k}": v for k, v in stats["audit"].items()},
        })
        tracker.log_artifact(Path(out_dir) / "stats.json")
        tracker.log_artifact(Path(out_dir) / "manifest.json")
    return {"stats": stats, "manifest": manifest, "out_dir": str(out_dir)}


def check_graph(catalog, action: str = "refuse") -> GraphAgreement:
    """Measure whether the knowledge graph describes the catalog's own items (:mod:`rerec.data.kg_check`),
    log the figure, and refuse (``action="refuse"``) a graph that agrees no better than chance."""
    agreement = graph_agreement(catalog.items, catalog.item_attributes, catalog.meta.get("kg_item_pairs"))
    log.info("%s", agreement.summary())
    if agreement.verdict == "at chance":
        message = (f"the knowledge graph does not describe this catalog's items ({agreement.summary()}): items "
                   "that share a graph entity (a director, an actor) share genres, years and title words no "
                   "more often than random items, which is what a link file keyed by another numbering gives")
        fix = ("check that the item ids of the link file (.link) or of item_attributes are this catalog's item "
               "ids (not, say, MovieLens global ids read as ML-100k ids) and translate them if not; or remove "
               "the graph files; or pass --kg-check warn to keep the graph anyway")
        if action == "refuse":
            raise InputError(message, file=catalog.meta.get("files", {}).get("link", "item_attributes"),
                             column="item_id", fix=fix)
        log.warning("%s. Kept because of --kg-check warn. Fix: %s", message, fix)
    return agreement


def _check_reloads(folder: Path) -> None:
    """Load the written folder as every later stage does; a failure here is a bug in prepare-data,
    reported as such (the atomic write then leaves nothing behind)."""
    from rerec.data.load import load_catalog

    try:
        load_catalog(folder)
    except InputError as exc:
        raise RerecError(f"prepare-data wrote a folder that fails its own validation ({exc}). This is a bug in "
                         "rerec; please report it with the input that caused it.") from None


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, default=None, metavar="DIR",
                        help="dataset folder (parquet tables or RecBole atomic files); "
                             "default: the embedded MovieLens-100k")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder for the prepared tables, queries, stats.json and manifest.json "
                             "(replaced atomically)")
    add_dataclass_arguments(parser, PrepareConfig, group="query generation and splits")


def cli_main(args: argparse.Namespace) -> int:
    from rich.console import Console

    config = dataclass_from_args(PrepareConfig, args)
    result = prepare_data(args.input, args.out, config)
    console = Console()
    if not console.is_terminal:  # logs and CI: do not cut the table at 80 columns
        console = Console(width=120)
    console.print(statistics_table(result["stats"]))
    for change in result["stats"]["normalisations"]:
        console.print(f"normalised {change['table']}: {change['change']} ({change['count']:,})", markup=False)
    console.print(GraphAgreement.from_dict(result["stats"]["kg_agreement"]).summary(), markup=False)
    for qtype, reason in result["stats"]["skipped_types"].items():
        console.print(f"skipped {qtype} queries: {reason}", markup=False)
    console.print(f"wrote {args.out} ({result['stats']['n_queries']:,} queries)")
    return 0
