"""SFT step time with and without gradient checkpointing, side by side on the same model and batches.

    .venv/bin/python bench/sft_step.py                  # SmolLM2, CPU, 2 threads; one JSON line
    .venv/bin/python bench/sft_step.py --model tiny --steps 2

TRL's ``SFTConfig`` turns gradient checkpointing on by default (it saves activation memory by running each
layer's forward again during the backward pass). For a 135M-parameter model on a CPU the memory is not the
limit and the second forward is pure cost. This bench builds the SFT stage's own trainer
(:func:`rerec.train.sft.build_trainer`: the answer-only loss, the stage's precision) on synthesised scan
traces of the embedded MovieLens catalog, then times one forward and backward pass (``training_step``) per
arm on the same batches, the arms taking turns (order rotated every step), the checkpointing switched on
the same model between them. Learning rate 0: no optimiser step, the weights never change.

Reported: ``speedup`` = median over steps of the paired ratio checkpointing-on / off, the median step
times, and the largest absolute difference between the two arms' gradients (the recomputed forward is
the same computation, so the gradients agree up to float rounding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def examples(tokenizer, n: int, seed: int, data: Path | None):
    """``n`` SFT examples as the stage builds them (scan traces, 4 candidates) and their config, from the
    queries of ``data`` (a ``rerec prepare-data`` folder; None: prepared here from the embedded
    MovieLens-100k with ``seed``, tracked in a throw-away MLflow store)."""
    import os
    import tempfile

    from rerec.data.prepare import PrepareConfig, prepare_data
    from rerec.train.sft import SFTWarmupConfig, load_split_rows, sft_examples

    if data is None:
        folder = Path(tempfile.mkdtemp(prefix="rerec-bench-sft-"))
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"  # MLflow refuses a new file store
        data = folder / "data"
        prepare_data(None, data, PrepareConfig(seed=seed), progress=False)
    cfg = SFTWarmupConfig(profile="smollm2", taste_evidence=False, n_train=4 * n, seed=seed, min_candidates=4).resolved()
    view, train_rows, _, _ = load_split_rows(data, None, cfg)
    return sft_examples(train_rows, view, tokenizer, cfg)[:n], cfg


def add_common_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every SFT bench takes (this one and ``bench/sft_decisions.py``): model, threads, seed, data
    and the output file."""
    ap.add_argument("--model", default="smollm2", help="'smollm2', 'tiny' or a model folder.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="A prepare-data folder (default: prepared here).")
    ap.add_argument("--out", type=Path, default=None, help="Also write the full results (per-arm records) here.")
    return ap


def report(result: dict, run: dict, records: list[dict], out: Path | None) -> None:
    """Print ``result`` as one JSON line; with ``out``, also write it there with the provenance ``run`` and the
    per-arm ``records``."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**result, "provenance": run, "records": records}, indent=1) + "\n")
    print(json.dumps(result))


def stage_trainer(args: argparse.Namespace):
    """``(trainer, precision)``: the SFT stage's own trainer (:func:`rerec.train.sft.build_trainer`) on
    ``args.batch_size * (args.steps + 1)`` examples at learning rate 0, its optimiser made, ready for
    ``training_step`` calls outside the Trainer's loop (the benches time one step per arm)."""
    import torch
    from transformers import AutoModelForCausalLM, TrainerCallback

    from rerec.models.loading import load_tokenizer, resolve_model_dir
    from rerec.models.precision import resolve_precision
    from rerec.train.sft import build_trainer

    torch.set_num_threads(args.threads)
    precision = resolve_precision()
    model_path = resolve_model_dir(args.model)
    tokenizer = load_tokenizer(model_path)
    train, cfg = examples(tokenizer, args.batch_size * (args.steps + 1), args.seed, args.data)
    cfg.steps, cfg.batch_size, cfg.lr = args.steps + 1, args.batch_size, 0.0
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = build_trainer(model, tokenizer, train, train[:2], cfg, precision, Path("/tmp/rerec-bench-sft"),
                            TrainerCallback())
    trainer.create_optimizer_and_scheduler(num_training_steps=args.steps + 1)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this harness replaces
    trainer.model.train()
    return trainer, precision


def timed_step(trainer, batch) -> tuple[float, dict]:
    """One forward and backward pass of ``trainer`` on ``batch`` from zeroed gradients: its seconds and the
    gradients it left, by parameter name."""
    model = trainer.model
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    trainer.training_step(model, batch, None)
    elapsed = time.perf_counter() - t0
    return elapsed, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def paired_steps(arms: list[str], batches: list, steps: int, one_step) -> tuple[dict, list[dict], float]:
    """Time ``one_step(arm, batch) -> (seconds, {parameter name: gradient})`` for every arm on each of the first
    ``steps + 1`` batches, the arms taking turns (order rotated every step; step 0 is a warm-up, not measured).
    Returns the measured seconds per arm, one record per call, and the largest absolute difference between
    the first two arms' gradients of the parameters both have."""
    times = {a: [] for a in arms}
    records, max_grad_diff = [], 0.0
    for step, batch in enumerate(batches[: steps + 1]):
        grads = {}
        for arm in arms[step % 2:] + arms[:step % 2]:
            elapsed, grads[arm] = one_step(arm, batch)
            records.append({"step": step, "arm": arm, "seconds": round(elapsed, 3),
                            "tokens": int(batch["input_ids"].numel()), "warm_up": step == 0})
            if step > 0:
                times[arm].append(elapsed)
        first, second = grads[arms[0]], grads[arms[1]]
        diff = max(float((first[n].float() - second[n].float()).abs().max()) for n in first.keys() & second.keys())
        max_grad_diff = max(max_grad_diff, diff)
        print(f"step {step}: " + ", ".join(f"{r['arm']} {r['seconds']:.2f}s" for r in records[-len(arms):]),
              file=sys.stderr)
    return times, records, max_grad_diff


def paired_speedup(times: dict[str, list[float]], slow: str, fast: str, suffix: str = "_step_s") -> dict:
    """``speedup`` (the median over pairs of ``slow``'s seconds over ``fast``'s) and each arm's median
    seconds (``<arm><suffix>``), rounded as the benches print them."""
    ratios = [a / b for a, b in zip(times[slow], times[fast], strict=True)]
    return {"speedup": round(statistics.median(ratios), 3),
            slow + suffix: round(statistics.median(times[slow]), 3),
            fast + suffix: round(statistics.median(times[fast]), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="Measured steps per arm (after one warm-up step each).")
    ap.add_argument("--batch-size", type=int, default=2, help="Examples per step (make run's SFT takes 2).")
    args = add_common_args(ap).parse_args(argv)
    from rerec.experiments.provenance import provenance

    run = provenance(argv)
    started = time.time()
    trainer, precision = stage_trainer(args)
    from trl import SFTConfig

    trl_default = bool(SFTConfig.__dataclass_fields__["gradient_checkpointing"].default)
    stage_setting = bool(trainer.args.gradient_checkpointing)
    model = trainer.model
    batches = list(trainer.get_train_dataloader())

    def one_step(arm: str, batch) -> tuple[float, dict]:
        if arm == "checkpointing":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        return timed_step(trainer, batch)

    times, records, max_grad_diff = paired_steps(["checkpointing", "plain"], batches, args.steps, one_step)

    result = {
        "bench": "sft_step", "model": str(args.model), "device": precision.device,
        "precision": precision.params()["precision_used"], "threads": args.threads, "steps": args.steps,
        "batch_size": args.batch_size, "trl_default_gradient_checkpointing": trl_default,
        "stage_gradient_checkpointing": stage_setting,
        **paired_speedup(times, "checkpointing", "plain"),
        "max_abs_grad_diff": max_grad_diff, "seconds": round(time.time() - started, 1),
    }
    report(result, run, records, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
