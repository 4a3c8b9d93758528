"""The image digests file (``images/digests.json``): which image each pipeline step runs, by digest.

Written by ``images/build.py`` after a local build and by the CI workflow after a push; read when the
pipelines are compiled against digests (``make compile-pinned``, CI). One entry per flavour::

    {"cpu":  {"tag": "ghcr.io/rerec/rerec:0.1.0-cpu", "digest": "sha256:<64 hex>", "pushed": true, ...},
     "cuda": {...}}

``digest`` is the manifest digest. Only a pushed entry names an image a cluster can pull: a local
build's digest is of the manifest in local storage, and a push re-compresses the layers into a new
manifest. The compile environment is ``REREC_CPU_IMAGE`` / ``REREC_GPU_IMAGE`` (read by
``components/image.py``) set to ``<repository>@<digest>``.

    python images/digests.py record --flavor cpu --tag ghcr.io/rerec/rerec:0.1.0-cpu --digest sha256:...
    python images/digests.py env [--allow-local]     # prints export lines for the compile step
    python images/digests.py check build/pipelines/*.yaml   # every task names a recorded digest
    python images/digests.py merge digests-cpu.json digests-cuda.json   # CI: one file per build job
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent / "digests.json"
FLAVORS = ("cpu", "cuda")
ENV_VARS = {"cpu": "REREC_CPU_IMAGE", "cuda": "REREC_GPU_IMAGE"}
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# The steps that train or generate run on the CUDA image (executor names exec-<step>[-N] in the IR).
GPU_STEPS = ("sft-warmup", "rft", "evaluate")
_GPU_EXECUTOR = re.compile(rf"^exec-({'|'.join(map(re.escape, GPU_STEPS))})(-\d+)?$")


class DigestsError(ValueError):
    """The digests file or an entry is missing or malformed; the message says how to fix it."""


def repository(tag: str) -> str:
    """``registry/name:tag`` or ``registry/name@sha256:..`` -> ``registry/name`` (a port colon stays)."""
    ref = tag.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return ref[: len(ref) - len(last)] + last.split(":", 1)[0]


def pinned_reference(tag: str, digest: str) -> str:
    if not _DIGEST.match(digest):
        raise DigestsError(f"digest {digest!r} is not 'sha256:' and 64 lower-case hex digits")
    return f"{repository(tag)}@{digest}"


def load(path: Path = DEFAULT_PATH) -> dict:
    if not path.is_file():
        raise DigestsError(f"{path} does not exist. Fix: build the images first (make images) "
                           "or record a pushed digest (python images/digests.py record ...)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DigestsError(f"{path} is not valid JSON ({exc}). Fix: rebuild it with make images") from exc
    if not isinstance(data, dict) or not set(data) <= set(FLAVORS):
        raise DigestsError(f"{path} must map {' and/or '.join(FLAVORS)} to entries")
    for flavor, entry in data.items():
        for key in ("tag", "digest", "pushed"):
            if key not in entry:
                raise DigestsError(f"{path}: entry {flavor!r} has no {key!r}")
        pinned_reference(entry["tag"], entry["digest"])
    return data


def record(flavor: str, entry: dict, path: Path = DEFAULT_PATH) -> dict:
    """Set one flavour's entry (validated), keep the other; returns the whole file's content."""
    if flavor not in FLAVORS:
        raise DigestsError(f"flavor {flavor!r} is not one of {', '.join(FLAVORS)}")
    entry = {**entry, "reference": pinned_reference(entry["tag"], entry["digest"])}
    data = load(path) if path.is_file() else {}
    data[flavor] = entry
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def merge(paths: list[Path], path: Path = DEFAULT_PATH) -> dict:
    """One digests file from several (one per CI build job); a flavour may come from one file only."""
    data: dict = {}
    for source in paths:
        for flavor, entry in load(source).items():
            if flavor in data:
                raise DigestsError(f"{source}: {flavor!r} is recorded in more than one of the files to merge")
            data[flavor] = entry
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def compile_env(data: dict, allow_local: bool = False, flavors: tuple[str, ...] = FLAVORS) -> dict[str, str]:
    """The environment that makes ``pipelines.compile`` name each flavour's image by digest."""
    env = {}
    for flavor in flavors:
        if flavor not in data:
            raise DigestsError(f"no {flavor!r} image in the digests file. Fix: build and record it "
                               f"(make image-{flavor}) or compile with fewer flavours")
        entry = data[flavor]
        if not entry["pushed"] and not allow_local:
            raise DigestsError(f"the {flavor!r} digest is a local build's ({entry['digest'][:19]}...), which no "
                               "registry serves. Fix: push the image and record the pushed digest, or pass "
                               "--allow-local to compile for this machine's storage anyway")
        env[ENV_VARS[flavor]] = pinned_reference(entry["tag"], entry["digest"])
    return env


