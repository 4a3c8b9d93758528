"""Derive src/rerec/data/embedded/ml100k_link_ids.tsv: which ML-100k item each link of RecBole's
``ml-100k.link`` belongs to.

RecBole's link file keys its Freebase entities by MovieLens *global* movie ids (the numbering of ML-1M
and ml-latest), not by ML-100k item ids. This script translates each global id to a title and year
through ml-latest-small's movie table, as Debian's ``r-cran-dslabs`` package carries it (the
``movielens`` data set), and matches that title and year against ML-100k's item table
(:func:`rerec.data.title_match.align_films`). The output holds ids, tiers and scores only: no title,
rating or other MovieLens content.

Run it once when the sources change (a maintainer's tool; ``make run`` reads only the committed table):

    apt-get download r-cran-dslabs        # the .deb, without installing R
    .venv/bin/pip install rdata==1.1.0    # reads R's lazy-load database
    .venv/bin/python tools/align_ml100k_links.py --dslabs-deb r-cran-dslabs_0.7.4-1_all.deb

``--report FILE`` also writes every fuzzy match with both titles, for a person to check (kept out of the
repository: it holds titles).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rerec.data.embedded import LINK_IDS_FILE  # noqa: E402
from rerec.data.load import EMBEDDED_ITEM_FIXES  # noqa: E402
from rerec.data.title_match import Film, align_films  # noqa: E402
from rerec.experiments.provenance import provenance  # noqa: E402
from rerec.paths import movielens_100k_dir  # noqa: E402


def read_dslabs_movies(deb: Path) -> pd.DataFrame:
    """movieId, title, year of dslabs' ``movielens`` (ml-latest-small's movies with a rating)."""
    import rdata

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        data = Path(tmp) / "usr/lib/R/site-library/dslabs/data"
        index = rdata.read_rds(data / "Rdata.rdx")
        offset, length = (int(x) for x in index["variables"]["movielens"])
        blob = (data / "Rdata.rdb").read_bytes()[offset:offset + length]
    # a lazy-load entry: 4 bytes of uncompressed length, then a zlib stream of R's serialisation
    frame = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(blob[4:])))
    movies = frame[["movieId", "title", "year"]].drop_duplicates("movieId")
    return movies.assign(movieId=movies["movieId"].astype(int).astype(str))


def read_ml100k_items() -> pd.DataFrame:
    items = pd.read_csv(movielens_100k_dir() / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    items.columns = [c.split(":")[0] for c in items.columns]
    for item_id, fix in EMBEDDED_ITEM_FIXES.items():
        for column, value in fix.items():
            items.loc[items["item_id"] == item_id, column] = value
    return items


def _year(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dslabs-deb", type=Path, required=True, help="r-cran-dslabs .deb (apt-get download)")
    parser.add_argument("--out", type=Path, default=LINK_IDS_FILE)
    parser.add_argument("--report", type=Path, default=None, help="fuzzy and off-by-one matches with titles")
    args = parser.parse_args(argv)

    link = pd.read_csv(movielens_100k_dir() / "ml-100k.link", sep="\t", dtype=str)
    link.columns = [c.split(":")[0] for c in link.columns]
    movies = read_dslabs_movies(args.dslabs_deb).set_index("movieId")
    items = read_ml100k_items()

    known = link[link["item_id"].isin(movies.index)]
    source = [Film(g, str(movies.at[g, "title"]), _year(movies.at[g, "year"])) for g in known["item_id"]]
    target = [Film(r.item_id, r.movie_title, _year(r.release_year)) for r in items.itertuples()]
    alignment = align_films(source, target)

    rows = [(m.source_id, item, m.tier, m.score) for m in alignment.matches for item in m.target_ids]
    table = pd.DataFrame(rows, columns=["link_id", "item_id", "tier", "score"])
    table = table.sort_values(["link_id", "item_id"], key=lambda s: s.astype(int) if s.name != "tier" else s)
    counts = {"links": len(link), "links_with_a_title": len(known), **alignment.counts(),
              "items_linked": int(table["item_id"].nunique())}
    record = provenance(argv)
    record["command"] = " ".join(["python", "tools/align_ml100k_links.py", *(argv or sys.argv[1:])])
    header = {
        "what": "MovieLens global movie id of RecBole's ml-100k.link -> ML-100k item id",
        "sources": {"dslabs_deb": args.dslabs_deb.name, "dslabs_deb_sha256": _sha256(args.dslabs_deb),
                    "recbole_ml100k_link_sha256": _sha256(movielens_100k_dir() / "ml-100k.link"),
                    "recbole_ml100k_item_sha256": _sha256(movielens_100k_dir() / "ml-100k.item")},
        "counts": counts, "command": record["command"], "commit": record["commit"],
        "uncommitted_changes": record["uncommitted_changes"], "started": record["started"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as fh:
        fh.write(f"# {json.dumps(header, sort_keys=True)}\n")
        table.to_csv(fh, sep="\t", index=False)
    print(json.dumps(counts))
    if args.report:
        titles = items.set_index("item_id")["movie_title"]
        lines = [f"{m.tier}\t{m.score}\t{m.source_id}\t{movies.at[m.source_id, 'title']} "
                 f"({_year(movies.at[m.source_id, 'year'])})\t->\t"
                 + "; ".join(f"{t} {titles[t]}" for t in m.target_ids)
                 for m in alignment.matches if m.tier != "exact"]
        args.report.write_text("\n".join(sorted(lines)) + "\n")
    return 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


if __name__ == "__main__":
    raise SystemExit(main())
