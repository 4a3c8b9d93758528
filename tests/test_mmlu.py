"""MMLU questions parsed from the real lm-eval file, and letter log-likelihood scoring on a tiny model."""

import torch

from rerec.eval.mmlu import (
    MMLUQuestion,
    format_question,
    load_mmlu_questions,
    parse_cot_block,
    score_mmlu,
    select_questions,
)


def tiny_lm():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rerec.paths import minilm_dir

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


def test_parses_the_real_file():
    questions = load_mmlu_questions()
    # every "Q:" block of the file parses (57 subjects, 282 blocks)
    assert len(questions) == 282
    assert len({q.subject for q in questions}) == 57
    assert all(q.answer in q.choices for q in questions)
    assert sum(len(q.choices) == 4 for q in questions) >= 280
    first = questions[0]
    assert first.subject == "abstract_algebra"
    assert first.question.startswith("Statement 1 | Every element of a group generates a cyclic subgroup")
    assert first.choices == {"A": "True, True", "B": "False, False", "C": "True, False", "D": "False, True"}
    assert first.answer == "C"
    # a multi-line passage question keeps its passage and its final line
    history = [q for q in questions if q.subject == "high_school_us_history"][0]
    assert "Dorothea Dix" in history.question and history.question.endswith("compared to whom?")
    assert history.choices["B"] == "Clara Barton" and history.answer == "B"


def test_parse_block_rejects_malformed():
    good = "What is 2+2?\n(A) 3 (B) 4 (C) 5 (D) 6\nA: Let's think step by step. 2+2=4. The answer is (B)."
    q = parse_cot_block("math", good)
    assert q == MMLUQuestion("math", "What is 2+2?", {"A": "3", "B": "4", "C": "5", "D": "6"}, "B")
    assert parse_cot_block("math", good.replace("The answer is (B).", "")) is None
    assert parse_cot_block("math", good.replace("(B) 4 ", "")) is None  # gap in letters
    assert parse_cot_block("math", good.replace("The answer is (B)", "The answer is (E)")) is None
    assert format_question(q).endswith("(D) 6\nAnswer: (")


def test_select_is_balanced_and_deterministic():
    questions = load_mmlu_questions()
    subset = select_questions(questions, 60)
    assert len(subset) == 60 and subset == select_questions(questions, 60)
    assert len({q.subject for q in subset}) == 57
    assert select_questions(questions, None) == questions


def test_score_tiny_model():
    torch.set_num_threads(1)
    model, tok = tiny_lm()
    questions = select_questions(load_mmlu_questions(), 6)
    result = score_mmlu(model, tok, questions, batch_size=4)
    assert result["n"] == 6 and 0.0 <= result["accuracy"] <= 1.0
    assert all(p in q.choices for p, q in zip(result["predictions"], questions, strict=True))
    # batching and left padding do not change predictions
    one_by_one = score_mmlu(model, tok, questions, batch_size=1)
    assert one_by_one["predictions"] == result["predictions"]
