"""Teacher-forced decision accuracy: where the decisions are, and what a model that knows them scores."""

import re

import pytest
import torch

from rerec.eval.decisions import decision_accuracy, decision_offsets, token_at
from rerec.models.loading import load_tokenizer

TRACE = ("Wanted: comedy; 1990s.\n"
         "1. Dr. No (1962) - action, thriller: comedy no, 1990s no - no.\n"
         "2. Star Trek: Generations (1994) - comedy: comedy yes, 1990s yes - fits.\n"
         "\\boxed{Star Trek: Generations}")


def test_decision_offsets_by_hand():
    found = [(kind, re.match(r"\w+", TRACE[at:]).group()) for kind, at in decision_offsets(TRACE)]
    assert found == [("check", "no"), ("check", "no"), ("verdict", "no"),
                     ("check", "yes"), ("check", "yes"), ("verdict", "fits"), ("answer", "Star")]
    # the title's "No" and the colon in "Star Trek: Generations" are not decisions
    assert TRACE.index("No (1962)") not in {at for _, at in decision_offsets(TRACE)}


def test_a_derived_decade_is_copied_text_not_a_decision():
    derived = TRACE.replace("1990s no -", "(1960s) 1990s no -").replace("1990s yes -", "(1990s) 1990s yes -")
    found = [(kind, re.match(r"\w+", derived[at:]).group()) for kind, at in decision_offsets(derived)]
    assert found == [("check", "no"), ("check", "no"), ("verdict", "no"),
                     ("check", "yes"), ("check", "yes"), ("verdict", "fits"), ("answer", "Star")]


def test_prose_trace_has_only_the_answer():
    assert decision_offsets("Heat is a crime movie.\n\\boxed{Heat}") == [("answer", len("Heat is a crime movie.\n\\boxed{"))]
    assert decision_offsets("no box here") == []


def test_token_at():
    offsets = [(0, 3), (3, 7), (7, 8)]
    assert [token_at(offsets, c) for c in (0, 2, 3, 7, 8)] == [0, 0, 1, 2, None]


class Oracle(torch.nn.Module):
    """Predicts each next token of the sequences it was built with, except where told to be wrong."""

    def __init__(self, tokenizer, texts, wrong_after: set[str] = frozenset()):
        super().__init__()
        self.vocab = len(tokenizer)
        self.wrong_after = wrong_after
        self.tokenizer = tokenizer
        self.known = {tuple(tokenizer(t, add_special_tokens=False)["input_ids"]): t for t in texts}

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for row in range(input_ids.shape[0]):
            seq = input_ids[row][attention_mask[row].bool()].tolist()
            assert tuple(seq) in self.known
            for i in range(len(seq) - 1):
                nxt = seq[i + 1]
                piece = self.tokenizer.decode(seq[i + 1:i + 2]).strip()
                if piece in self.wrong_after:
                    nxt = (nxt + 1) % self.vocab
                logits[row, i, nxt] = 1.0
        return type("Out", (), {"logits": logits})()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


def test_decision_accuracy_scores_each_kind(tokenizer):
    examples = [{"prompt": "Request: a comedy from the 1990s.\n", "completion": TRACE}]
    texts = [e["prompt"] + e["completion"] for e in examples]
    perfect = decision_accuracy(Oracle(tokenizer, texts), tokenizer, examples)
    assert perfect == {"check": 1.0, "n_check": 4, "verdict": 1.0, "n_verdict": 2, "answer": 1.0, "n_answer": 1}
    # an oracle that always misses "fits" gets one verdict of two; "yes" wrong: half the checks
    assert decision_accuracy(Oracle(tokenizer, texts, {"fits"}), tokenizer, examples)["verdict"] == 0.5
    assert decision_accuracy(Oracle(tokenizer, texts, {"yes"}), tokenizer, examples)["check"] == 0.5
    assert decision_accuracy(Oracle(tokenizer, texts, {"Star"}), tokenizer, examples)["answer"] == 0.0


class AutocastProbe(Oracle):
    """An :class:`Oracle` that records whether each forward pass ran under CPU autocast, and in what."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def forward(self, input_ids, attention_mask):
        self.seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return super().forward(input_ids, attention_mask)


def test_decision_accuracy_runs_in_the_trainers_precision_when_asked(tokenizer):
    examples = [{"prompt": "Request: a comedy from the 1990s.\n", "completion": TRACE}]
    texts = [e["prompt"] + e["completion"] for e in examples]
    plain, mixed = AutocastProbe(tokenizer, texts), AutocastProbe(tokenizer, texts)
    assert decision_accuracy(plain, tokenizer, examples) == decision_accuracy(
        mixed, tokenizer, examples, autocast_dtype=torch.bfloat16)
    assert plain.seen == [None] and mixed.seen == [torch.bfloat16]
