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
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from sft_step import add_common_args, paired_speedup, paired_steps, report, stage_trainer, timed_step  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="Measured steps per arm (after one warm-up step each).")
    ap.add_argument("--batch-size", type=int, default=2, help="Examples per step (make run's SFT takes 2).")
    ap.add_argument("--freeze-layers", type=int, default=15, help="Bottom decoder layers frozen in the second arm.")
    args = add_common_args(ap).parse_args(argv)
    from rerec.experiments.provenance import provenance

    run = provenance(argv)
    started = time.time()
    trainer, precision = stage_trainer(args)
    from rerec.models.loading import freeze_bottom_layers

    model = trainer.model
    batches = list(trainer.get_train_dataloader())
    trained = {}

    def one_step(arm: str, batch) -> tuple[float, dict]:
        model.requires_grad_(True)
        trained[arm] = freeze_bottom_layers(model, args.freeze_layers if arm == "frozen" else 0)
        return timed_step(trainer, batch)

    # the frozen arm's gradients are those of the layers both arms train
    times, records, max_grad_diff = paired_steps(["all_layers", "frozen"], batches, args.steps, one_step)

    result = {
        "bench": "sft_freeze", "model": str(args.model), "device": precision.device,
        "precision": precision.params()["precision_used"], "threads": args.threads, "steps": args.steps,
        "batch_size": args.batch_size, "freeze_layers": args.freeze_layers,
        **paired_speedup(times, "all_layers", "frozen"),
        "all_layers_trainable_params": trained["all_layers"], "frozen_trainable_params": trained["frozen"],
        "max_abs_grad_diff": max_grad_diff, "seconds": round(time.time() - started, 1),
    }
    report(result, run, records, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
