"""Atomic outputs under real faults: a stage SIGKILLed mid-write, a full disk (a real EFBIG from
RLIMIT_FSIZE in a child process, and injected ENOSPC), stale temp folders, a crash mid-swap."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from rerec import io as rio
from rerec.cli import main
from rerec.errors import RerecError
from rerec.io import atomic_dir, atomic_save_torch, atomic_write_text, clean_stale, tree_sha256

PYTHON = sys.executable
ENV = {**os.environ, "REREC_TRACKING": "off", "OMP_NUM_THREADS": "1"}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def write_folder(out: Path, content: dict[str, str]) -> None:
    with atomic_dir(out) as tmp:
        for name, text in content.items():
            (tmp / name).write_text(text)


# ---------------------------------------------------------------------------- basics
def test_success_replaces_previous_and_rerun_is_byte_identical(tmp_path):
    out = tmp_path / "out"
    write_folder(out, {"a.txt": "old", "stale.txt": "only in the old output"})
    write_folder(out, {"a.txt": "new", "b.txt": "b"})
    first = tree_sha256(out)
    assert sorted(first) == ["a.txt", "b.txt"]  # replaced as a whole, not merged
    write_folder(out, {"a.txt": "new", "b.txt": "b"})
    assert tree_sha256(out) == first
    assert hidden(tmp_path) == []
    assert oct(out.stat().st_mode & 0o777) == "0o755"


def test_failure_keeps_previous_output_and_leaves_no_temp(tmp_path):
    out = tmp_path / "out"
    write_folder(out, {"a.txt": "old"})
    with pytest.raises(ValueError), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise ValueError("boom")
    assert (out / "a.txt").read_text() == "old"
    assert hidden(tmp_path) == []


# ---------------------------------------------------------------------------- killed mid-write
def tiny_data(path: Path) -> Path:
    path.mkdir(parents=True)
    items = [f"i{k}" for k in range(6)]
    pd.DataFrame({"item_id": items, "title": [f"Movie {k}" for k in range(6)]}).to_parquet(path / "items.parquet")
    pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"],
                  "item_id": ["i0", "i1", "i1", "i2", "i3", "i4"]}).to_parquet(path / "interactions.parquet")
    pd.DataFrame({"item_id": items, "relation": "genre",
                  "entity": ["a", "a", "b", "b", "c", "c"]}).to_parquet(path / "item_attributes.parquet")
    return path


# The child runs the real build-graphs stage, but stops inside atomic_dir once the graphs are written
# (just before the manifest) and waits to be killed.
KILLED_CHILD = textwrap.dedent("""
    import sys, time
    import rerec.graphs.build as build
    real = build.write_json
    def write_then_hang(path, obj):
        print("WRITING", path, flush=True)
        time.sleep(600)
    build.write_json = write_then_hang
    build.build_graphs(sys.argv[1], sys.argv[2])
""")


def run_killed_stage(data: Path, out: Path) -> None:
    proc = subprocess.Popen([PYTHON, "-c", KILLED_CHILD, str(data), str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("WRITING"), proc.stderr.read()
        partial = Path(line.split()[1]).parent
        assert partial.parent == out.parent and partial.name.startswith(f".{out.name}.tmp-")
        assert (partial / "interaction_graph.pt").exists()  # the stage really was mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_stage_killed_mid_write_leaves_nothing_visible_and_rerun_is_idempotent(tmp_path):
    data, out = tiny_data(tmp_path / "data"), tmp_path / "graphs"
    run_killed_stage(data, out)
    assert not out.exists()
    assert visible(tmp_path) == ["data"]  # no partial output under a real name
    assert len(hidden(tmp_path)) == 1  # the killed run's hidden temp folder

    assert main(["build-graphs", "--data", str(data), "--out", str(out)]) == 0
    assert hidden(tmp_path) == []  # the rerun removed the stale temp folder
    first = tree_sha256(out)
    assert main(["build-graphs", "--data", str(data), "--out", str(out)]) == 0
    second = tree_sha256(out)
    # Same bytes for every output; the manifest differs only by its wall-clock "seconds".
    assert {k: v for k, v in first.items() if k != "manifest.json"} == \
           {k: v for k, v in second.items() if k != "manifest.json"}
    import json

    m1 = json.loads((out / "manifest.json").read_text())
    assert set(first) == {"interaction_graph.pt", "item_attribute_graph.parquet", "item_attribute_graph.json",
                          "manifest.json"}
    assert m1["outputs"] == {k: v for k, v in second.items() if k in m1["outputs"]}


@pytest.mark.slow
def test_stage_killed_while_replacing_keeps_previous_output(tmp_path):
    data, out = tiny_data(tmp_path / "data"), tmp_path / "graphs"
    assert main(["build-graphs", "--data", str(data), "--out", str(out)]) == 0
    before = tree_sha256(out)
    run_killed_stage(data, out)
    assert tree_sha256(out) == before  # the previous output is untouched by the killed rerun


def test_kill_between_the_two_renames_is_repaired(tmp_path):
    out = tmp_path / "out"
    write_folder(out, {"a.txt": "previous"})
    # Simulate the window of a killed swap: the old output moved aside by a dead process, no new one.
    dead = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = tmp_path / f".out.old-{int(dead.stdout)}@{rio._HOST}-x1"
    os.replace(out, aside)
    assert not out.exists()
    clean_stale(out)
    assert (out / "a.txt").read_text() == "previous"
    assert hidden(tmp_path) == []


def test_stale_temp_folders_cleaned_but_live_writers_kept(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".out.tmp-{int(dead.stdout)}@{rio._HOST}-abc"
        legacy = tmp_path / ".out.tmp-k3j4l5"  # name from an older rerec: judged by age
        foreign_new = tmp_path / ".out.tmp-12@otherpod-zz"  # another pod, recent: may be writing
        running = tmp_path / f".out.tmp-{live.pid}@{rio._HOST}-def"
        other_output = tmp_path / f".outer.tmp-{int(dead.stdout)}@{rio._HOST}-q"  # not ours to judge
        for p in (stale, legacy, foreign_new, running, other_output):
            p.mkdir()
            (p / "partial.bin").write_bytes(b"x" * 10)
        old_time = time.time() - rio.STALE_FOREIGN_TMP_S - 60
        os.utime(legacy, (old_time, old_time))
        write_folder(out, {"a.txt": "a"})
        assert not stale.exists() and not legacy.exists()
        assert foreign_new.exists() and running.exists() and other_output.exists()
    finally:
        live.kill()
        live.wait()


# ---------------------------------------------------------------------------- disk full
# The child gets a real file-size limit: writes beyond it fail with EFBIG, as a full volume fails with
# ENOSPC (SIGXFSZ is ignored so that the write returns the error instead of killing the process).
FULL_DISK_CHILD = textwrap.dedent("""
    import resource, signal, sys
    import torch
    from rerec.errors import RerecError
    from rerec.io import atomic_dir, atomic_save_torch
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    what, target = sys.argv[1], sys.argv[2]
    big = {"step": 2, "weights": torch.ones(200_000)}  # ~800 kB, more than the limit
    try:
        if what == "checkpoint":
            atomic_save_torch(big, target)
        else:
            with atomic_dir(target) as tmp:
                (tmp / "metrics.json").write_text("{}")
                if what == "folder-torch-file":
                    with open(tmp / "model.pt", "wb") as f:  # torch.save to a file object keeps the errno
                        torch.save(big, f)
                else:
                    atomic_save_torch(big, tmp / "model.pt")
    except RerecError as exc:
        print("REFUSED", exc)
        sys.exit(3)
