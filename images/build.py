"""Build the rerec images on this machine with buildah, and record their digests.

    python3 images/build.py cpu|cuda|all [--base IMAGE]

For machines that reach Debian's archive and PyPI but no container registry (and have no Docker
engine): the base comes from ``images/base.sh`` (debootstrap of Debian bookworm with python3.11,
imported as ``localhost/rerec-base:bookworm-python3.11``) unless ``--base`` names another image, and
the wheels come from this machine's pip setup (its index, mirrors and local wheel folder, e.g. the
CPU build of torch) through a wheelhouse under ``build/wheelhouse/<flavor>`` that the build mounts
read-only with a pip config that turns the index off. The Dockerfiles stay the ones a normal registry
setup builds.

``buildah --storage-driver vfs bud --isolation chroot`` builds one layer on top of the base: vfs keeps
a full copy of the root filesystem per layer, and buildah 1.28's layer cache (``--layers``) commits
one per instruction, metadata included (a full copy of the image per instruction). The tag is
``ghcr.io/rerec/rerec:<version>-<flavor>``; the image's digest, size, commit and build time go to
``images/digests.json`` (see ``images/digests.py``) with ``pushed: false``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUILDAH = ["buildah", "--storage-driver", "vfs"]
LOCAL_BASE = "localhost/rerec-base:bookworm-python3.11"
REPOSITORY = "ghcr.io/rerec/rerec"
LOCKS = {"cpu": ROOT / "requirements" / "runtime.lock", "cuda": ROOT / "requirements" / "cuda.lock"}
# Free space the build needs under buildah's storage (vfs: the working container, the committed layer
# and the wheelhouse side by side), with margin.
NEEDS_GB = {"cpu": 12, "cuda": 30}


class BuildError(RuntimeError):
    pass


def lock_pins(path: Path) -> list[str]:
    """The ``name==version`` lines of a lock, following ``-r`` includes, in order."""
    pins: list[str] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins += lock_pins(path.parent / line[3:].strip())
        elif re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-!]+", line):
            pins.append(line)
        else:
            raise BuildError(f"{path}: '{line}' is not a name==version pin or an -r include")
    return pins


def asset_wheels(dockerfile: Path) -> list[str]:
    """The asset wheels a Dockerfile installs with ``--no-deps`` (the pins after it)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        if line.startswith("RUN pip install --no-deps ") and "==" in line:
            return [w for w in line.split()[4:] if "==" in w]
    raise BuildError(f"{dockerfile} installs no asset wheels with 'pip install --no-deps'")


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def git_commit() -> str:
    """HEAD, with ``-dirty`` when tracked files differ from it (the image is built from the tree)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", shlex.join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def image_exists(ref: str) -> bool:
    return subprocess.run(BUILDAH + ["inspect", "--type", "image", ref], capture_output=True).returncode == 0


def inspect(ref: str) -> dict:
    out = subprocess.run(BUILDAH + ["inspect", "--type", "image", ref], capture_output=True, text=True,
                         check=True).stdout
    info = json.loads(out)
    manifest = json.loads(info["Manifest"])
    return {
        "image_id": "sha256:" + info["FromImageID"],
        "digest": info["FromImageDigest"],
        "size_bytes": sum(layer["size"] for layer in manifest["layers"]),
        "layers": len(manifest["layers"]),
        "labels": info["OCIv1"]["config"].get("Labels") or {},
        "user": info["OCIv1"]["config"].get("User", ""),
    }


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_pins(pins: list[str], dest: Path) -> list[str]:
    """The pins with no wheel of that name and version in ``dest`` yet (a rebuild reuses the rest)."""
    have = set()
    for wheel in dest.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        have.add((_canon(name), version))
    return [p for p in pins if (_canon(p.split("==")[0]), p.split("==")[1]) not in have]


def pip_wheels(pins: list[str], dest: Path, env: dict | None = None) -> None:
    pins = missing_pins(pins, dest)
    if not pins:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(pins) + "\n")
    try:
        # pip wheel: wheels as they are, sdists (kfp-server-api has no wheel) built here, so the image
        # build compiles nothing
        run([sys.executable, "-m", "pip", "wheel", "-qq", "--no-deps", "--wheel-dir", str(dest), "-r", f.name],
            env=env)
    finally:
        os.unlink(f.name)


def wheelhouse(flavor: str) -> Path:
    """Every wheel the image installs, downloaded here through this machine's pip setup."""
    dest = ROOT / "build" / "wheelhouse" / flavor
    dest.mkdir(parents=True, exist_ok=True)
    dockerfile = ROOT / "images" / f"Dockerfile.{flavor}"
    pins = lock_pins(LOCKS[flavor]) + asset_wheels(dockerfile)
    torch = [p for p in pins if p.startswith("torch==")]
    pip_wheels([p for p in pins if p not in torch], dest)
    if flavor == "cpu":
        pip_wheels(torch, dest)
    else:
        # A local wheel folder may hold the CPU build under the same version: leave it out, so the
        # CUDA build comes from the index.
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
            conf.write("[global]\nfind-links =\n")
        env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"} | {"PIP_CONFIG_FILE": conf.name}
        try:
            pip_wheels(torch, dest, env)
        finally:
            os.unlink(conf.name)
    version = torch[0].split("==", 1)[1]
    found = sorted(p.name for p in dest.glob(f"torch-{version}*.whl"))
    want_cpu = flavor == "cpu"
    if not any(("+cpu" in name) == want_cpu for name in found):
        raise BuildError(f"the wheelhouse has no {'CPU' if want_cpu else 'CUDA'} build of torch {version} "
                         f"(found: {found or 'none'})")
    for name in found:  # a wrong-flavour torch wheel must not be there for pip to choose
        if ("+cpu" in name) != want_cpu:
            (dest / name).unlink()
    (dest.parent / f"pip-{flavor}.conf").write_text("[global]\nno-index = true\nfind-links = /tmp/wheels\n")
    return dest


