"""``rerec validate-data [DIR]``: check a dataset folder (parquet tables or RecBole atomic files) against the
data contract (``docs/data.md``) and print its table sizes and what loading normalised; writes nothing.

It loads the folder the way every stage does (:func:`rerec.data.load.load_catalog`, which runs the checks of
:mod:`rerec.data.validate`), so a folder it accepts is a folder prepare-data accepts.
"""

from __future__ import annotations

import argparse

from rerec.data.load import load_catalog
from rerec.data.schema import parse_relation_map


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", default=None,
                        help="dataset folder: parquet tables or RecBole atomic files "
                             "(default: the embedded MovieLens-100k)")
    parser.add_argument("--relation-map", nargs="*", default=[], metavar="FROM=TO",
                        help="relation names of the input mapped onto rerec's, as prepare-data takes them")


def cli_main(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.input, relation_map=parse_relation_map(args.relation_map))
    print(f"{catalog.source}: valid ({catalog.meta.get('format')})")
    for name in ("items", "interactions", "item_attributes", "users", "queries"):
        table = getattr(catalog, name)
        if table is not None:
            print(f"  {name:16s} {len(table):>9,d} rows")
    for change in catalog.meta.get("normalisations", []):
        print(f"  normalised {change['table']}: {change['change']} ({change['count']:,})")
    return 0
