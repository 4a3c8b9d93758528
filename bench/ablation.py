"""Ablation: from one SFT checkpoint and an equal RFT budget, plain GRPO against ReRec (and the
single-component ablations), scored by validation Acc@1 per query type with 95% bootstrap intervals,
plus the paired difference of each arm against plain GRPO on the same validation queries.

    # folders from the pipeline stages (prepare-data, build-graphs, train-reward-gnn, sft-warmup):
    .venv/bin/python bench/ablation.py --data D --graphs G --reward R --sft SFT_MODEL_DIR --out /tmp/ablation
    .venv/bin/python bench/ablation.py ... --arms all                 # + no_raae no_curriculum no_qas no_pas
    .venv/bin/python bench/ablation.py ... --profile paper            # GPU: G=5, lr 5e-6, 768/768, w 0.3

Profiles: ``cpu`` runs the model profile's (``--model-profile``, default smollm2) CPU budgets with
``--steps`` RFT steps per arm; ``paper`` uses ReRec's GPU settings. Every arm starts from the same
weights, gets the same steps, seed and prompts. Prints a table and ONE JSON line at the end; writes
``ablation.json`` under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ARMS_DEFAULT = ["plain_grpo", "none"]  # "none" = full ReRec
ARMS_ALL = ["plain_grpo", "none", "no_raae", "no_curriculum", "no_qas", "no_pas"]

PAPER = dict(num_generations=5, lr=5e-6, max_completion_tokens=768, w_penalty=0.3, context_mode="titles",
             n_candidates=20, batch_size=16)


def arm_name(arm: str) -> str:
    return "rerec" if arm == "none" else arm


def evaluate_arm(model_dir: Path, rows, view, cfg) -> list[dict]:
    """Greedy answers on the validation rows: one record per query (type, hit)."""
    import torch

    from rerec.models.loading import load_model
    from rerec.prompt import answer_item_ids
    from rerec.train.sft import evaluate_choice

    cuda = torch.cuda.is_available()
    model, tokenizer = load_model(model_dir, dtype=torch.bfloat16 if cuda else None)
    if cuda:
        model = model.cuda()
    result = evaluate_choice(model, tokenizer, rows, view, mode=cfg.context_mode, max_history=cfg.max_history,
                             max_new_tokens=cfg.max_completion_tokens, batch_size=64 if cuda else 16,
                             desc=f"eval {model_dir.name}")
    out = []
    for row, text in zip(rows, result["completions"], strict=True):
        answered = answer_item_ids(text, row, view)
        out.append({"query_id": row["query_id"], "type": str(row.get("type")),
                    "hit": float(bool(answered) and answered[0] in {str(p) for p in row["positives"]})})
    return out


def summarise(records: list[dict], baseline: list[dict] | None) -> dict:
    from rerec.eval.metrics import bootstrap_ci

    types = sorted({r["type"] for r in records}) + ["all"]
    summary = {}
    base = {r["query_id"]: r["hit"] for r in baseline} if baseline else None
    for t in types:
        part = [r for r in records if t == "all" or r["type"] == t]
        hits = [r["hit"] for r in part]
        low, high = bootstrap_ci(hits)
        entry = {"n": len(hits), "acc_at_1": sum(hits) / max(len(hits), 1), "ci95": [low, high]}
        if base is not None:
            diffs = [r["hit"] - base[r["query_id"]] for r in part]
            d_low, d_high = bootstrap_ci(diffs, seed=1)
            entry.update(diff_vs_plain=sum(diffs) / max(len(diffs), 1), diff_ci95=[d_low, d_high])
        summary[t] = entry
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--graphs", required=True, type=Path)
    ap.add_argument("--reward", required=True, type=Path)
    ap.add_argument("--sft", required=True, help="The SFT checkpoint every arm starts from (folder, or tiny/smollm2).")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--profile", choices=("cpu", "paper"), default="cpu")
    ap.add_argument("--model-profile", default="smollm2", help="Model profile giving the CPU budgets.")
    ap.add_argument("--arms", default="default", help="'default' (plain_grpo, rerec), 'all', or a comma list of "
                                                      "ablation names (none = ReRec).")
    ap.add_argument("--steps", type=int, default=None, help="RFT steps per arm (equal budget).")
    ap.add_argument("--lr", type=float, default=None, help="RFT learning rate (default: the profile's).")
    ap.add_argument("--max-completion-tokens", type=int, default=None, help="Rollout length (default: the profile's).")
    ap.add_argument("--batch-size", type=int, default=None, help="Prompts per RFT step (default: the profile's).")
    ap.add_argument("--num-generations", type=int, default=None, help="Completions per prompt, G (default: the "
                                                                       "profile's).")
    ap.add_argument("--arm-budget-s", type=float, default=0.0,
                    help="Bound the time instead of fixing --steps: the FIRST arm trains until this many seconds "
                         "(or --steps), and every later arm gets exactly the steps the first one reached, so the "
                         "budget stays equal in steps.")
    ap.add_argument("--n-train", type=int, default=0, help="Training queries (0 = all).")
    ap.add_argument("--n-eval", type=int, default=200, help="Validation queries (stratified by type).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from rerec.prompt import shrink_candidates
    from rerec.train.rft import RFTConfig, rft
    from rerec.train.sft import load_view_and_queries, query_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    arms = {"default": ARMS_DEFAULT, "all": ARMS_ALL}.get(args.arms) or args.arms.split(",")
    extra = PAPER if args.profile == "paper" else {}
    base_cfg = RFTConfig(profile="paper" if args.profile == "paper" else args.model_profile, steps=args.steps,
                         n_train=args.n_train, seed=args.seed, save_steps=10**9, threads=args.threads,
                         **{**extra, **{k: v for k, v in (("lr", args.lr),
                                                          ("max_completion_tokens", args.max_completion_tokens),
                                                          ("batch_size", args.batch_size),
                                                          ("num_generations", args.num_generations))
                                        if v is not None}})
    view, queries = load_view_and_queries(args.data, args.graphs)
    resolved = base_cfg.resolved()
    rows = [shrink_candidates(r, resolved.n_candidates, view, seed=args.seed)
            for r in query_rows(queries, "val", args.n_eval, args.seed)]
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    records: dict[str, list[dict]] = {}
    # the starting point itself (only for a folder; 'tiny' / 'smollm2' resolve inside load_model)
    start_records = evaluate_arm(Path(args.sft), rows, view, resolved) if Path(args.sft).is_dir() else None
    first_steps = None
    for arm in arms:
        name = arm_name(arm)
        cfg = RFTConfig(**{**base_cfg.__dict__, "ablation": arm})
        if args.arm_budget_s and first_steps is None:
            cfg = RFTConfig(**{**cfg.__dict__, "time_budget_s": args.arm_budget_s})
        elif first_steps is not None:
            cfg = RFTConfig(**{**cfg.__dict__, "stop_after_steps": first_steps})  # same LR schedule, same steps
        t0 = time.perf_counter()
        metrics = rft(args.data, args.graphs, args.reward, args.sft, args.out / name, cfg)
        records[name] = evaluate_arm(args.out / name, rows, view, resolved)
        results[name] = {"train_s": time.perf_counter() - t0, "steps": metrics["steps"],
                         "final_train_reward": metrics.get("final_reward")}
        if args.arm_budget_s and first_steps is None:
            first_steps = int(metrics["steps"])
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
    summary = {"bench": "ablation", "profile": args.profile, "model_profile": args.model_profile,
               "steps_per_arm": first_steps or resolved.steps, "batch_size": resolved.batch_size,
               "num_generations": resolved.num_generations, "n_eval": len(rows),
               "device": "cuda" if torch.cuda.is_available() else "cpu", "arms": results}
    (args.out / "ablation.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
