"""A quick measure of a model's choice by generation: parse rate and Acc@1 on query rows, as sft-warmup
reports before and after training and the experiments measure their arms."""

from __future__ import annotations

from typing import Any

from rerec.prompt import CatalogView, answer_ranking, build_messages, display_order, render_prompt


def evaluate_choice(model: Any, tokenizer: Any, rows: list[dict], view: CatalogView, *, mode: str = "evidence",
                    max_history: int = 0, max_new_tokens: int = 64, batch_size: int = 16,
                    desc: str = "generate") -> dict:
    """Greedy generation on ``rows`` (already shrunk) with :func:`rerec.eval.generate.generate_completions`:
    parse rate, Acc@1, the completions and each row's hit (the first answer item is a positive;
    :func:`rerec.prompt.answer_ranking`)."""
    from rerec.answer import parse_answer
    from rerec.eval.generate import generate_completions

    rows = [display_order(r, view) for r in rows]
    prompts = [render_prompt(tokenizer, build_messages(r, view, mode, include_history=max_history > 0,
                                                       max_history=max_history)) for r in rows]
    result = generate_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                  desc=desc)
    completions = [c or "" for c in result.completions]
    parsed = [parse_answer(c).ok for c in completions]
    hits = [answer_ranking(text, row, view).top1 in {str(p) for p in row["positives"]}
            for row, text in zip(rows, completions, strict=True)]
    n = max(len(rows), 1)
    by_type: dict[str, list[bool]] = {}
    for row, hit in zip(rows, hits, strict=True):
        by_type.setdefault(str(row.get("type", "all")), []).append(hit)
    return {
        "parse_rate": sum(parsed) / n, "acc_at_1": sum(hits) / n, "n": len(rows),
        "acc_at_1_by_type": {t: sum(h) / len(h) for t, h in sorted(by_type.items())}, "hits": hits,
        "generate_s": result.seconds, "generated_tokens": result.n_new_tokens,
        "completions": completions, "prompts": prompts,
    }
