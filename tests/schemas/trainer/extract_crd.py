"""Write the OpenAPI schema of a CRD version as JSON, descriptions dropped (they are most of its size).

    python tests/schemas/trainer/extract_crd.py CRD.yaml v1alpha1 OUT.json

For ``trainjob.trainer.kubeflow.org.v2.1.0.json``: ``charts/kubeflow-trainer/crds/trainer.kubeflow.org_trainjobs.yaml``
of https://github.com/kubeflow/trainer at tag v2.1.0 (commit 73c9bece741ce17d2124abda3ec6bfcf5b5b8e87), the
Trainer that the Kubeflow platform releases 1.11 and 26.03 install. The tests make it strict (an unknown field
is an error, as with ``kubectl apply --validate=strict``) where the schema does not say otherwise.
"""

import json
import sys
from pathlib import Path

import yaml


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(argv: list[str]) -> int:
    crd_path, version, out = argv
    crd = yaml.safe_load(Path(crd_path).read_text())
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strip(entry["schema"]["openAPIV3Schema"])
    Path(out).write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
