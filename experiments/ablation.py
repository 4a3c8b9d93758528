"""Ablation: from one SFT checkpoint and an equal RFT budget, plain GRPO against ReRec (and the
single-component ablations), scored by validation Acc@1 per query type with 95% bootstrap intervals,
plus the paired difference of each arm against plain GRPO on the same validation queries.

    # folders from the pipeline stages (prepare-data, build-graphs, train-reward-gnn, sft-warmup):
    .venv/bin/python experiments/ablation.py --data D --graphs G --reward R --sft SFT_MODEL_DIR --out /tmp/ablation
    .venv/bin/python experiments/ablation.py ... --arms all            # + no_raae no_curriculum no_qas no_pas
    .venv/bin/python experiments/ablation.py ... --budget cpu-hour     # sized for an hour on 2 CPU cores
    .venv/bin/python experiments/ablation.py ... --budget paper        # GPU: G=5, lr 5e-6, 768/768, w 0.3
    .venv/bin/python experiments/ablation.py ... --arms weights        # plain_grpo, rerec, rerec_paper_weights
    .venv/bin/python experiments/ablation.py ... --arms rerec_p1,no_curriculum \
        --variants '{"rerec_p1": {"curriculum": {"probe_every": 1, "probe_fraction": 0.5}}}'   # a named variant
    .venv/bin/python experiments/pool_ablation.py RUN_DIR ...          # pair arms across runs, pool over --seed

Budgets (``--budget``; ``--profile`` is its deprecated spelling):
- ``cpu``: the model profile's (``--model-profile``, default smollm2) CPU budgets, ``--steps`` RFT steps
  per arm, the arms one after the other.
- ``cpu-hour``: sized to finish within an hour on 2 shared cores (``CPU_HOUR``): 22 steps per arm, the arms
  side by side (``--parallel``), a learning rate above the model profile's so that few steps can move the
  policy, 24 training prompts so that the curriculum gets past its first epoch, 100 val queries.
- ``paper``: ReRec's GPU settings.

Arms (:mod:`rerec.experiments.ablation`) are ablation switches (``none`` = ReRec, named ``rerec``), built-in
variants (``rerec_paper_weights``, ``plain_grpo_paper_weights``: the reward with the paper's weights, see
``docs/method.md``) or variants named with ``--variants``; a variant's options nest as the RFT config does
(``{"reward": {"weights": "paper"}}``). ``--arms weights`` compares plain GRPO, ReRec and ReRec with the
paper's reward weights in one run; every arm's resolved reward weights are recorded in ``ablation.json``.

Every arm starts from the same weights, gets the same steps, seed and prompts. Any flag given overrides
the budget. Prints a table and ONE JSON line at the end; writes ``ablation.json`` and the per-query hits
(``records.json``) under --out. The seed also picks the validation queries and their candidates, so runs of
one seed pair query by query, and ``experiments/pool_ablation.py`` pools such pairs over seeds. Validation
queries only: the test split is for the final report of a change, never for choosing between arms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rerec.errors import RerecError  # noqa: E402
from rerec.experiments.ablation import (  # noqa: E402
    BUILTIN_VARIANTS,
    arm_fields,
    check_variants,
    resolve_arms,
    summarise,
)
from rerec.experiments.pooling import write_run  # noqa: E402

CPU_HOUR = dict(steps=22, lr=2e-4, n_train=24, n_eval=100, parallel=True)
PAPER = dict(num_generations=5, lr=5e-6, max_new_tokens=768, advantage={"w_penalty": 0.3},
             context_mode="titles", n_candidates=20, batch_size=16)


def evaluate_arm(model_dir: Path, rows, view, cfg) -> list[dict]:
    """Greedy answers on the validation rows: one record per query (type, hit)."""
    import torch

    from rerec.eval.choice import evaluate_choice
    from rerec.models.loading import load_model

    cuda = torch.cuda.is_available()
    model, tokenizer = load_model(model_dir, dtype=torch.bfloat16 if cuda else None)
    if cuda:
        model = model.cuda()
    result = evaluate_choice(model, tokenizer, rows, view, mode=cfg.context_mode, max_history=cfg.max_history,
                             max_new_tokens=cfg.max_new_tokens, batch_size=64 if cuda else 16,
                             desc=f"eval {model_dir.name}")
    return [{"query_id": row["query_id"], "type": str(row.get("type")), "hit": float(hit)}
            for row, hit in zip(rows, result["hits"], strict=True)]


def setup(args):
    """The arms' shared RFT config (before the ablation switch), the item view and the validation rows."""
    from rerec.config import dataclass_from_dict, merge_config_dicts
    from rerec.prompt import shrink_candidates
    from rerec.train.inputs import load_view_and_queries, query_rows
    from rerec.train.rft import RFTConfig

    extra = PAPER if args.budget == "paper" else {}
    overrides = {k: v for k, v in (("lr", args.lr), ("max_new_tokens", args.max_new_tokens),
                                   ("batch_size", args.batch_size), ("num_generations", args.num_generations))
                 if v is not None}
    base_cfg = dataclass_from_dict(RFTConfig, merge_config_dicts({
        "profile": args.model_profile if args.budget != "paper" else "paper", "steps": args.steps,
        "n_train": args.n_train, "seed": args.seed, "save_steps": 10**9, "threads": args.threads,
        **extra, **overrides}, args.rft_config), where="--rft-config")
    view, queries = load_view_and_queries(args.data, args.graphs)
    resolved = base_cfg.resolved()
    view.decades = bool(resolved.decade_evidence)
    rows = [shrink_candidates(r, resolved.n_candidates, view, seed=args.seed)
            for r in query_rows(queries, "val", args.n_eval, args.seed)]
    return base_cfg, view, rows


