"""Where a result came from: the command, the commit (and whether the tree differed from it), the machine
and the dates. Every results file of ``bench/`` and ``experiments/`` carries one such record, so that a
figure quoted in the docs can be traced to the run that made it."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Cores visible to this process, the CPU model, the GPU if any, torch's version, the load average."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cores_visible": cores, "cpu": cpu_model(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def repo_relative(arg: str, root: Path = ROOT) -> str:
    """``arg`` with a path inside the repository (alone, or as ``--flag=PATH``) written relative to it: the
    same command, readable on any machine. Paths outside the repository stay as they are."""
    flag, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    if not os.path.isabs(value):
        return arg
    try:  # not resolved: .venv/bin/python is a link out of the repository, and the command named the link
        rel = Path(os.path.normpath(value)).relative_to(root)
    except ValueError:
        return arg
    return f"{flag}{eq}{rel}"


def command_line(argv: list[str] | None = None, root: Path = ROOT) -> str:
    """This process's command line as it was typed (``sys.orig_argv``: ``python -m rerec.cli run ...`` stays a
    ``-m``), or ``argv`` after the interpreter; paths inside the repository relative to it
    (``.venv/bin/python experiments/ablation.py ...``)."""
    args = (getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])[1:] if argv is None else argv
    return " ".join(repo_relative(a, root) for a in [sys.executable, *args])


#: what the uncommitted-changes check looks at: the code, not the results folders that runs write into
CODE_PATHS = ("src", "bench", "experiments", ":(exclude)experiments/results", ":(exclude)bench/results")


def provenance(argv: list[str] | None = None) -> dict:
    """``command`` (:func:`command_line`), ``commit`` (HEAD), ``uncommitted_changes`` (whether the code under
    src/, bench/ or experiments/, results folders aside, differs from it), ``machine`` and ``started`` (UTC)."""
    dirty = _git("status", "--porcelain", "--", *CODE_PATHS)
    return {"command": command_line(argv), "commit": _git("rev-parse", "HEAD") or None,
            "uncommitted_changes": bool(dirty), "machine": machine(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
