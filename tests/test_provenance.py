import json
import subprocess

from rerec.experiments.provenance import ROOT, provenance


def test_provenance_names_the_command_commit_and_machine():
    rec = provenance(["experiments/ablation.py", "--seed", "3"])
    assert rec["command"].endswith("experiments/ablation.py --seed 3")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    assert rec["commit"] == head and len(head) == 40
    assert isinstance(rec["uncommitted_changes"], bool)
    assert rec["machine"]["cores_visible"] >= 1 and rec["machine"]["torch"]
    json.dumps(rec)  # a results file can hold it as is


def test_the_command_names_repository_paths_relative_to_it(tmp_path, monkeypatch):
    import sys

    from rerec.experiments.provenance import command_line, repo_relative

    monkeypatch.setattr(sys, "executable", str(ROOT / ".venv" / "bin" / "python"))
    argv = [str(ROOT / "experiments" / "ablation.py"), "--out", str(ROOT / "experiments" / "results" / "x"),
            f"--data={ROOT / 'data'}", "--graphs", str(tmp_path / "graphs"), "--seed", "3"]
    assert command_line(argv) == (f".venv/bin/python experiments/ablation.py --out experiments/results/x "
                                  f"--data=data --graphs {tmp_path / 'graphs'} --seed 3")  # outside: kept
    assert repo_relative("/elsewhere/a", root=tmp_path) == "/elsewhere/a"
    assert repo_relative(f"{tmp_path}/../{tmp_path.name}/b", root=tmp_path) == "b"


def test_results_written_under_results_folders_do_not_count_as_uncommitted_code():
    """A run writes its results into experiments/results or bench/results before they are committed; that
    must not mark the code it ran as changed (ablation_weights_test/pooled.json said so for that reason)."""
    import os

    from rerec.experiments.provenance import CODE_PATHS

    def status(*paths: str) -> str:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *paths],
                              capture_output=True, text=True, cwd=ROOT).stdout

    probe = ROOT / "experiments" / "results" / f"provenance-probe-{os.getpid()}.json"
    probe.write_text("{}")
    try:
        assert probe.name in status(str(probe.relative_to(ROOT)))  # git sees the new results file ...
        assert probe.name not in status(*CODE_PATHS)  # ... and the code check does not
    finally:
        probe.unlink()
    assert {"src", "bench", "experiments"} <= set(CODE_PATHS)
