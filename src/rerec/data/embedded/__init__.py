"""Tables that rerec derives for its embedded data set (ids only, never MovieLens content)."""

from pathlib import Path

# tools/align_ml100k_links.py writes it; rerec.data.load reads it for the embedded MovieLens-100k
LINK_IDS_FILE = Path(__file__).with_name("ml100k_link_ids.tsv")


def read_link_ids(path: Path = LINK_IDS_FILE):
    """The committed table (``link_id``, ``item_id``, ``tier``, ``score``), header comment skipped."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", comment="#", dtype=str)


def realign_links(link):
    """RecBole's ``ml-100k.link`` (``item_id`` holding MovieLens global ids) onto ML-100k item ids.

    Each link whose global id was aligned to an ML-100k film by title and year
    (tools/align_ml100k_links.py) gets that film's item id (both ids where ML-100k lists the film twice);
    the others are dropped, never guessed. Returns the realigned link table and its counts.
    """
    table = read_link_ids()[["link_id", "item_id"]]
    realigned = link.rename(columns={"item_id": "link_id"}).merge(table, on="link_id")
    realigned = realigned.drop(columns="link_id")[list(link.columns)].reset_index(drop=True)
    dropped = int((~link["item_id"].isin(table["link_id"])).sum())
    return realigned, {"links": len(link), "aligned": len(link) - dropped, "dropped": dropped,
                       "items_linked": int(realigned["item_id"].nunique())}
