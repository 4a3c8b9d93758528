"""rerec prune-checkpoints: stale run folders go, folders written to recently stay (by their newest file)."""

import os
import time

import pytest

from rerec.errors import ConfigError
from rerec.pipeline.checkpoints import newest_mtime, prune, stale_run_folders

DAY = 86400


def test_a_folder_is_as_old_as_its_newest_file(tmp_path):
    now = time.time()
    old, live = tmp_path / "run-old", tmp_path / "run-live"
    for run in (old, live):
        (run / "rft" / "model" / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    deep = live / "rft" / "model" / "checkpoints" / "checkpoint-10" / "optimizer.pt"
    deep.write_bytes(b"x")
    for path in [*old.rglob("*"), old, live, *[p for p in live.rglob("*") if p != deep]]:
        os.utime(path, (now - 10 * DAY, now - 10 * DAY))  # the run folder itself looks old in both
    assert newest_mtime(live) == pytest.approx(deep.stat().st_mtime)
    assert stale_run_folders(tmp_path, 7 * DAY, now=now) == [old]
    (tmp_path / "stray-file").write_text("not a run")
    result = prune(tmp_path, 7)
    assert result["removed"] == ["run-old"] and result["kept"] == 1 and not old.exists() and deep.exists()
    assert (tmp_path / "stray-file").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="must be > 0"):
        prune(tmp_path, 0)
    with pytest.raises(ConfigError, match="not a folder"):
        prune(tmp_path / "missing", 7)
    assert prune(tmp_path, 7, dry_run=True) == {"removed": [], "kept": None, "dry_run": True}