""")


def test_disk_full_while_checkpointing_keeps_previous_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    atomic_save_torch({"step": 1, "weights": torch.arange(10.0)}, ckpt)
    before = ckpt.read_bytes()
    proc = subprocess.run([PYTHON, "-c", FULL_DISK_CHILD, "checkpoint", str(ckpt)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "No space left while writing" in proc.stdout and "Fix:" in proc.stdout
    assert "previous file is unchanged" in proc.stdout
    assert ckpt.read_bytes() == before
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.arange(10.0))
    assert hidden(tmp_path) == []


@pytest.mark.parametrize("how", [pytest.param("folder-torch-file", marks=pytest.mark.slow), "folder-atomic-save"])
def test_disk_full_while_writing_a_stage_output_keeps_previous_output(tmp_path, how):
    out = tmp_path / "model"
    write_folder(out, {"metrics.json": '{"previous": true}'})
    proc = subprocess.run([PYTHON, "-c", FULL_DISK_CHILD, how, str(out)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert f"No space left while writing {out} " in proc.stdout and "previous output is unchanged" in proc.stdout
    assert tree_sha256(out) == {"metrics.json": rio.file_sha256(out / "metrics.json")}
    assert (out / "metrics.json").read_text() == '{"previous": true}'
    assert hidden(tmp_path) == []


def test_injected_enospc_in_a_stage_gives_a_clear_cli_error(tmp_path, monkeypatch, capsys):
    from rerec.graphs import interaction

    data, out = tiny_data(tmp_path / "data"), tmp_path / "graphs"
    assert main(["build-graphs", "--data", str(data), "--out", str(out)]) == 0
    before = tree_sha256(out)

    def save_then_disk_full(self, path):
        (Path(path) / "interaction_graph.pt").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(interaction.InteractionGraph, "save", save_then_disk_full)
    assert main(["build-graphs", "--data", str(data), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "No space left while writing" in err and "Fix:" in err and "Traceback" not in err
    assert tree_sha256(out) == before
    assert hidden(tmp_path) == []


def test_atomic_file_interrupted_write_keeps_previous_text(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "previous")

    def failing_fsync(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(rio.os, "fsync", failing_fsync)
    with pytest.raises(RerecError, match="quota"):
        atomic_write_text(path, "new content that never lands")
    assert path.read_text() == "previous"
    assert hidden(tmp_path) == []


def test_atomic_save_torch_round_trip_and_overwrite(tmp_path):
    path = tmp_path / "ckpt" / "state.pt"
    atomic_save_torch({"w": torch.ones(3)}, path)
    atomic_save_torch({"w": torch.zeros(3), "step": 7}, path)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 7 and torch.equal(state["w"], torch.zeros(3))
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert hidden(path.parent) == []


def test_opaque_torch_write_error_on_a_full_volume_is_reported_as_disk_full(tmp_path, monkeypatch):
    """torch.save to a path loses the errno; with the volume full, atomic_dir still says so."""
    out = tmp_path / "reward"
    write_folder(out, {"metrics.json": "{}"})
    usage = type("Usage", (), {"total": 10 << 30, "used": 10 << 30, "free": 1 << 20})
    monkeypatch.setattr(rio.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(RerecError, match="No space left.*previous output is unchanged"), atomic_dir(out) as tmp:
        (tmp / "item_embeddings.pt").write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662")
    assert (out / "metrics.json").read_text() == "{}"
    # with room left the same error is not disguised as a full disk
    usage.free = 50 << 30
    with pytest.raises(RuntimeError, match="unexpected pos"), atomic_dir(out) as tmp:
        raise RuntimeError("unexpected pos 768 vs 662")
    assert hidden(tmp_path) == []
