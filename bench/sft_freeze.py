"""SFT step time with every layer trained against the bottom layers frozen, side by side on the same model
and batches.

    .venv/bin/python bench/sft_freeze.py                     # SmolLM2, 15 of 30 layers frozen; one JSON line
    .venv/bin/python bench/sft_freeze.py --freeze-layers 22
    .venv/bin/python bench/sft_freeze.py --model tiny --steps 2 --freeze-layers 4

``SFTWarmupConfig.freeze_layers`` keeps the embeddings and the bottom N decoder layers out of training
(:func:`rerec.models.loading.freeze_bottom_layers`): the forward pass is unchanged, the backward pass stops
at the first trainable layer and the optimiser updates fewer parameters. This bench builds the SFT stage's own
trainer (:func:`rerec.train.sft.build_trainer`: the answer-only loss, the stage's precision) on synthesised
scan traces of the embedded MovieLens catalog and times one forward and backward pass (``training_step``)
per arm on the same batches, the arms taking turns (order rotated every step), switching ``requires_grad``
on the same model between them. Learning rate 0: the weights never change.

Reported: ``speedup`` = median over steps of the paired ratio all-layers / frozen, the median step times,
the parameters each arm trains, and the largest absolute difference between the two arms' gradients of the
layers both train (a frozen layer below changes no gradient above it, so they agree up to float rounding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from sft_step import add_common_args, examples, report  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="Measured steps per arm (after one warm-up step each).")
    ap.add_argument("--batch-size", type=int, default=2, help="Examples per step (make run's SFT takes 2).")
    ap.add_argument("--freeze-layers", type=int, default=15, help="Bottom decoder layers frozen in the second arm.")
    args = add_common_args(ap).parse_args(argv)
    from rerec.experiments.provenance import provenance

    run = provenance(argv)
    import torch
    from transformers import AutoModelForCausalLM, TrainerCallback

    from rerec.models.loading import freeze_bottom_layers, load_tokenizer, resolve_model_dir
    from rerec.models.precision import resolve_precision
    from rerec.train.sft import build_trainer

    torch.set_num_threads(args.threads)
    started = time.time()
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
    model = trainer.model
    model.train()
    batches = list(trainer.get_train_dataloader())
    names = [n for n, _ in model.named_parameters()]
    trained = {}

    def one_step(arm: str, batch) -> tuple[float, dict]:
        model.requires_grad_(True)
        trained[arm] = freeze_bottom_layers(model, args.freeze_layers if arm == "frozen" else 0)
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        trainer.training_step(model, batch, None)
        elapsed = time.perf_counter() - t0
        return elapsed, {n: p.grad.detach().clone() for n, p in zip(names, model.parameters(), strict=True)
                         if p.grad is not None}

    arms = ["all_layers", "frozen"]
    times = {a: [] for a in arms}
    records, max_grad_diff = [], 0.0
    for step, batch in enumerate(batches[: args.steps + 1]):  # step 0 is the warm-up, not measured
        grads = {}
        for arm in arms[step % 2:] + arms[:step % 2]:
            elapsed, grads[arm] = one_step(arm, batch)
            records.append({"step": step, "arm": arm, "seconds": round(elapsed, 3),
                            "tokens": int(batch["input_ids"].numel()), "warm_up": step == 0})
            if step > 0:
                times[arm].append(elapsed)
        shared = grads["frozen"].keys()  # the frozen arm's trainable parameters; the other arm trains them too
        diff = max(float((grads["all_layers"][n].float() - grads["frozen"][n].float()).abs().max()) for n in shared)
        max_grad_diff = max(max_grad_diff, diff)
        print(f"step {step}: " + ", ".join(f"{r['arm']} {r['seconds']:.2f}s" for r in records[-2:]), file=sys.stderr)

    ratios = [a / b for a, b in zip(times["all_layers"], times["frozen"], strict=True)]
    result = {
        "bench": "sft_freeze", "model": str(args.model), "device": precision.device,
        "precision": precision.params()["precision_used"], "threads": args.threads, "steps": args.steps,
        "batch_size": args.batch_size, "freeze_layers": args.freeze_layers,
        "speedup": round(statistics.median(ratios), 3),
        "all_layers_step_s": round(statistics.median(times["all_layers"]), 3),
        "frozen_step_s": round(statistics.median(times["frozen"]), 3),
        "all_layers_trainable_params": trained["all_layers"], "frozen_trainable_params": trained["frozen"],
        "max_abs_grad_diff": max_grad_diff, "seconds": round(time.time() - started, 1),
    }
    report(result, run, records, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
