"""An MLflow pyfunc recommender: (request, history, candidates) -> ranked candidates and the reasoning.

    model = mlflow.pyfunc.load_model("models:/rerec-recommender@champion")
    model.predict(pd.DataFrame([{"request": "a 90s comedy", "history": ["Fargo (1996)"],
                                 "candidates": ["Heat (1995)", "Raising Arizona (1987)"]}]))
    # -> DataFrame with columns ranked (list[str]), answer (list[str]), reasoning (str), completion (str)

The model folder is a Hugging Face causal LM (the rft stage's output) logged as the artifact ``hf_model``.
The prompt here is the serving prompt: candidates numbered, the answer boxed; an answer may name a
candidate by title or by number. Candidates the model did not name follow in their given order, so
the ranked list is always a permutation of the candidates.
"""

from __future__ import annotations

import re
from typing import Any

import mlflow.models
import mlflow.pyfunc

HF_ARTIFACT = "hf_model"
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def build_serving_messages(request: str, history: list[str], candidates: list[str]) -> list[dict[str, str]]:
    lines = [f"Request: {request}"]
    if history:
        lines.append("Items I liked: " + "; ".join(history))
    lines.append("Candidates:")
    lines += [f"{i}. {title}" for i, title in enumerate(candidates, start=1)]
    lines.append("Reason step by step about which candidates fit the request, then give the best ones as "
                 "\\boxed{Title; Title; ...}.")
    return [{"role": "user", "content": "\n".join(lines)}]


def _normalise(title: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", title.lower()).strip()


def rank_from_completion(completion: str, candidates: list[str]) -> tuple[list[str], list[str], str]:
    """(ranked candidates, the candidates the answer named, the reasoning before the answer)."""
    matches = list(_BOXED.finditer(completion))
    reasoning = completion[: matches[-1].start()].strip() if matches else completion.strip()
    named: list[str] = []
    if matches:
        by_norm = {_normalise(t): t for t in candidates}
        for part in matches[-1].group(1).split(";"):
            part = part.strip()
            title = None
            if part.isdigit() and 1 <= int(part) <= len(candidates):
                title = candidates[int(part) - 1]
            elif part in candidates:
                title = part
            else:
                title = by_norm.get(_normalise(part))
            if title is not None and title not in named:
                named.append(title)
    ranked = named + [t for t in candidates if t not in named]
    return ranked, named, reasoning


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper around the fine-tuned Hugging Face model folder."""

    def __init__(self, max_new_tokens: int = 256) -> None:
        self.max_new_tokens = max_new_tokens

    def load_context(self, context: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = context.artifacts[HF_ARTIFACT]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path)
        self.model.eval()

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages) + "\n"

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a schema
        import pandas as pd
        import torch

        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        out = []
        for row in rows:
            candidates = [str(c) for c in list(row.get("candidates") or [])]
            history = [str(h) for h in list(row.get("history") or [])]
            prompt = self._prompt(build_serving_messages(str(row.get("request", "")), history, candidates))
            inputs = self.tokenizer(prompt, return_tensors="pt")
            with torch.no_grad():
                generated = self.model.generate(**inputs, max_new_tokens=max_new, do_sample=False,
                                                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            completion = self.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            ranked, named, reasoning = rank_from_completion(completion, candidates)
            out.append({"ranked": ranked, "answer": named, "reasoning": reasoning, "completion": completion})
        return pd.DataFrame(out, columns=["ranked", "answer", "reasoning", "completion"])


# Logged "from code" (``python_model=<this file>``): MLflow runs this file and serves the model set here.
mlflow.models.set_model(RecommenderModel())
