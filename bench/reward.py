"""How fast is the dual-graph reward, alone and next to generation? One core, one run.

Measured side by side, in this order:

1. ``completions_per_s`` (per CPU second of this one-threaded process; ``completions_per_wall_s`` too): :class:`RewardScorer.score` on realistic completions built from
   MovieLens-100k titles (reasoning steps, then a right title, a wrong candidate, a normalised
   variant, a candidate number, or something malformed), with the real item-attribute graph for QAS
   and a seeded random stand-in for the LightGCN item embeddings (same shape and look-up cost).
   A fresh scorer per batch of G=5 rollouts x 200 prompts, as in one GRPO step with new prompts;
   ``cold_completions_per_s`` also clears the process-wide normalised-title cache first.
2. ``embedding_completions_per_s``: every answer a paraphrase that only the all-MiniLM-L6-v2
   fallback can match (the catalog's titles embedded once beforehand, as they are after the first
   steps of training).
3. ``fraction_of_generation``: scoring time per completion divided by the time the embedded
   SmolLM2-135M-Instruct takes per completion to generate 4 sampled completions x 64 new tokens
   of one 20-candidate prompt (batched, float32, one thread). Real completions are longer, so the
   true fraction is smaller still.

Prints one JSON line of figures at the end. Run: ``.venv/bin/python bench/reward.py``.
"""

from __future__ import annotations

import json
import random
import time

import torch

from rerec.answer import format_answer
from rerec.data.load import load_catalog
from rerec.data.schema import encode_conditions
from rerec.graphs.attributes import ItemAttributeGraph
from rerec.reward.embedder import TextEmbedder
from rerec.reward.matching import normalise_title
from rerec.reward.scorer import RewardConfig, RewardScorer

N_PROMPTS, G, N_CANDIDATES, REPEATS = 200, 5, 20, 5


def build_queries(catalog, graph, rng):
    ids = catalog.items["item_id"].tolist()
    queries = []
    for _ in range(N_PROMPTS):
        candidates = rng.sample(ids, N_CANDIDATES)
        positive = rng.choice(candidates)
        attrs = graph.attributes_of(positive)
        conditions = [{"relation": r, "entity": sorted(attrs[r])[0], "text": r}
                      for r in ("genre", "decade", "director") if attrs.get(r)]
        queries.append({"candidates": candidates, "positives": [positive],
                        "conditions": encode_conditions(conditions), "type": "explicit"})
    return queries


def reasoning(query, titles, rng):
    steps = [f"Step {i + 1}: {titles[c]} — checking the {rng.choice(['genre', 'decade', 'director'])} "
             f"against the request; it {'fits' if rng.random() < 0.5 else 'does not fit'}."
             for i, c in enumerate(rng.sample(query["candidates"], 4))]
    return "\n\n".join(steps) + "\n\nSo the best match is "


def variant(title, rng):
    """A title as a model might write it: lowercased, article moved, year added."""
    if title.endswith(", The"):
        title = "The " + title[:-5]
    return rng.choice([title.lower(), f"{title} (1995)", title.upper(), f"  {title}!"])


def build_completions(queries, titles, rng):
    completions = []
    for q in queries:
        right = titles[q["positives"][0]]
        wrong = [titles[c] for c in q["candidates"] if c not in q["positives"]]
        for _ in range(G):
            head = reasoning(q, titles, rng)
            kind = rng.random()
            if kind < 0.30:
                tail = format_answer([right])
            elif kind < 0.50:
                tail = format_answer([rng.choice(wrong)])
            elif kind < 0.65:
                tail = format_answer([variant(right if rng.random() < 0.5 else rng.choice(wrong), rng)])
            elif kind < 0.75:
                tail = f"\\boxed{{{rng.randint(1, N_CANDIDATES)}}}"
            elif kind < 0.80:
                tail = "I am not sure which one."
            elif kind < 0.85:
                tail = "\\boxed{}"
            elif kind < 0.90:
                tail = format_answer(["Citizen Kane 2: The Return"])
            elif kind < 0.95:
                tail = format_answer([right, right])
            else:
                tail = f"\\boxed{{{rng.choice(wrong)}}} or maybe \\boxed{{{right}}}"
            completions.append(head + tail)
    return completions


def time_scoring(make_scorer, completions, queries, cold=False):
    """(completions per CPU second, per wall second, the last breakdowns); best of REPEATS.

    CPU time of this one-threaded process is the one-core figure; wall time is also reported
    because the machine the figures come from may be shared."""
    best_cpu = best_wall = float("inf")
    for _ in range(REPEATS):
        if cold:
            normalise_title.cache_clear()
        scorer = make_scorer()
        cpu, wall = time.process_time(), time.perf_counter()
        out = scorer.score(completions, queries)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return len(completions) / best_cpu, len(completions) / best_wall, out


