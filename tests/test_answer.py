"""The shared answer parser: last \\boxed{}, nested braces, ';' lists, malformed input, linear time."""

import time

import pytest

from rerec.answer import ParsedAnswer, format_answer, parse_answer


def test_single_title():
    parsed = parse_answer("The director matches, so the answer is \\boxed{Fargo}.")
    assert parsed == ParsedAnswer(boxed="Fargo", items=["Fargo"], n_boxes=1, ok=True)


def test_top_k_list_split_and_stripped_empties_dropped():
    parsed = parse_answer("\\boxed{ Heat ;Fargo;; ; Toy Story }")
    assert parsed.items == ["Heat", "Fargo", "Toy Story"]
    assert parsed.ok


def test_last_box_wins_and_boxes_counted():
    parsed = parse_answer("maybe \\boxed{Heat} ... no, \\boxed{Fargo}")
    assert parsed.items == ["Fargo"]
    assert parsed.n_boxes == 2


def test_nested_braces_kept():
    parsed = parse_answer("\\boxed{Se7en {1995}}")
    assert parsed.boxed == "Se7en {1995}"
    assert parsed.items == ["Se7en {1995}"]


def test_nested_box_the_one_that_opens_last_wins():
    assert parse_answer("\\boxed{outer \\boxed{inner}}").items == ["inner"]


def test_unclosed_final_box_falls_back_to_last_complete_one():
    parsed = parse_answer("\\boxed{Heat} then \\boxed{Far")
    assert parsed.items == ["Heat"]
    assert parsed.n_boxes == 1


def test_stray_closing_braces_ignored():
    assert parse_answer("}} text } \\boxed{Heat} }").items == ["Heat"]


def test_text_wrapper_removed():
    assert parse_answer("\\boxed{\\text{Toy Story}; \\textbf{Heat}}").items == ["Toy Story", "Heat"]


@pytest.mark.parametrize("text", ["", "no answer here", "\\boxed", "boxed{Heat}", "\\boxed{", "\\boxed{Heat"])
def test_no_complete_box(text):
    parsed = parse_answer(text)
    assert parsed.boxed is None and parsed.items == [] and not parsed.ok


def test_empty_box_is_not_ok():
    parsed = parse_answer("\\boxed{  ;  }")
    assert parsed.boxed == "  ;  " and parsed.items == [] and not parsed.ok and parsed.n_boxes == 1


@pytest.mark.parametrize("value", [None, 7, ["\\boxed{Heat}"]])
def test_non_text_never_raises(value):
    assert parse_answer(value) == ParsedAnswer()


def test_unicode():
    assert parse_answer("→ \\boxed{Misérables, Les; 東京物語}").items == ["Misérables, Les", "東京物語"]


@pytest.mark.parametrize("titles", [["Heat"], ["Heat", "Fargo", "Usual Suspects, The"], ["Misérables, Les"]])
def test_format_round_trips(titles):
    text = format_answer(titles)
    assert text.startswith("\\boxed{") and text.endswith("}")
    assert parse_answer("reasoning...\n" + text).items == titles


def test_format_exact_string():
    assert format_answer(["A", "B"]) == "\\boxed{A; B}"


def test_long_adversarial_completions_parse_in_linear_time():
    # 10,000 characters of unclosed boxes would be quadratic for a scan-from-each-box parser
    unclosed = "\\boxed{" * 1500
    braces = "{" * 10_000
    ramble = ("I think " * 1250) + "\\boxed{Heat}"
    start = time.perf_counter()
    for _ in range(20):
        assert parse_answer(unclosed).boxed is None
        assert parse_answer(braces).boxed is None
        assert parse_answer(ramble).items == ["Heat"]
    per_call = (time.perf_counter() - start) / 60
    assert per_call < 0.01, per_call
