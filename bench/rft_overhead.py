"""RFT step time before and after: today's path against the project's, and the trainer's own overhead.

    .venv/bin/python bench/rft_overhead.py                  # SmolLM2, CPU, 1 thread; one JSON line
    .venv/bin/python bench/rft_overhead.py --model tiny --steps 2

Three arms on the same model weights, prompts, generation length, reward function and seeds, taking steps
in turn (order rotated every step) in one process, so load on the machine hits them alike:

- ``trl``: plain TRL ``GRPOTrainer`` in float32, TRL's generation (``transformers`` generate);
- ``before``: ``ReRecGRPOTrainer`` (RAAE + curriculum + per-completion breakdowns) in float32 with TRL's
  generation: today's RFT step;
- ``after``: ``ReRecGRPOTrainer`` in the stage's precision (bf16 autocast where the processor has it) with
  rerec's generator for the rollouts (its weight snapshot of the policy, LoRA merged, taken in every step).

Reported as medians of per-step paired ratios: ``speedup`` = before / after (what the generator and the
precision buy an RFT step) and ``overhead_ratio`` = before / trl (what ReRec's trainer costs over TRL's).
Learning rate 0 by default, so the weights never change. The arms sample with different random streams, so
their completions (and token counts) differ step by step; ``tokens_per_s_ratio_after_before`` compares
completion tokens per second of step time instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def toy_score_fn(texts, rows):
    """A cheap reward with the shape of the real one: right iff the answer names the positive."""
    from rerec.answer import parse_answer
    from rerec.train.grpo import ScoredCompletion

    out = []
    for text, row in zip(texts, rows, strict=True):
        parsed = parse_answer(text)
        correct = bool(parsed.ok) and parsed.items[0].lower() == row["answer"].lower()
        total = (1.0 if correct else 0.0) + (0.1 if parsed.ok else -0.5) + 0.001 * len(text)
        out.append(ScoredCompletion(total=total, normalised=min(max((total + 0.5) / 1.6, 0.0), 1.0), correct=correct,
                                    wrong_item_names=[] if correct or not parsed.ok else [parsed.items[0]],
                                    parsed=bool(parsed.ok), components={"hit": float(correct)}))
    return out


def make_dataset(n_prompts: int):
    from datasets import Dataset

    titles = ["Fargo", "Heat", "Toy Story", "Casino", "Babe", "Seven", "Clueless", "Apollo 13"]
    rows = []
    for i in range(n_prompts):
        cands = [titles[(i + j) % len(titles)] for j in range(4)]
        text = "Recommend a 90s crime film. Candidates: " + "; ".join(f"{k + 1}. {c}" for k, c in enumerate(cands))
        rows.append({"prompt": [{"role": "user", "content": text}], "prompt_id": f"q{i}", "answer": cands[i % 4]})
    return Dataset.from_list(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="'smollm2', 'tiny' or a model folder.")
    ap.add_argument("--steps", type=int, default=6, help="Measured steps per arm (after one warm-up step each).")
    ap.add_argument("--prompts", type=int, default=2, help="Prompts per step.")
    ap.add_argument("--generations", type=int, default=4, help="Completions per prompt (G).")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="Also write the full results (per-step records) here.")
    args = ap.parse_args(argv)
    from rerec.experiments.provenance import provenance

    run = provenance(argv)  # the commit this run starts from

    import torch
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from rerec.models.loading import load_tokenizer, resolve_model_dir
    from rerec.models.precision import Precision, resolve_precision
    from rerec.train.curriculum import CurriculumConfig, CurriculumScheduler
    from rerec.train.grpo import ReRecGRPOTrainer
    from rerec.train.raae import AdvantageConfig

    torch.set_num_threads(args.threads)
    started = time.time()
    chosen = resolve_precision()
    before_precision = Precision(chosen.device, "float32", "today's path")
    cuda = chosen.device == "cuda"
    model_path = resolve_model_dir(args.model)  # 'tiny' -> its cached folder
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side = "left"
    dataset = make_dataset(args.prompts * (args.steps + 1))

    def config(name, precision):
        return GRPOConfig(output_dir=f"/tmp/rerec-bench-{name}", per_device_train_batch_size=args.prompts * args.generations,
                          num_generations=args.generations, max_completion_length=args.max_new_tokens,
                          learning_rate=args.lr, beta=0.0, report_to=[], seed=args.seed, save_strategy="no",
                          logging_steps=1, gradient_checkpointing=False, disable_tqdm=True, shuffle_dataset=False,
                          **precision.trainer_kwargs())

    def load():
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        return model.cuda() if cuda else model

    def plain_reward(prompts, completions, **columns):
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        rows = [{"answer": a} for a in columns["answer"]]
        return [s.total for s in toy_score_fn(texts, rows)]

    def rerec_trainer(name, precision):
        curriculum = CurriculumScheduler(dataset["prompt_id"], CurriculumConfig(probe_every=1, min_active=1),
                                         seed=args.seed)
        return ReRecGRPOTrainer(model=load(), args=config(name, precision), train_dataset=dataset,
                                processing_class=tokenizer, score_fn=toy_score_fn,
                                advantage=AdvantageConfig(estimator="raae", segment_mode="step"),
                                curriculum=curriculum, prompts_per_epoch=args.prompts * 2)

    arms = {
        "trl": GRPOTrainer(model=load(), args=config("trl", before_precision), train_dataset=dataset,
                           processing_class=tokenizer, reward_funcs=[plain_reward]),
        "before": rerec_trainer("before", before_precision),
        "after": rerec_trainer("after", chosen),
    }
    # today's rollouts: TRL's own generation in the ReRec trainer
    before = arms["before"]
    before._generate_single_turn = lambda *a, **k: GRPOTrainer._generate_single_turn(before, *a, **k)
    state = {}
    for name, trainer in arms.items():
        trainer.create_optimizer_and_scheduler(num_training_steps=args.steps + 1)
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this harness replaces
        trainer.model.train()
        loader = trainer.get_train_dataloader()
        sampler_epoch = [0]

        def batches(loader=loader, sampler_epoch=sampler_epoch):
            while True:  # a new epoch calls set_epoch like the Trainer does
                sampler = getattr(loader, "sampler", None)
                if sampler is not None and hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(sampler_epoch[0])
                yield from loader
                sampler_epoch[0] += 1

        state[name] = {"it": batches(), "times": [], "tokens": [], "peak_gpu_mb": 0.0}

    def one_step(name, step):
        trainer, st = arms[name], state[name]
        batch = next(st["it"])
        torch.manual_seed(args.seed * 1000 + step)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        trainer.training_step(trainer.model, batch, None)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        trainer.optimizer.zero_grad()
        if cuda:
            torch.cuda.synchronize()
            st["peak_gpu_mb"] = max(st["peak_gpu_mb"], torch.cuda.max_memory_allocated() / 2**20)
        elapsed = time.perf_counter() - t0
        tokens = int(trainer._buffered_inputs[0]["completion_mask"].sum())
        return elapsed, tokens

    names = list(arms)
    records = []
    for step in range(args.steps + 1):  # step 0 is the warm-up, not measured
        order = names[step % len(names):] + names[:step % len(names)]
        for name in order:
            elapsed, tokens = one_step(name, step)
            records.append({"step": step, "arm": name, "seconds": round(elapsed, 3), "completion_tokens": tokens,
                            "warm_up": step == 0})
            if step > 0:
                state[name]["times"].append(elapsed)
                state[name]["tokens"].append(tokens)
        print(f"step {step}: " + ", ".join(f"{r['arm']} {r['seconds']:.2f}s" for r in records[-len(names):]),
              file=sys.stderr)

    def med(name):
        return statistics.median(state[name]["times"])

    def paired(a, b):
        return round(statistics.median([x / y for x, y in zip(state[a]["times"], state[b]["times"], strict=True)]), 3)

    def tok_s(name):
        return round(sum(state[name]["tokens"]) / sum(state[name]["times"]), 2)

    after_metrics = arms["after"]._metrics["train"]
    result = {
        "bench": "rft_overhead", "model": str(args.model), "device": chosen.device,
        "precision_after": chosen.params()["precision_used"], "threads": args.threads, "steps": args.steps,
        "prompts": args.prompts, "generations": args.generations, "max_new_tokens": args.max_new_tokens,
        "speedup": paired("before", "after"), "overhead_ratio": paired("before", "trl"),
        "trl_step_s": round(med("trl"), 3), "before_step_s": round(med("before"), 3), "after_step_s": round(med("after"), 3),
        "trl_tokens_per_s": tok_s("trl"), "before_tokens_per_s": tok_s("before"), "after_tokens_per_s": tok_s("after"),
        "after_weight_copy_s_median": round(statistics.median(after_metrics["rerec/rollout_weight_copy_s"]), 4),
        "rerec_override_s_median": round(statistics.median(arms["before"]._metrics["train"]["rerec/raae_s"]), 5),
        "completion_tokens": {n: sum(state[n]["tokens"]) for n in names},
        "tokens_per_s_ratio_after_before": round(tok_s("after") / tok_s("before"), 3),
        "peak_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mb": {n: round(state[n]["peak_gpu_mb"], 1) for n in names} if cuda else None,
        "wall_s": round(time.time() - started),
    }
    print(json.dumps(result))
    if args.out is not None:
        full = {**run,
                "machine": {"cores_visible": len(os.sched_getaffinity(0)), "load_average_at_start_of_write":
                            [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__},
                "seed": args.seed, "summary": result, "steps": records}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(full, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
