"""Which RFT checkpoint a run resumes from: the newest one written to the end. The Hugging Face Trainer writes
``checkpoint-N`` folders under ``<out>.rft-work/checkpoints`` (:mod:`rerec.train.rft`,
:class:`rerec.train.grpo.ReRecGRPOTrainer` adds the curriculum state); a kill or a full disk can leave the
newest one incomplete."""

from __future__ import annotations

import json
from pathlib import Path


def checkpoint_is_complete(folder: str | Path, need_curriculum: bool) -> bool:
    """Whether a ``checkpoint-N`` folder was written to the end: HF writes ``trainer_state.json`` last (not
    atomically), ``curriculum_state.json`` follows it (atomically). A kill or a full disk before that leaves
    a folder without them, or with a truncated trainer state, that must not be resumed from."""
    try:
        json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return not need_curriculum or (Path(folder) / "curriculum_state.json").is_file()


def latest_checkpoint(folder: str | Path, need_curriculum: bool = True) -> Path | None:
    """The newest complete ``checkpoint-N`` under ``folder``: one with the trainer state (and the
    curriculum state when ``need_curriculum``) written, so a checkpoint cut short by a kill is skipped."""
    folder = Path(folder)
    if (folder / "checkpoints").is_dir():
        folder = folder / "checkpoints"
    found = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and checkpoint_is_complete(path, need_curriculum):
            found.append((int(suffix), path))
    return max(found)[1] if found else None
