"""RFT on several processes: several GPUs in one pod, or several nodes of a Kubeflow Trainer ``TrainJob``.

One entry point for every launcher, run by ``torchrun`` (one process per GPU; gloo on CPUs):

    torchrun --nproc-per-node 2 -m rerec.train.distributed \\
        --data DATA --graphs GRAPHS --reward REWARD --model SFT --out OUT --config-json '{"steps": 30}' --resume

Every process trains (TRL/accelerate wrap the model in DDP and split each step's prompts between the
processes); only rank 0 writes: the output folder, ``metrics.json`` and the MLflow run. Checkpoints are
written by the Hugging Face Trainer (model and optimiser by rank 0, one RNG state file per rank) into
``<out>.rft-work/checkpoints``, so a job killed at any point continues from the newest complete
checkpoint when it is started again with ``--resume``, on the same number of processes.

``torchrun`` reads its rendezvous settings from ``PET_*`` variables (``PET_NNODES``, ``PET_NODE_RANK``,
``PET_MASTER_ADDR``...) when they are set, which is how a Kubeflow Trainer torch runtime configures
each node; :func:`torchrun_command` builds the same command for one pod.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ENTRY_MODULE = "rerec.train.distributed"


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0: the one process that writes outputs, metrics and the MLflow run."""
    return rank() == 0


def torchrun_command(nproc_per_node: int | str, args: list[str], *, standalone: bool = True) -> list[str]:
    """``torchrun`` argv that runs :func:`main` with ``args`` on ``nproc_per_node`` processes.

    ``standalone`` (one pod): a local rendezvous on a free port. Without it the node count, node rank and
    master address come from the launcher's ``PET_*`` variables (a Kubeflow Trainer torch runtime)."""
    command = ["torchrun"]
    if standalone:
        command.append("--standalone")
    command += [f"--nproc-per-node={nproc_per_node}", "-m", ENTRY_MODULE, *args]
    return command


def stage_args(data: Path, graphs: Path | None, reward: Path | None, model: Path | str | None, out: Path,
               config_json: str, resume: bool) -> list[str]:
    """The argument list :func:`main` parses (the inverse of :func:`parse_args`)."""
    args = ["--data", str(data), "--out", str(out), "--config-json", config_json or "{}"]
    for flag, value in (("--graphs", graphs), ("--reward", reward), ("--model", model)):
        if value is not None:
            args += [flag, str(value)]
    if resume:
        args.append("--resume")
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {ENTRY_MODULE}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="prepare-data output folder.")
    parser.add_argument("--graphs", type=Path, default=None, help="build-graphs output folder (QAS).")
    parser.add_argument("--reward", type=Path, default=None, help="train-reward-gnn output folder (PAS).")
    parser.add_argument("--model", default=None, help="Start model folder (the SFT output or the champion).")
    parser.add_argument("--out", required=True, type=Path, help="Output model folder (written by rank 0).")
    parser.add_argument("--config-json", default="{}", help="The rft stage config as a JSON object.")
    parser.add_argument("--resume", action="store_true", help="Continue from the newest complete checkpoint.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the rft stage in this process (one of ``WORLD_SIZE``); rank 0 prints the metrics as JSON."""
    import logging

    from rerec.errors import RerecError
    from rerec.tracking import stage_config
    from rerec.train.rft import rft

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{rank()} %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = stage_config(rft, args.config_json)
        metrics = rft(args.data, args.graphs, args.reward, args.model, args.out, config, resume=args.resume)
    except RerecError as exc:
        print(f"rerec rft (rank {rank()}): error: {exc}", file=sys.stderr)
        return exc.exit_code
    if is_main_process():
        print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, int | float | str | None)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
