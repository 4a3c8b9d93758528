"""Extract the protobuf descriptors of a KFP backend's API from its published wheels.

    python tests/schemas/kfp/vendor.py 2.15.0          # writes tests/schemas/kfp/2.15.0/*.desc + provenance.json
    python tests/schemas/kfp/vendor.py 2.15.0 --check  # downloads again and compares

The KFP backend parses an uploaded pipeline's spec and every executor's Kubernetes config with the
protos it was built from (``protojson``, unknown fields rejected). ``kfp-pipeline-spec`` and
``kfp-kubernetes`` of the same version carry those protos as generated ``*_pb2.py`` modules; this keeps
only the serialized ``FileDescriptorProto`` each one registers (the bytes literal passed to
``AddSerializedFile``), so the tests can build the message classes in a private descriptor pool, beside
the installed (newer) kfp, without importing old code. ``provenance.json`` records each wheel's sha256 (as
PyPI publishes it) and each descriptor's sha256.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (distribution, module inside its wheel, descriptor file written here)
MODULES = (
    ("kfp-pipeline-spec", "kfp/pipeline_spec/pipeline_spec_pb2.py", "pipeline_spec.desc"),
    ("kfp-kubernetes", "kfp/kubernetes/kubernetes_executor_config_pb2.py", "kubernetes_executor_config.desc"),
)


def serialized_descriptor(source: str) -> bytes:
    """The bytes literal passed to ``...AddSerializedFile(b'...')`` in a generated ``_pb2`` module."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, bytes)):
            return node.args[0].value
    raise SystemExit("no AddSerializedFile(b'...') call found")


def extract(version: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    record = {"version": version, "files": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for dist, member, name in MODULES:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "-d", tmp, f"{dist}=={version}"], check=True)
            (wheel,) = Path(tmp).glob(f"{dist.replace('-', '_')}-{version}-*.whl")
            with zipfile.ZipFile(wheel) as zf:
                data = serialized_descriptor(zf.read(member).decode("utf-8"))
            (out / name).write_bytes(data)
            record["files"][name] = {
                "distribution": f"{dist}=={version}", "wheel": wheel.name,
                "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "module": member,
                "sha256": hashlib.sha256(data).hexdigest()}
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", help="the KFP release, e.g. 2.15.0")
    parser.add_argument("--check", action="store_true", help="download again and compare with what is here")
    args = parser.parse_args(argv)
    target = HERE / args.version
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = extract(args.version, Path(tmp))
            kept = json.loads((target / "provenance.json").read_text(encoding="utf-8"))
            same = fresh == kept and all((Path(tmp) / n).read_bytes() == (target / n).read_bytes() for n in fresh["files"])
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1
    record = extract(args.version, target)
    (target / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