def free_gb(path: str) -> float:
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free / 2**30


def build(flavor: str, base: str) -> dict:
    needs = NEEDS_GB[flavor]
    have = free_gb("/var/lib/containers/storage")
    if have < needs:
        raise BuildError(f"the {flavor} image needs about {needs} GB free under /var/lib/containers/storage "
                         f"(vfs keeps full copies of the layers); {have:.0f} GB are free")
    tag = f"{REPOSITORY}:{project_version()}-{flavor}"
    commit = git_commit()
    t0 = time.monotonic()
    wheels = wheelhouse(flavor)
    t_wheels = time.monotonic() - t0
    old_id = inspect(tag)["image_id"] if image_exists(tag) else None
    cmd = BUILDAH + [
        "bud", "--isolation", "chroot", "--layers=false",
        "-f", f"images/Dockerfile.{flavor}",
        "--build-arg", f"BASE_IMAGE={base}",
        "--build-arg", f"REREC_GIT_COMMIT={commit}",
        "--build-arg", f"REREC_VERSION={project_version()}",
        # the venv's own pip config (read by /opt/venv/bin/pip only) and the wheels, both read-only;
        # what stays in the image is an empty pip.conf and an empty /tmp/wheels
        "-v", f"{wheels}:/tmp/wheels:ro",
        "-v", f"{wheels.parent / f'pip-{flavor}.conf'}:/opt/venv/pip.conf:ro",
        "-t", tag, ".",
    ]
    t1 = time.monotonic()
    run(cmd, cwd=ROOT)
    t_build = time.monotonic() - t1
    info = inspect(tag)
    if old_id and old_id != info["image_id"]:
        # the previous build under this tag is now untagged: vfs keeps it whole, so drop it
        subprocess.run(BUILDAH + ["rmi", old_id], capture_output=True)
    entry = {
        "tag": tag,
        "digest": info["digest"],
        "pushed": False,
        "image_id": info["image_id"],
        "size_bytes": info["size_bytes"],
        "layers": info["layers"],
        "user": info["user"],
        "git_commit": commit,
        "base_image": base,
        "base_digest": inspect(base)["digest"] if image_exists(base) else None,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wheelhouse_seconds": round(t_wheels, 1),
        "build_seconds": round(t_build, 1),
        "command": shlex.join(cmd),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
                   f"buildah {buildah_version()}, storage vfs",
    }
    digests.record(flavor, entry)
    print(f"images/build.py: {tag} {info['digest']} {info['size_bytes'] / 1e9:.2f} GB, "
          f"wheels {t_wheels:.0f} s, build {t_build:.0f} s", flush=True)
    return entry


def buildah_version() -> str:
    out = subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images/build.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flavor", choices=["cpu", "cuda", "all"])
    parser.add_argument("--base", default=LOCAL_BASE, help=f"base image (default {LOCAL_BASE}, built with "
                        "images/base.sh when missing)")
    args = parser.parse_args(argv)
    if shutil.which("buildah") is None:
        print("images/build.py: buildah is missing. Fix: apt-get install -y buildah debootstrap", file=sys.stderr)
        return 2
    try:
        if args.base == LOCAL_BASE and not image_exists(LOCAL_BASE):
            run(["bash", str(ROOT / "images" / "base.sh"), LOCAL_BASE])
        built = []
        for flavor in ("cpu", "cuda") if args.flavor == "all" else (args.flavor,):
            try:
                build(flavor, args.base)
            except BuildError as exc:
                done = f" (built: {', '.join(built)}; retry with make image-{flavor})" if built else ""
                raise BuildError(f"the {flavor} image was not built: {exc}{done}") from None
            built.append(flavor)
    except (BuildError, digests.DigestsError) as exc:
        print(f"images/build.py: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"images/build.py: error: '{shlex.join(exc.cmd)}' exited {exc.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
