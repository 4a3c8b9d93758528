"""SFT in bf16 (autocast) against float32 on the same seed and data, and the generation path against
today's float32 ``generate``: does quality hold?

    .venv/bin/python experiments/precision_sft.py --data D --graphs G        # D, G: prepare-data / build-graphs

Two ``sft-warmup`` runs of the ``smollm2`` profile that differ only in ``precision`` (fp32, bf16): their loss
curves (the trainer's logged losses at the same steps), then greedy answers on the same validation queries,
three ways, per query:

- ``fp32_model_hf_fp32``: the float32-trained model, transformers' ``generate`` in float32 (today's path);
- ``fp32_model_lean_bf16``: the same model, rerec's generator in bf16 (the generator changes, nothing else);
- ``bf16_model_lean_bf16``: the bf16-trained model, rerec's generator in bf16 (training precision changes too).

Then the SFT step time, fp32 against bf16 autocast, on one batch of the training examples: forward and
backward of the answer-only loss, the two alternating, the median of paired ratios.
Writes one JSON file (command, commit, machine, seed, curves, per-query records).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def machine() -> dict:
    import torch

    from rerec.models.precision import cpu_flags

    flags = cpu_flags()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores_visible": len(__import__("os").sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "native_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "bf16"}), "torch": torch.__version__,
            "cuda": torch.cuda.is_available(), "load_average_at_start": list(__import__("os").getloadavg())}


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def answer_records(rows, view, result) -> list[dict]:
    from rerec.answer import parse_answer
    from rerec.prompt import answer_item_ids

    out = []
    for row, text, ids in zip(rows, result.completions, result.token_ids, strict=True):
        answered = answer_item_ids(text or "", row, view)
        out.append({"query_id": str(row["query_id"]), "type": str(row.get("type")),
                    "parsed": bool(parse_answer(text or "").ok),
                    "hit": bool(answered) and answered[0] in {str(p) for p in row["positives"]},
                    "n_tokens": len(ids or []), "completion": text})
    return out


def summary(records: list[dict]) -> dict:
    n = len(records)
    return {"n": n, "acc_at_1": sum(r["hit"] for r in records) / n, "parse_rate": sum(r["parsed"] for r in records) / n}


def step_times(model_dir: Path, examples: list[dict], tokenizer, batch_size: int, pairs: int) -> dict:
    """Forward+backward of the answer-only loss on one batch, fp32 and bf16 autocast alternating."""
    import torch
    import torch.nn.functional as F

    from rerec.models.loading import load_model

    model, _ = load_model(str(model_dir), trainable=True)
    batch = examples[:batch_size]
    enc = [tokenizer.encode(e["prompt"] + e["completion"], add_special_tokens=False) for e in batch]
    n_prompt = [len(tokenizer.encode(e["prompt"], add_special_tokens=False)) for e in batch]
    width = max(map(len, enc))
    ids = torch.full((len(enc), width), tokenizer.pad_token_id)
    labels = torch.full((len(enc), width), -100)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
        labels[i, n_prompt[i]:len(e)] = torch.tensor(e[n_prompt[i]:])

    def one(bf16: bool) -> float:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            keep = labels[:, 1:] != -100
            logits = model.get_output_embeddings()(hidden[:, :-1][keep])
            loss = F.cross_entropy(logits.float(), labels[:, 1:][keep])
        loss.backward()
        return time.perf_counter() - start

    one(False), one(True)  # warm-up
    fp32, bf16 = [], []
    for k in range(pairs):
        order = (False, True) if k % 2 == 0 else (True, False)
        t = {b: one(b) for b in order}
        fp32.append(t[False])
        bf16.append(t[True])
    return {"batch": [len(enc), width], "pairs": pairs, "fp32_s": fp32, "bf16_s": bf16,
            "fp32_median_s": statistics.median(fp32), "bf16_median_s": statistics.median(bf16),
            "speedup_paired_median": statistics.median([a / b for a, b in zip(fp32, bf16, strict=True)])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--graphs", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/rerec-precision-sft"))
    ap.add_argument("--profile", default="smollm2", help="Model profile (tiny: a quick check of this script).")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--eval-batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step-pairs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/results/precision_sft_smollm2_cpu.json")
    args = ap.parse_args(argv)

    import torch

    from rerec.eval.generate import generate_completions
    from rerec.models.loading import load_model
    from rerec.prompt import build_messages, render_prompt, shrink_candidates
    from rerec.train.inputs import load_view_and_queries, query_rows
    from rerec.train.sft import SFTWarmupConfig, sft_examples, sft_warmup

    torch.set_num_threads(args.threads)
    started = time.time()
    result: dict = {"experiment": "precision_sft", "command": " ".join([sys.executable, *sys.argv]),
                    "commit": commit(), "uncommitted_changes": bool(subprocess.run(
                        ["git", "status", "--porcelain", "src", "experiments"], capture_output=True, text=True,
                        cwd=ROOT).stdout.strip()), "machine": machine(), "seed": args.seed, "args": {k: str(v) for k, v in vars(args).items()}}
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = SFTWarmupConfig(profile=args.profile, steps=args.steps, n_train=args.n_train, n_eval=1, eval_before=False,
                              seed=args.seed, threads=args.threads, precision=precision)
        out = args.work / f"sft_{precision}"
        metrics = sft_warmup(args.data, args.graphs, out, cfg)
        runs[precision] = {"model_dir": str(out), "train_s": metrics["train_s"], "steps": metrics["steps"],
                           "train_loss": metrics["train_loss"], "eval_loss": metrics["eval_loss"],
                           "precision_used": metrics["precision_used"],
                           "loss_curve": [{"step": h["step"], "loss": h["loss"]}
                                          for h in json.loads((out / "metrics.json").read_text())["history"]
                                          if "loss" in h and "eval_loss" not in h]}
        print(f"sft {precision}: {metrics['train_s']:.0f} s, loss {metrics['train_loss']:.3f}", file=sys.stderr)
    result["sft"] = runs

    view, queries = load_view_and_queries(args.data, args.graphs)
    cfg = SFTWarmupConfig(profile=args.profile).resolved()
    view.decades = bool(cfg.decade_evidence)
    rows = [shrink_candidates(r, cfg.n_candidates, view, seed=args.seed)
            for r in query_rows(queries, "val", args.n_eval, args.seed)]
    arms = {"fp32_model_hf_fp32": ("fp32", "hf", torch.float32), "fp32_model_lean_bf16": ("fp32", "lean", torch.bfloat16),
            "bf16_model_lean_bf16": ("bf16", "lean", torch.bfloat16)}
    evals, records = {}, {}
    for arm, (trained, engine, dtype) in arms.items():
        model, tokenizer = load_model(runs[trained]["model_dir"], dtype=torch.float32)
        prompts = [render_prompt(tokenizer, build_messages(r, view, cfg.context_mode, include_history=cfg.max_history > 0,
                                                           max_history=cfg.max_history)) for r in rows]
        gen = generate_completions(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                                   batch_size=args.eval_batch_size, engine=engine, dtype=dtype, desc=arm)
        records[arm] = answer_records(rows, view, gen)
        evals[arm] = {**summary(records[arm]), "engine": gen.engine, "dtype": gen.dtype, "seconds": round(gen.seconds, 1),
                      "new_tokens": gen.n_new_tokens, "tokens_per_s": round(gen.tokens_per_second, 2)}
        print(arm, evals[arm], file=sys.stderr)

    def paired(a: str, b: str) -> dict:
        ra, rb = records[a], records[b]
        return {"hit_a_minus_b": (sum(x["hit"] for x in ra) - sum(x["hit"] for x in rb)) / len(ra),
                "both_hit": sum(x["hit"] and y["hit"] for x, y in zip(ra, rb, strict=True)),
                "only_a": sum(x["hit"] and not y["hit"] for x, y in zip(ra, rb, strict=True)),
                "only_b": sum(y["hit"] and not x["hit"] for x, y in zip(ra, rb, strict=True)),
                "identical_completions": sum(x["completion"] == y["completion"] for x, y in zip(ra, rb, strict=True))}

    result["eval"] = {"split": "val", "n_queries": len(rows), "n_candidates": cfg.n_candidates,
                      "max_new_tokens": cfg.max_new_tokens, "arms": evals,
                      "generator_vs_today": paired("fp32_model_lean_bf16", "fp32_model_hf_fp32"),
                      "bf16_training_vs_fp32_training": paired("bf16_model_lean_bf16", "fp32_model_lean_bf16"),
                      "new_path_vs_today": paired("bf16_model_lean_bf16", "fp32_model_hf_fp32")}
    result["records"] = records

    tokenizer = load_model(runs["fp32"]["model_dir"], dtype=torch.float32)[1]
    examples = sft_examples(query_rows(queries, "train", 16, args.seed), view, tokenizer, cfg)
    result["sft_step_time"] = step_times(Path(runs["fp32"]["model_dir"]), examples, tokenizer, cfg.batch_size,
                                         args.step_pairs)
    result["data"] = ("--data/--graphs: 'rerec prepare-data --seed 0' (the embedded MovieLens-100k) and "
                      "'rerec build-graphs' on it")
    result["wall_s"] = round(time.time() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("eval", "sft_step_time")} | {"out": str(args.out)}, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