def executor_images(text: str) -> dict[str, str]:
    """``{executor name: image}`` of a compiled KFP IR YAML (every document of the file)."""
    import yaml

    images = {}
    for doc in yaml.safe_load_all(text):
        executors = ((doc or {}).get("deploymentSpec") or {}).get("executors") or {}
        for name, spec in executors.items():
            if "container" in spec:
                images[name] = spec["container"]["image"]
    return images


def check_compiled(texts: dict[str, str], data: dict, allow_local: bool = False) -> list[str]:
    """Problems with compiled pipelines against the digests: a task whose image is not one of the
    recorded digests, or a GPU step not on the CUDA image (when one is recorded). Empty when fine."""
    refs = compile_env(data, allow_local, tuple(f for f in FLAVORS if f in data))
    pinned = set(refs.values())
    gpu_ref = refs.get(ENV_VARS["cuda"])
    problems = []
    for source, text in texts.items():
        images = executor_images(text)
        if not images:
            problems.append(f"{source}: no container executors (is it a compiled pipeline?)")
        for name, image in sorted(images.items()):
            if image not in pinned:
                problems.append(f"{source}: {name} runs {image}, not a recorded digest")
            elif gpu_ref and _GPU_EXECUTOR.match(name) and image != gpu_ref:
                problems.append(f"{source}: {name} is a GPU step but runs {image}, not the CUDA image")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images/digests.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=DEFAULT_PATH)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record a pushed image's digest")
    rec.add_argument("--flavor", choices=FLAVORS, required=True)
    rec.add_argument("--tag", required=True, help="e.g. ghcr.io/rerec/rerec:0.1.0-cpu")
    rec.add_argument("--digest", required=True, help="the manifest digest the push reported")
    rec.add_argument("--git-commit", default="")
    rec.add_argument("--base-image", default="", help="the base the image was built on, by digest")
    rec.add_argument("--local", action="store_true", help="a local build's digest, not a pushed one")
    env = sub.add_parser("env", help="print 'export REREC_..._IMAGE=repo@digest' lines")
    env.add_argument("--allow-local", action="store_true")
    env.add_argument("--flavor", choices=FLAVORS, action="append", help="only these (default: both)")
    mrg = sub.add_parser("merge", help="write --file from several digests files")
    mrg.add_argument("sources", nargs="+", type=Path)
    chk = sub.add_parser("check", help="check that compiled pipelines run the recorded digests")
    chk.add_argument("--allow-local", action="store_true")
    chk.add_argument("yaml", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            problems = check_compiled({str(p): p.read_text() for p in args.yaml}, load(args.file), args.allow_local)
            for problem in problems:
                print(f"images/digests.py: {problem}", file=sys.stderr)
            if problems:
                print("Fix: compile with the digests in the environment (make compile-pinned); components/image.py "
                      f"must read {' and '.join(ENV_VARS.values())}", file=sys.stderr)
                return 1
            print(f"{len(args.yaml)} pipeline file(s): every task runs a recorded digest")
            return 0
        if args.command == "merge":
            print(f"{args.file}: {', '.join(sorted(merge(args.sources, args.file)))}")
        elif args.command == "record":
            record(args.flavor, {"tag": args.tag, "digest": args.digest, "pushed": not args.local,
                                 "git_commit": args.git_commit, "base_image": args.base_image}, args.file)
            print(f"{args.file}: {args.flavor} = {pinned_reference(args.tag, args.digest)}")
        else:
            flavors = tuple(args.flavor) if args.flavor else FLAVORS
            for name, value in compile_env(load(args.file), args.allow_local, flavors).items():
                print(f"export {name}={value}")
    except DigestsError as exc:
        print(f"images/digests.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