def train_and_evaluate(args, arm: str, cfg, view, rows) -> tuple[str, dict, list[dict]]:
    """Train one arm from the SFT checkpoint, then score it on the validation rows."""
    from rerec.config import config_with
    from rerec.train.rft import rft

    name, fields = arm_fields(arm, args.variants)
    cfg = config_with(cfg, fields, where=f"arm {name}")
    t0 = time.perf_counter()
    metrics = rft(args.data, args.graphs, args.reward, args.sft, args.out / name, cfg)
    train_s = time.perf_counter() - t0
    resolved = cfg.resolved()
    recs = evaluate_arm(args.out / name, rows, view, resolved)
    return name, {"train_s": train_s, "eval_s": time.perf_counter() - t0 - train_s, "steps": metrics["steps"],
                  "final_train_reward": metrics.get("final_reward"),
                  "peak_memory_mb": metrics.get("peak_memory_mb"),
                  "reward": asdict(resolved.reward), "advantage": asdict(resolved.advantage),
                  "curriculum": asdict(resolved.curriculum)}, recs


def _arm_worker(args, arm: str, threads: int) -> tuple[str, dict, list[dict]]:
    """One arm in its own process (``--parallel``): its own threads, its output in ``<out>/<arm>.log``."""
    import os

    import torch

    name = arm_fields(arm, args.variants)[0]
    log = open(args.out / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    torch.set_num_threads(threads)
    args.threads = threads
    base_cfg, view, rows = setup(args)
    return train_and_evaluate(args, arm, base_cfg, view, rows)


def train_in_parallel(args, arms: list[str]) -> tuple[dict, dict]:
    """Every arm at once, one process each, the cores split between them. Decoding a small model on a CPU is
    bound by memory bandwidth, not arithmetic, so one-thread processes side by side generate more tokens per
    second than one process with every thread; and the arms share the machine's state (load, thermal) while
    they run."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    total = args.threads or os.cpu_count() or 1
    threads = max(1, total // len(arms))
    print(f"[ablation] training {len(arms)} arms in parallel, {threads} thread(s) each; logs in {args.out}/<arm>.log",
          flush=True)
    results, records = {}, {}
    with ProcessPoolExecutor(len(arms), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_arm_worker, args, arm, threads) for arm in arms]
        for future in futures:
            name, results[name], records[name] = future.result()
            print(f"[ablation] {name}: {results[name]['steps']} steps in {results[name]['train_s']:.0f} s", flush=True)
    return results, records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--graphs", required=True, type=Path)
    ap.add_argument("--reward", required=True, type=Path)
    ap.add_argument("--sft", required=True, help="The SFT checkpoint every arm starts from (folder, or tiny/smollm2).")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--budget", choices=("cpu", "cpu-hour", "paper"), default="cpu",
                    help="cpu, cpu-hour or paper (module doc).")
    ap.add_argument("--profile", dest="deprecated_profile", choices=("cpu", "cpu-hour", "paper"), default=None,
                    help="Deprecated spelling of --budget.")
    ap.add_argument("--model-profile", default="smollm2", help="Model profile giving the CPU budgets.")
    ap.add_argument("--arms", default="default", help="'default' (plain_grpo, rerec), 'all' (+ the four single "
                                                      "ablations), 'weights' (plain_grpo, rerec, rerec_paper_weights), "
                                                      "or a comma list of ablation names (none = ReRec), built-in "
                                                      f"variants ({', '.join(BUILTIN_VARIANTS)}) and --variants names.")
    ap.add_argument("--variants", type=json.loads, default={},
                    help='Named arms with their own RFTConfig fields, as a JSON object nested like the RFT config, '
                         'e.g. \'{"rerec_tau01": {"curriculum": {"tau": 0.1}}}\' (ReRec unless a variant sets '
                         '"ablation"); list them in --arms.')
    ap.add_argument("--steps", type=int, default=None, help="RFT steps per arm (equal budget).")
    ap.add_argument("--lr", type=float, default=None, help="RFT learning rate (default: the model profile's).")
    ap.add_argument("--max-new-tokens", "--max-completion-tokens", type=int, default=None, dest="max_new_tokens",
                    help="Rollout length (default: the model profile's; --max-completion-tokens: its old name).")
    ap.add_argument("--batch-size", type=int, default=None, help="Prompts per RFT step (default: the model profile's).")
    ap.add_argument("--num-generations", type=int, default=None,
                    help="Completions per prompt, G (default: the model profile's).")
    ap.add_argument("--arm-budget-s", type=float, default=0.0,
                    help="Bound the time instead of fixing --steps: the FIRST arm trains until this many seconds "
                         "(or --steps), and every later arm gets exactly the steps the first one reached, so the "
                         "budget stays equal in steps.")
    ap.add_argument("--n-train", type=int, default=None, help="Training queries (0 = all; default 0).")
    ap.add_argument("--n-eval", type=int, default=None, help="Validation queries, stratified by type (default 200).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in all (0 = every core).")
    ap.add_argument("--rft-config", type=json.loads, default={},
                    help='More RFTConfig fields for every arm, as a JSON object nested like the RFT config: e.g. '
                         '\'{"curriculum": {"probe_every": 1}, "reward": {"weights": "paper"}}\' (the arm still '
                         'sets its ablation switches and its variant\'s fields).')
    ap.add_argument("--eval-start", action=argparse.BooleanOptionalAction, default=True,
                    help="Also score the SFT checkpoint itself (the arms' common start).")
    ap.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=None,
                    help="Train the arms at the same time, one process each, the threads split between them "
                         "(each arm's output goes to <out>/<arm>.log; not with --arm-budget-s).")
    args = ap.parse_args(argv)
    from rerec.experiments.provenance import provenance

    run = provenance(argv)
    if args.deprecated_profile is not None:
        print("[ablation] --profile is deprecated: use --budget (same values).", file=sys.stderr)
        args.budget = args.deprecated_profile
    for defaults in (CPU_HOUR if args.budget == "cpu-hour" else {}, dict(n_train=0, n_eval=200, parallel=False)):
        for key, value in defaults.items():
            if getattr(args, key) is None:
                setattr(args, key, value)

    import torch

    from rerec.config import config_with

    if args.threads:
        torch.set_num_threads(args.threads)
    args.variants = check_variants(args.variants)
    arms = resolve_arms(args.arms, args.variants)  # unknown or repeated arms fail here, before any work
    if args.parallel and args.arm_budget_s:
        raise SystemExit("--parallel trains the arms at the same time, so none can set the step count of the others "
                         "(--arm-budget-s). Fix: give --steps instead.")
    base_cfg, view, rows = setup(args)
    for arm in arms:  # a variant's mistyped field fails here, before any arm trains
        name, fields = arm_fields(arm, args.variants)
        config_with(base_cfg, fields, where=f"--variants {name}").resolved()
    resolved = base_cfg.resolved()
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    records: dict[str, list[dict]] = {}
    # the starting point itself (only for a folder; 'tiny' / 'smollm2' resolve inside load_model)
    start_records = (evaluate_arm(Path(args.sft), rows, view, resolved)
                     if args.eval_start and Path(args.sft).is_dir() else None)
    if args.parallel:
        results, records = train_in_parallel(args, arms)
    else:
        first_steps = None
        for arm in arms:
            cfg = base_cfg
            if args.arm_budget_s and first_steps is None:
                cfg = replace(cfg, time_budget_s=args.arm_budget_s)
            elif first_steps is not None:
                cfg = replace(cfg, stop_after_steps=first_steps)  # same LR schedule, same steps
            name, results[name], records[name] = train_and_evaluate(args, arm, cfg, view, rows)
            if args.arm_budget_s and first_steps is None:
                first_steps = int(results[name]["steps"])
                print(f"[ablation] {name} reached {first_steps} steps in its {args.arm_budget_s:.0f} s budget; "
                      "later arms get the same steps", flush=True)
    baseline = records.get("plain_grpo")
    for name, recs in records.items():
        results[name]["val"] = summarise(recs, None if name == "plain_grpo" else baseline)
    if start_records is not None:
        results["sft_start"] = {"val": summarise(start_records, None)}

    print(f"{'arm':16s} {'type':12s} {'n':>4s} {'acc@1':>7s} {'95% CI':>17s} {'vs plain':>9s}")
    for name, res in results.items():
        for t, e in res["val"].items():
            diff = f"{e['diff_vs_plain']:+.3f}" if "diff_vs_plain" in e else ""
            print(f"{name:16s} {t:12s} {e['n']:4d} {e['acc_at_1']:7.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}] {diff:>9s}")
    for name, res in results.items():
        e = res["val"]["all"]
        if "diff_vs_plain" in e:
            verdict = "separated" if e["separated"] else "NOT separated (the interval holds 0)"
            print(f"[ablation] {name} - plain_grpo: {e['diff_vs_plain']:+.3f}, paired 95% CI "
                  f"[{e['diff_ci95'][0]:+.3f}, {e['diff_ci95'][1]:+.3f}]: {verdict}")
    summary = {"experiment": "ablation", **run,
               "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "sft": str(args.sft),
               "budget": args.budget, "model_profile": args.model_profile,
               "steps_per_arm": sorted({r["steps"] for r in results.values() if "steps" in r}),
               "parallel": args.parallel, "lr": resolved.lr, "n_train": args.n_train, "batch_size": resolved.batch_size,
               "num_generations": resolved.num_generations, "n_eval": len(rows), "seed": args.seed,
               "rft_config": args.rft_config,
               "variants": {v: {**BUILTIN_VARIANTS, **args.variants}[v] for v in arms
                            if v in args.variants or v in BUILTIN_VARIANTS},
               "device": "cuda" if torch.cuda.is_available() else "cpu", "arms": results}
    # per-query hits, so that arms of separate runs (same --n-eval and --seed) can be paired later
    write_run(args.out, summary, {**records, **({"sft_start": start_records} if start_records is not None else {})})
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RerecError as err:
        sys.exit(f"ablation: {err}")