def generation_seconds_per_completion(queries, titles):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rerec.paths import smollm2_gguf

    gguf = smollm2_gguf()
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start
    q = queries[0]
    listing = "\n".join(f"{i + 1}. {titles[c]}" for i, c in enumerate(q["candidates"]))
    request = ("I want a 90s crime film by the director of a film I loved. Candidates:\n" + listing +
               "\nReason step by step, then give the title as \\boxed{Title}.")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                           add_generation_prompt=True)
    batch = tokenizer(prompt, return_tensors="pt")
    n, new_tokens = 4, 64
    torch.manual_seed(0)
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, num_return_sequences=n,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    gen_s, gen_wall_s = time.process_time() - cpu, time.perf_counter() - start
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return gen_s / n, gen_wall_s / n, load_s, int(batch["input_ids"].shape[1]), texts, q


def main() -> None:
    torch.set_num_threads(1)
    rng = random.Random(0)
    catalog = load_catalog(None)
    titles = catalog.titles()
    graph = ItemAttributeGraph(catalog.item_attributes)
    generator = torch.Generator().manual_seed(0)
    embeddings = {"ids": list(titles), "embeddings": torch.randn(len(titles), 64, generator=generator)}
    queries = build_queries(catalog, graph, rng)
    batch_queries = [q for q in queries for _ in range(G)]
    completions = build_completions(queries, titles, rng)
    config = RewardConfig()

    def plain_scorer():
        return RewardScorer(config, titles, attribute_graph=graph, embeddings=embeddings)

    plain_scorer().score(completions[:50], batch_queries[:50])  # graph index and imports, not timed
    rate, wall_rate, out = time_scoring(plain_scorer, completions, batch_queries)
    cold_rate, _, _ = time_scoring(plain_scorer, completions, batch_queries, cold=True)
    kinds = {}
    for b in out:
        for k in b.match_kinds or ["no_answer"]:
            kinds[str(k)] = kinds.get(str(k), 0) + 1
    print(f"scored {len(completions)} completions: {rate:,.0f}/CPU-s ({wall_rate:,.0f}/wall-s) warm title cache, "
          f"{cold_rate:,.0f}/CPU-s cold; "
          f"valid {sum(b.valid for b in out) / len(out):.2f}, hit {sum(b.hit for b in out) / len(out):.2f}, "
          f"match kinds {kinds}")

    # the embedding fallback: every answer a paraphrase that no lexical rule matches
    embedder = TextEmbedder()
    embedder.encode(list(titles.values()))  # the catalog's titles, cached as after the first steps
    para_completions = [
        reasoning(q, titles, rng) + format_answer([f"the film {titles[rng.choice(q['candidates'])]} (cut {i})"])
        for i, q in enumerate(batch_queries[:200])
    ]

    def embedding_scorer():
        return RewardScorer(config, titles, attribute_graph=graph, embeddings=embeddings, embedder=embedder)

    cpu = time.process_time()
    emb_out = embedding_scorer().score(para_completions, batch_queries[:200])
    emb_rate = len(para_completions) / (time.process_time() - cpu)
    emb_matched = sum(b.recommended is not None for b in emb_out) / len(emb_out)
    print(f"embedding fallback: {emb_rate:,.0f} completions/s, {emb_matched:.2f} matched above "
          f"{config.embedding_threshold}")

    gen_per_completion, gen_wall_per_completion, load_s, prompt_tokens, texts, q = generation_seconds_per_completion(queries, titles)
    generated = plain_scorer().score(texts, [q] * len(texts))
    print(f"SmolLM2-135M: loaded in {load_s:.1f} s, prompt {prompt_tokens} tokens, "
          f"{gen_per_completion:.2f} CPU-s ({gen_wall_per_completion:.2f} wall-s) per 64-token completion "
          "(4 sampled in one batch)")
    print(f"rewards of the generated completions: {[round(b.total, 3) for b in generated]}")
    figures = {
        "completions_per_s": round(rate),
        "completions_per_wall_s": round(wall_rate),
        "cold_completions_per_s": round(cold_rate),
        "embedding_completions_per_s": round(emb_rate, 1),
        "embedding_matched_fraction": round(emb_matched, 3),
        "generation_cpu_s_per_completion_64_tokens": round(gen_per_completion, 3),
        "generation_wall_s_per_completion_64_tokens": round(gen_wall_per_completion, 3),
        "scoring_cpu_s_per_completion": 1.0 / rate,
        "fraction_of_generation": (1.0 / rate) / gen_per_completion,
        "embedding_fraction_of_generation": (1.0 / emb_rate) / gen_per_completion,
        "n_completions": len(completions),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
