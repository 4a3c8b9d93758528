"""``rerec prune-checkpoints``: remove what failed pipeline runs left on the RFT checkpoint volume.

The rft steps work under ``<root>/<kfp run id>/<arm>/`` on the volume and remove that folder when they
finish; a run that failed and was never retried leaves its checkpoints behind. A run folder is stale
when nothing under it was written for ``older_than_days`` (the newest modification time of any file or
folder in it, not the folder's own time, which a long run leaves unchanged while it writes deeper down).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from rerec.errors import ConfigError


def newest_mtime(folder: Path) -> float:
    """The latest modification time of ``folder`` or anything under it (seconds since the epoch)."""
    newest = folder.stat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:  # removed while we walked: a live writer
                return time.time()
    return newest


def stale_run_folders(root: Path, older_than_s: float, now: float | None = None) -> list[Path]:
    """Run folders directly under ``root`` whose newest write is more than ``older_than_s`` ago."""
    now = time.time() if now is None else now
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder. Fix: pass the checkpoint volume's mount path (--root).")
    return sorted(p for p in root.iterdir() if p.is_dir() and now - newest_mtime(p) > older_than_s)


def prune(root: Path, older_than_days: float, dry_run: bool = False) -> dict:
    """Delete the stale run folders; returns {"removed": [...], "kept": n}."""
    if older_than_days <= 0:
        raise ConfigError(f"--older-than-days must be > 0, got {older_than_days}. Fix: e.g. 7.")
    stale = stale_run_folders(Path(root), older_than_days * 86400)
    if not dry_run:
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
    kept = sum(1 for p in Path(root).iterdir() if p.is_dir()) if not dry_run else None
    return {"removed": [p.name for p in stale], "kept": kept, "dry_run": dry_run}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="The checkpoint volume's mount path.")
    parser.add_argument("--older-than-days", type=float, default=7.0,
                        help="Remove run folders with no write for this many days (default: %(default)s).")
    parser.add_argument("--dry-run", action="store_true", help="Only list what would be removed.")


def cli_main(args: argparse.Namespace) -> int:
    print(json.dumps(prune(args.root, args.older_than_days, args.dry_run)))
    return 0
