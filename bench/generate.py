"""Tokens/s of rerec's generator against today's float32 transformers ``generate``, measured side by side.

    .venv/bin/python bench/generate.py                      # prints one JSON line
    .venv/bin/python bench/generate.py --out bench/results/generate_smollm2_cpu.json   # also the full records

Prompts: real validation queries of the embedded MovieLens-100k (prepared once into the rerec cache), shown
with ``--candidates`` candidates in ``evidence`` mode (about 460 tokens with the default), the embedded
SmolLM2-135M, greedy, ``--new-tokens`` tokens at most. Arms, run in turn within each repetition (order
rotated), so load on the machine hits them alike; ratios are medians over repetitions of per-repetition
ratios to the float32 baseline:

- ``hf_fp32``: ``generate_completions(engine="hf", dtype=float32)`` = today's path (transformers' generate,
  float32, batches of ``batch`` left-padded prompts);
- ``rerec``: ``generate_completions`` as the project runs it (engine and precision chosen as in a stage);
- in the ``--ablation`` settings (default ``8x2``: batch 8, 16 prompts, so finished rows have queued
  prompts to take their slot), what each part buys: ``hf_bf16`` (bf16 alone), ``lean_fp32`` (the decode loop alone),
  and the generator with one part switched off: ``no_prepack`` (plain ``F.linear``), ``no_refill`` (no
  continuous batching), ``unsorted`` (prompts in their given order), ``no_prefix_sharing`` (every prompt
  computed whole, the shared system prompt included).

Each batch size of ``--batches`` generates ``batch`` prompts (batch 1: two). The JSON line also gives the machine's matmul rate on a decode-shaped
product (``32 x hidden`` times ``hidden x vocab``, bf16 and float32, in the layout the generator uses and as
plain ``F.linear``) and the fraction of it each arm reaches: ``tokens/s * 2 * (weights per token) /
rate`` (prefill and attention not counted, so the fraction understates the work done).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def bench_data() -> tuple[Path, Path]:
    """The embedded MovieLens-100k prepared and its graphs built, once, under the rerec cache."""
    from rerec.data.prepare import PrepareConfig, prepare_data
    from rerec.graphs.build import build_graphs
    from rerec.paths import cache_dir

    root = cache_dir() / "bench"
    data, graphs = root / "data", root / "graphs"
    if not (data / "queries.parquet").is_file():
        prepare_data(None, data, PrepareConfig(seed=0))
    if not graphs.is_dir():
        build_graphs(data, graphs)
    return data, graphs


def prompts_for(n: int, n_candidates: int, tokenizer) -> tuple[list[str], list[dict]]:
    from rerec.prompt import build_messages, render_prompt, shrink_candidates
    from rerec.train.inputs import load_view_and_queries, query_rows

    data, graphs = bench_data()
    view, queries = load_view_and_queries(data, graphs)
    rows = query_rows(queries, "val", 400, 0)  # 100 of each type, grouped by type
    random.Random(0).shuffle(rows)
    rows = [shrink_candidates(r, n_candidates, view, seed=0) for r in rows[:n]]
    return [render_prompt(tokenizer, build_messages(r, view, "evidence", include_history=False, max_history=0))
            for r in rows], rows


def matmul_rates(hidden: int, vocab: int, rows: int = 32, reps: int = 7) -> dict:
    """GFLOP/s of a (rows x hidden) . (hidden x vocab) product, bf16 and float32, plain and prepacked."""
    import torch
    import torch.nn.functional as F

    from rerec.eval.decoder import Linear

    flops = 2 * rows * hidden * vocab
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        x = torch.randn(rows, hidden).to(dtype)
        w = (torch.randn(vocab, hidden) * 0.02).to(dtype)
        packed = Linear(w.clone())
        arms = {"plain": lambda x=x, w=w: F.linear(x, w), "prepacked": lambda x=x, p=packed: p(x)}
        times: dict[str, list[float]] = {k: [] for k in arms}
        for f in arms.values():
            f()
        for _ in range(reps):
            for k, f in arms.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        for k in arms:
            out[f"{name}_{k}_gflops"] = round(flops / statistics.median(times[k]) / 1e9, 1)
    out["shape"] = [rows, hidden, vocab]
    return out


def machine(threads: int) -> dict:
    import torch

    from rerec.models.precision import cpu_flags

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
                 platform.processor())
    return {"cpu": model, "cores_visible": len(os.sched_getaffinity(0)), "torch_threads": threads,
            "native_bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"}), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batches", default="1,8,32", help="Batch sizes (comma-separated).")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--candidates", type=int, default=18, help="Candidates per prompt (18: about 460 tokens).")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the comparison stable on a shared "
                                                            "machine).")
    ap.add_argument("--ablation", default="8x2", help="BATCHxWAVES settings (comma-separated; empty: none) that run "
                                                      "every arm on BATCH*WAVES prompts, measuring what each part buys.")
    ap.add_argument("--out", type=Path, default=None, help="Also write the full results (per-run records) here.")
    args = ap.parse_args(argv)
    from rerec.experiments.provenance import provenance

    run = provenance(argv)  # the commit this run starts from

    import torch

    from rerec.eval.generate import generate_completions
    from rerec.models.loading import load_model
    from rerec.models.precision import resolve_precision

    torch.set_num_threads(args.threads)
    started = time.time()
    precision = resolve_precision()
    model, tokenizer = load_model(args.model, dtype=torch.float32)
    if precision.device == "cuda":
        model = model.cuda()
    main_arms = ["hf_fp32", "rerec"]
    all_arms = main_arms + ["hf_bf16", "lean_fp32", "no_prepack", "no_refill", "unsorted", "no_prefix_sharing"]
    settings = [(f"batch{b}", b, max(2, b), main_arms) for b in (int(x) for x in args.batches.split(",") if x.strip())]
    for spec in filter(None, (x.strip() for x in args.ablation.split(","))):
        b, w = (int(v) for v in spec.split("x"))
        settings.append((f"batch{b}_queue{w}", b, b * w, all_arms))
    prompts, _ = prompts_for(max(n for _, _, n, _ in settings), args.candidates, tokenizer)
    lengths = [len(tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
    cfg = {"hf_fp32": dict(engine="hf", dtype=torch.float32), "rerec": {}, "hf_bf16": dict(engine="hf", dtype=torch.bfloat16),
           "lean_fp32": dict(engine="lean", dtype=torch.float32), "no_prepack": dict(prepack_weights=False),
           "no_refill": dict(continuous_batching=False), "unsorted": dict(sort_by_length=False),
           "no_prefix_sharing": dict(share_prefixes=False)}
    # one multiply-add per weight of every matrix product a new token goes through, the output head included
    flops_per_token = 2 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    rates = matmul_rates(model.config.hidden_size, model.config.vocab_size)

    runs, summary, per_prompt = [], {}, []
    for setting, batch, n, arms in settings:
        tps: dict[str, list[float]] = {a: [] for a in arms}
        last: dict = {}
        for rep in range(args.reps):
            order = arms[rep % len(arms):] + arms[:rep % len(arms)]
            for arm in order:
                result = generate_completions(model, tokenizer, prompts[:n], max_new_tokens=args.new_tokens,
                                              batch_size=batch, progress=False, **cfg[arm])
                tps[arm].append(result.tokens_per_second)
                last[arm] = result
                runs.append({"setting": setting, "batch": batch, "rep": rep, "arm": arm, "engine": result.engine, "dtype": result.dtype,
                             "prompts": n, "new_tokens": result.n_new_tokens, "seconds": round(result.seconds, 3),
                             "setup_s": round(result.setup_s, 3), "tokens_per_s": round(result.tokens_per_second, 2)})
                print(json.dumps(runs[-1]), file=sys.stderr)
        base = last["hf_fp32"].token_ids
        entry = {"batch": batch, "prompts": n}
        per_prompt.append({"setting": setting, "arms": {arm: [{"n_tokens": len(ids), "identical_to_hf_fp32": ids == ref}
                                                          for ids, ref in zip(last[arm].token_ids, base, strict=True)]
                                                    for arm in arms}})
        for arm in arms:
            rate = rates["fp32_plain_gflops" if last[arm].dtype == "float32" else "bf16_prepacked_gflops"]
            entry[arm] = {
                "tokens_per_s_median": round(statistics.median(tps[arm]), 2),
                "ratio_to_hf_fp32": round(statistics.median([a / b for a, b in zip(tps[arm], tps["hf_fp32"],
                                                                                     strict=True)]), 2),
                "fraction_of_matmul_rate": round(statistics.median(tps[arm]) * flops_per_token / 1e9 / rate, 3),
                "greedy_identical_to_hf_fp32": sum(a == b for a, b in zip(last[arm].token_ids, base, strict=True)),
            }
        summary[setting] = entry

    line = {
        "bench": "generate", "model": args.model, "precision": precision.params()["precision_used"],
        "device": precision.device, "threads": args.threads, "new_tokens": args.new_tokens, "reps": args.reps,
        "prompt_tokens_mean": round(statistics.mean(lengths), 1), "prompt_tokens_range": [min(lengths), max(lengths)],
        "ratio_rerec_to_hf_fp32": {k: summary[k]["rerec"]["ratio_to_hf_fp32"] for k in summary},
        "rerec_tokens_per_s": {k: summary[k]["rerec"]["tokens_per_s_median"] for k in summary},
        "hf_fp32_tokens_per_s": {k: summary[k]["hf_fp32"]["tokens_per_s_median"] for k in summary},
        "matmul": rates, "gflop_per_token": round(flops_per_token / 1e9, 4), "settings": summary,
        "target_ratio": 3.0, "wall_s": round(time.time() - started),
    }
    print(json.dumps(line))
    if args.out is not None:
        full = {**run,
                "machine": machine(args.threads), "seed": "greedy (no sampling)", "summary": line, "runs": runs,
                "prompt_tokens": lengths, "per_prompt_last_rep": per_prompt}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(full, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
