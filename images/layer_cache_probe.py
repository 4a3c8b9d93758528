"""Which layers a README edit or a source edit rebuilds: the CPU Dockerfile built three times with
buildah's layer cache (``--layers``), in a scratch copy of the build context: as committed, after a
line is added to README.md, after a comment is added to src/rerec/__init__.py. Prints one JSON line
with each build's seconds and the Dockerfile steps it took from the cache; removes every image it
made. Needs what ``make image-cpu`` needs (run that first: it makes the base and the wheelhouse).

    python3 images/layer_cache_probe.py [--out bench/results/images_layer_cache.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402

ROOT = build.ROOT
CONTEXT_FILES = ["requirements", "pyproject.toml", "README.md", "src", ".dockerignore", "images/Dockerfile.cpu"]


def all_image_ids() -> set[str]:
    out = subprocess.run(build.BUILDAH + ["images", "--all", "--noheading", "--no-trunc", "--format", "{{.ID}}"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def cached_steps(log: str) -> list[str]:
    """The ``STEP n/N: INSTRUCTION`` lines that buildah answered with ``Using cache``."""
    steps, current = [], None
    for line in log.splitlines():
        if line.startswith("STEP "):
            current = line.split(": ", 1)[1][:60] if ": " in line else line
        elif "Using cache" in line and current:
            steps.append(current)
            current = None
    return steps


def bud(ctx: Path, tag: str, commit: str) -> dict:
    wheels = ROOT / "build" / "wheelhouse" / "cpu"
    cmd = build.BUILDAH + [
        "bud", "--isolation", "chroot", "--layers=true", "-f", "images/Dockerfile.cpu",
        "--build-arg", f"BASE_IMAGE={build.LOCAL_BASE}", "--build-arg", f"REREC_GIT_COMMIT={commit}",
        "-v", f"{wheels}:/tmp/wheels:ro", "-v", f"{wheels.parent / 'pip-cpu.conf'}:/opt/venv/pip.conf:ro",
        "-t", tag, ".",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ctx, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise build.BuildError(f"{tag}: buildah bud exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    steps = sum(1 for line in proc.stdout.splitlines() if line.startswith("STEP "))
    return {"tag": tag, "seconds": round(seconds, 1), "steps": steps, "cached": cached_steps(proc.stdout)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images/layer_cache_probe.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the JSON record here")
    args = parser.parse_args(argv)
    if not (ROOT / "build" / "wheelhouse" / "pip-cpu.conf").exists() or not build.image_exists(build.LOCAL_BASE):
        print("images/layer_cache_probe.py: run make image-cpu first (base image and wheelhouse)", file=sys.stderr)
        return 2
    commit = build.git_commit()
    before = all_image_ids()
    ctx = Path(tempfile.mkdtemp(prefix="rerec-cache-probe-", dir="/var/tmp"))
    builds = {}
    try:
        for name in CONTEXT_FILES:
            src, dst = ROOT / name, ctx / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(src, dst)
        builds["first"] = bud(ctx, "localhost/rerec-cache-probe:first", commit)
        with (ctx / "README.md").open("a") as f:
            f.write("\nA line added by the layer cache probe.\n")
        builds["readme_edit"] = bud(ctx, "localhost/rerec-cache-probe:readme", commit)
        with (ctx / "src" / "rerec" / "__init__.py").open("a") as f:
            f.write("# a line added by the layer cache probe\n")
        builds["source_edit"] = bud(ctx, "localhost/rerec-cache-probe:source", commit)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
        made = all_image_ids() - before
        for _ in range(3):  # children before parents: retry what a dependent image still held
            for image in sorted(made):
                if subprocess.run(build.BUILDAH + ["rmi", "-f", image], capture_output=True).returncode == 0:
                    made.discard(image)
    record = {
        "command": "python3 images/layer_cache_probe.py", "git_commit": commit,
        "machine": f"{platform.node()} {platform.machine()}, buildah {build.buildah_version()}, storage vfs",
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "builds": builds,
        "dependency_layer_kept_on_readme_edit": any(s.startswith("RUN python3.11 -m venv")
                                                    for s in builds["readme_edit"]["cached"]),
    }
    line = json.dumps(record)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
