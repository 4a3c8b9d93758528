"""``python -m pipelines.compile [--out DIR]``: write the IR YAML of every pipeline, deterministically.

Checked in under ``pipelines/``; ``tests/test_pipeline_compile.py`` recompiles into a temporary folder
and fails when the checked-in YAML has drifted from the Python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kfp import compiler

from pipelines.options import ClusterOptions
from pipelines.retrain import make_retrain_pipeline
from pipelines.train import make_train_pipeline

HERE = Path(__file__).resolve().parent

PIPELINES = {
    "train.yaml": lambda: make_train_pipeline(ClusterOptions()),
    "train_multinode.yaml": lambda: make_train_pipeline(ClusterOptions().multinode(2)),
    "retrain.yaml": lambda: make_retrain_pipeline(ClusterOptions()),
}


def compile_all(out_dir: Path = HERE) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in PIPELINES.items():
        path = out_dir / name
        compiler.Compiler().compile(build(), package_path=str(path))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the YAML (default: pipelines/)")
    args = parser.parse_args(argv)
    for path in compile_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
