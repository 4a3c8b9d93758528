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
