"""Step time of ReRecGRPOTrainer (RAAE + curriculum + per-completion breakdowns) against plain TRL
GRPOTrainer: same model weights, batch, generation length, reward function and seeds, the two arms
alternating step by step in one process. Prints one JSON line at the end.

    .venv/bin/python bench/rft_overhead.py                 # the tiny profile's model, CPU
    .venv/bin/python bench/rft_overhead.py --model smollm2 --steps 4

Learning rate 0 by default, so both arms keep identical weights and generate the same tokens (the
comparison then measures the trainer, not what it learned); each step reseeds torch identically.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


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
    ap.add_argument("--model", default="tiny", help="'tiny', 'smollm2' or a model folder.")
    ap.add_argument("--steps", type=int, default=6, help="Measured steps per arm (after one warm-up step each).")
    ap.add_argument("--prompts", type=int, default=2, help="Prompts per step.")
    ap.add_argument("--generations", type=int, default=4, help="Completions per prompt (G).")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from rerec.models.loading import load_tokenizer, resolve_model_dir
    from rerec.train.curriculum import CurriculumConfig, CurriculumScheduler
    from rerec.train.grpo import ReRecGRPOTrainer
    from rerec.train.precision import trainer_precision
    from rerec.train.raae import AdvantageConfig

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    if args.model == "tiny":
        from rerec.models.tiny import tiny_model_dir

        model_path = tiny_model_dir()
    else:
        model_path = resolve_model_dir(args.model)
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side = "left"
    n_prompts = args.prompts * (args.steps + 1)
    dataset = make_dataset(n_prompts)

    def config(name):
        return GRPOConfig(output_dir=f"/tmp/rerec-bench-{name}", per_device_train_batch_size=args.prompts * args.generations,
                          num_generations=args.generations, max_completion_length=args.max_new_tokens,
                          learning_rate=args.lr, beta=0.0, report_to=[], seed=args.seed, save_strategy="no",
                          logging_steps=1, gradient_checkpointing=False, disable_tqdm=True, shuffle_dataset=False,
                          **trainer_precision())

    def load():
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if cuda else torch.float32)

    def plain_reward(prompts, completions, **columns):
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        rows = [{"answer": a} for a in columns["answer"]]
        return [s.total for s in toy_score_fn(texts, rows)]

    plain = GRPOTrainer(model=load(), args=config("trl"), train_dataset=dataset, processing_class=tokenizer,
                        reward_funcs=[plain_reward])
    curriculum = CurriculumScheduler(dataset["prompt_id"], CurriculumConfig(probe_every=1, min_active=1), seed=args.seed)
    rerec = ReRecGRPOTrainer(model=load(), args=config("rerec"), train_dataset=dataset, processing_class=tokenizer,
                             score_fn=toy_score_fn, advantage=AdvantageConfig(estimator="raae", segment_mode="step"),
                             curriculum=curriculum, prompts_per_epoch=args.prompts * 2)

    arms = {"trl": plain, "rerec": rerec}
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

    for step in range(args.steps + 1):  # step 0 is the warm-up, not measured
        order = ["trl", "rerec"] if step % 2 == 0 else ["rerec", "trl"]
        for name in order:
            elapsed, tokens = one_step(name, step)
            if step > 0:
                state[name]["times"].append(elapsed)
                state[name]["tokens"].append(tokens)
        print(f"step {step}: " + ", ".join(f"{n} {state[n]['times'][-1]:.2f}s" for n in order if state[n]["times"]),
              file=sys.stderr)

    def med(name):
        return statistics.median(state[name]["times"])

    ratios = [r / t for r, t in zip(state["rerec"]["times"], state["trl"]["times"], strict=True)]
    result = {
        "bench": "rft_overhead", "model": str(args.model), "device": "cuda" if cuda else "cpu",
        "threads": args.threads, "steps": args.steps, "prompts": args.prompts, "generations": args.generations,
        "max_new_tokens": args.max_new_tokens,
        "step_time_ratio": round(med("rerec") / med("trl"), 4),
        "step_time_ratio_paired_median": round(statistics.median(ratios), 4),
        "trl_step_s": round(med("trl"), 4), "rerec_step_s": round(med("rerec"), 4),
        "trl_tokens_per_s": round(sum(state["trl"]["tokens"]) / sum(state["trl"]["times"]), 2),
        "rerec_tokens_per_s": round(sum(state["rerec"]["tokens"]) / sum(state["rerec"]["times"]), 2),
        "same_tokens_generated": state["trl"]["tokens"] == state["rerec"]["tokens"],
        "peak_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "trl_peak_gpu_mb": round(state["trl"]["peak_gpu_mb"], 1), "rerec_peak_gpu_mb": round(state["rerec"]["peak_gpu_mb"], 1),
        "rerec_override_s_median": round(statistics.median(rerec._metrics["train"]["rerec/raae_s"]), 5),
        "target_ratio": 1.05,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
