"""The ``rerec`` command: one subcommand per pipeline stage, plus ``run``.

Each subcommand lives in its own module, imported only when chosen (torch is slow to import), which
provides ``add_cli_arguments(parser)`` and ``cli_main(args) -> int``. Errors a user can fix
(:class:`rerec.errors.RerecError`) are printed as one message with a non-zero exit, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rerec.errors import RerecError

# name -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare-data": ("rerec.data.prepare", "validate a dataset folder, generate queries and splits"),
    "validate-data": ("rerec.data.validate_cli", "check a dataset folder and print its table sizes"),
    "build-graphs": ("rerec.graphs.build", "build the user-item and item-attribute graphs"),
    "train-reward-gnn": ("rerec.reward.lightgcn", "train the LightGCN preference model for PAS"),
    "sft-warmup": ("rerec.train.sft", "supervised warm-up on synthesised reasoning traces"),
    "rft": ("rerec.train.rft", "curriculum GRPO with reasoning-aware segmented advantages"),
    "evaluate": ("rerec.eval.evaluate", "benchmark against baselines and general-ability retention"),
    "register": ("rerec.registry.register", "register the model in MLflow and run the promotion gate"),
    "champion": ("rerec.registry.champion", "review the challenger against the champion; promote or roll back by hand"),
    "recommend": ("rerec.serving.recommend", "rank candidates for a request with a trained or registered model"),
    "run": ("rerec.pipeline.run", "run the whole train pipeline through the KFP local runner"),
    "schedule": ("rerec.pipeline.schedule", "create or update the recurring retraining run on Kubeflow"),
    "prune-checkpoints": ("rerec.pipeline.checkpoints", "remove stale run folders from the RFT checkpoint volume"),
}

# old spelling -> command: still accepted for one release, with a note on stderr
DEPRECATED: dict[str, str] = {"registry": "champion"}


def _top_level_help() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return (
        "usage: rerec <command> [options]\n\n"
        "Train reasoning LLM recommenders with ReRec (dual-graph reward, RAAE, curriculum RFT).\n\n"
        "commands:\n" + "\n".join(lines) + "\n\nRun 'rerec <command> --help' for a command's inputs and outputs.\n"
        + "".join(f"Deprecated: 'rerec {old}' is now 'rerec {new}'.\n" for old, new in DEPRECATED.items())
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0 if argv else 2
    if argv[0] == "--version":
        from rerec import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name in DEPRECATED:
        print(f"rerec: '{name}' is deprecated and will be removed; use 'rerec {DEPRECATED[name]}' (same options).",
              file=sys.stderr)
        name = DEPRECATED[name]
    if name not in COMMANDS:
        print(f"rerec: unknown command '{name}'. Fix: use one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    module_name, summary = COMMANDS[name]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"rerec {name}: this stage is not available in this version.", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"rerec {name}", description=module.__doc__ or summary,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_cli_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.cli_main(args) or 0)
    except RerecError as exc:
        print(f"rerec {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"rerec {name}: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
