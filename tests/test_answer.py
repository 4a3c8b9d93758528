"""The shared answer parser: last \\boxed{}, nested braces, ';' lists, malformed input, linear time."""

import random
import time

import pytest

from rerec.answer import ParsedAnswer, escape, format_answer, parse_answer, unescape


def test_single_title():
    parsed = parse_answer("The director matches, so the answer is \\boxed{Fargo}.")
    assert parsed == ParsedAnswer(boxed="Fargo", items=["Fargo"], n_boxes=1, ok=True, span=(39, 52))
    assert "The director matches, so the answer is \\boxed{Fargo}."[39:52] == "\\boxed{Fargo}"


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
    assert parsed.span == (0, 12) and parsed.truncated
    assert not parse_answer("\\boxed{Heat} then done").truncated


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


@pytest.mark.parametrize("title", [
    "Crimes and Misdemeanors; Director's Cut", "Se7en {1995}", "Back\\slash", "Unbalanced } brace", "{",
    "The \\boxed{Heat} Story", "Ends with a backslash\\", "\\text{Heat}", ";;", "a\\;b",
])
def test_any_title_round_trips_through_the_format(title):
    text = "Step 1: checked.\n" + format_answer([title])
    parsed = parse_answer(text)
    assert parsed.items == [title.strip()] and parsed.n_boxes == 1 and not parsed.truncated
    assert parse_answer(format_answer([title, "Heat"])).items == [title.strip(), "Heat"]


def test_escapes_only_the_format_characters():
    assert format_answer(["A; B", "C{D}", "E\\F"]) == "\\boxed{A\\; B; C\\{D\\}; E\\\\F}"
    assert escape("Heat") == "Heat" and unescape(escape("a\\;{}b")) == "a\\;{}b"
    assert unescape("\\text{x} \\& y") == "\\text{x} \\& y"  # other backslashes are literal


def test_random_titles_round_trip():
    rng = random.Random(0)
    alphabet = list("ab ;{}\\:,.()'7") + ["\\boxed{", "\\text{", "\\;", "}}", "é"]
    for _ in range(2000):
        titles = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))).strip() for _ in range(rng.randint(1, 3))]
        titles = [t for t in titles if t] or ["x"]
        prefix = "".join(rng.choice(["1. ", "{", "}", "\\boxed{Heat} ", "text "]) for _ in range(rng.randint(0, 3)))
        parsed = parse_answer(prefix + "\n" + format_answer(titles))
        assert parsed.items == titles, (prefix, titles, format_answer(titles))


def test_canonical_text_is_nfc_without_format_characters():
    from rerec.answer import canonical_text, has_format_characters

    assert canonical_text("Cafe\u0301 Society") == "Café Society"
    for hidden in ("Caf\u200bé Society", "\u202eCafé Society\u200f", "Caf\u00ade\u0301 Society\ufeff"):
        assert has_format_characters(hidden)
        assert canonical_text(hidden) == "Café Society", repr(hidden)
    assert canonical_text("Heat (1995)") == "Heat (1995)" and not has_format_characters("Café Society")
    assert canonical_text("Ｈｅａｔ ½") == "Ｈｅａｔ ½"  # NFC, not NFKC: compatibility forms are kept
