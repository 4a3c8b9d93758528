"""This process's place among the processes ``torchrun`` started (:mod:`rerec.train.distributed`): every rank
trains, rank 0 alone writes the output folder, ``metrics.json`` and the MLflow run. Outside ``torchrun`` the
process is rank 0 of 1."""

from __future__ import annotations

import os


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0: the one process that writes outputs, metrics and the MLflow run."""
    return rank() == 0
