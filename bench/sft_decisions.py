"""The SFT stage's teacher-forced decision accuracy in float32 and under bf16 autocast, side by side.

    .venv/bin/python bench/sft_decisions.py                 # SmolLM2, CPU, 2 threads; one JSON line
    .venv/bin/python bench/sft_decisions.py --model tiny --reps 1

SFT logs the accuracy of a trace's checks, verdicts and answers (:func:`rerec.eval.decisions.decision_accuracy`)
at every evaluation, on the first 32 validation traces. It ran in float32 while the trainer computes under bf16
autocast; this bench times both on the same traces, the arms taking turns (order rotated every repetition), and
reports ``speedup`` = median over repetitions of the paired ratio float32 / autocast, the median times, and
the two arms' accuracies (a bf16 forward may flip a near-tie argmax, so they are shown, not assumed equal).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def main(argv=None) -> int:
    from sft_step import add_common_args, examples, paired_speedup, report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=32, help="Traces scored per call (the SFT stage takes 32).")
    ap.add_argument("--reps", type=int, default=3, help="Measured calls per arm (after one warm-up call each).")
    args = add_common_args(ap).parse_args(argv)
    from rerec.experiments.provenance import provenance

    run = provenance(argv)
    import torch
    from transformers import AutoModelForCausalLM

    from rerec.eval.decisions import decision_accuracy
    from rerec.models.loading import load_tokenizer, resolve_model_dir

    torch.set_num_threads(args.threads)
    started = time.time()
    model_path = resolve_model_dir(args.model)
    tokenizer = load_tokenizer(model_path)
    traces, _ = examples(tokenizer, args.traces, args.seed, args.data)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    dtypes = {"float32": None, "bf16_autocast": torch.bfloat16}
    times = {a: [] for a in dtypes}
    accuracy, records = {}, []
    for rep in range(args.reps + 1):  # rep 0 is the warm-up, not measured
        arms = list(dtypes)
        for arm in arms[rep % 2:] + arms[:rep % 2]:
            t0 = time.perf_counter()
            accuracy[arm] = decision_accuracy(model, tokenizer, traces, autocast_dtype=dtypes[arm])
            elapsed = time.perf_counter() - t0
            records.append({"rep": rep, "arm": arm, "seconds": round(elapsed, 3), "warm_up": rep == 0})
            if rep > 0:
                times[arm].append(elapsed)
        print(f"rep {rep}: " + ", ".join(f"{r['arm']} {r['seconds']:.2f}s" for r in records[-2:]), file=sys.stderr)

    result = {
        "bench": "sft_decisions", "model": str(args.model), "threads": args.threads, "reps": args.reps,
        "traces": len(traces), **paired_speedup(times, "float32", "bf16_autocast", suffix="_s"),
        "accuracy_float32": accuracy["float32"], "accuracy_bf16_autocast": accuracy["bf16_autocast"],
        "seconds": round(time.time() - started, 1),
    }
    report(result, run, records, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
