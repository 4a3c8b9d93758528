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

from rerec.train.ranks import is_main_process, rank

ENTRY_MODULE = "rerec.train.distributed"


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


def same_budget(config_json: str, reference_metrics: dict) -> str:
    """``config_json`` with the step budget of a reference arm: it stops after the reference's steps, on the
    learning-rate schedule of its own ``steps`` (as the reference did), with no time budget of its own, so
    a second arm trained beside a first one gets exactly as many optimiser steps."""
    from rerec.errors import RerecError

    values = json.loads(config_json or "{}")
    steps = reference_metrics.get("steps")
    if not isinstance(steps, int) or steps < 1:
        raise RerecError(f"The reference arm's metrics.json has no step count ({steps!r}), so the budget cannot be "
                         "matched. Fix: rerun the reference rft step.")
    values.update(stop_after_steps=steps, time_budget_s=0.0)
    return json.dumps(values, sort_keys=True)


def gpu_count() -> int:
    """Processes for RFT in this pod: ``REREC_NPROC_PER_NODE`` if set, else the visible CUDA devices."""
    if os.environ.get("REREC_NPROC_PER_NODE"):
        return int(os.environ["REREC_NPROC_PER_NODE"])
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_rft_step(data: Path, graphs: Path, reward: Path, base_model: Path, out: Path, config_json: str, *,
                 volume: Path | None = None, kfp_run_id: str = "", arm: str = "rft", nproc: int = 1) -> dict:
    """The rft pipeline step: train into ``out``; returns the metrics.

    With ``volume`` (the checkpoint PVC) it works under ``volume/<kfp_run_id>/<arm>/model`` with resume, so
    a restarted pod or a retried step continues from its last checkpoint; the finished model is copied to
    ``out`` and the run's folder on the volume is removed (a failed run's folder stays for the retry, and
    the volume's clean-up job removes it once stale). With ``nproc`` > 1 it launches ``torchrun`` with one
    process per GPU."""
    import shutil
    import subprocess

    from rerec.errors import RerecError

    work = volume / (kfp_run_id or "local") / arm / "model" if volume else out
    resume = volume is not None
    if resume and (work / "metrics.json").is_file() and not work.with_name(work.name + ".rft-work").exists():
        # an earlier attempt of this step finished training (the output is written last, atomically) and
        # failed after it: take its model instead of training again
        metrics = json.loads((work / "metrics.json").read_text(encoding="utf-8"))
    elif nproc > 1:
        command = torchrun_command(nproc, stage_args(data, graphs, reward, base_model, work, config_json, resume))
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", *command[1:]], check=False)
        if proc.returncode != 0:
            raise RerecError(f"RFT on {nproc} processes failed (torchrun exited with {proc.returncode}). Fix: read the "
                             "ranks' logs above; a retry resumes from the last checkpoint on the volume.")
        metrics = json.loads((work / "metrics.json").read_text(encoding="utf-8"))
    else:
        from rerec.pipeline.component_glue import stage_config
        from rerec.train.rft import rft

        metrics = rft(data, graphs, reward, base_model, work, stage_config(rft, config_json), resume=resume)
    if work != out:
        shutil.copytree(work, out, dirs_exist_ok=True)
        shutil.rmtree(work.parent, ignore_errors=True)
        if work.parent.parent.is_dir() and not any(work.parent.parent.iterdir()):
            work.parent.parent.rmdir()
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Run the rft stage in this process (one of ``WORLD_SIZE``); rank 0 prints the metrics as JSON."""
    import logging

    from rerec.errors import RerecError
    from rerec.pipeline.component_glue import stage_config
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
