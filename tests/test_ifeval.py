"""Every instruction checker with a passing and a failing response."""

import pytest

from rerec.eval.ifeval import CHECKERS, TASKS, build_instructions, check, score_responses

CASES = [
    # checker, kwargs, passing, failing
    ("max_words", {"n": 5}, "One two three four five.", "One two three four five six."),
    ("min_words", {"n": 4}, "One two three four.", "One two three."),
    ("max_sentences", {"n": 2}, "It rains. Watch Heat!", "It rains. Watch Heat! Then sleep."),
    ("lowercase", {}, "all lower case, 100%.", "Not all lower case."),
    ("uppercase", {}, "ALL CAPS, 100%!", "ALL CAPS but one."),
    ("bullets", {"n": 2}, "Intro:\n* first\n- second\n", "* only one\nno bullet here"),
    ("json", {}, '```json\n{"movie": "Heat"}\n```', '{"movie": "Heat",}'),
    ("keywords", {"words": ["cozy", "story"]}, "A Cozy film with a good story.", "A cozy film."),
    ("forbidden", {"words": ["rain", "movie"]}, "Watch Heat; rainy days suit it.", "A movie for the rain."),
    ("starts_with", {"phrase": "My pick"}, "  my pick is Heat.", "I pick Heat. My pick"),
    ("ends_with", {"phrase": "Enjoy!"}, "Watch Heat. Enjoy!\n", "Enjoy! Watch Heat."),
    ("paragraphs", {"n": 2}, "First part.\n***\nSecond part.", "First part.\n\nSecond part."),
    ("title", {}, "<<Rainy days>>\nWatch Heat.", "<Rainy days>\nWatch Heat."),
    ("no_commas", {}, "Watch Heat and relax.", "Watch Heat, and relax."),
    ("placeholders", {"n": 2}, "Meet at [address] on [date].", "Meet at [address] soon."),
    ("quoted", {}, '"Watch Heat."', '"Watch Heat.'),
    ("word_frequency", {"word": "cozy", "n": 2}, "Cozy and cozy.", "Cozy and cosy."),
    ("postscript", {}, "Watch Heat.\n\nP.S. Bring snacks.", "Watch Heat. PS bring snacks."),
]


def test_every_checker_has_a_case():
    assert {c[0] for c in CASES} == set(CHECKERS)


@pytest.mark.parametrize(("checker", "kwargs", "passing", "failing"), CASES, ids=[c[0] for c in CASES])
def test_checker(checker, kwargs, passing, failing):
    assert check(checker, passing, **kwargs) is True
    assert check(checker, failing, **kwargs) is False


@pytest.mark.parametrize("checker", ["no_commas", "forbidden", "max_words", "lowercase"])
def test_blank_response_follows_nothing(checker):
    kwargs = {"forbidden": {"words": ["x"]}, "max_words": {"n": 5}}.get(checker, {})
    assert check(checker, "   ", **kwargs) is False


def test_build_instructions():
    instructions = build_instructions()
    assert len(instructions) == len(TASKS) * len(CHECKERS) >= 100
    assert len({i.instruction_id for i in instructions}) == len(instructions)
    assert instructions == build_instructions()  # deterministic
    # a prefix covers every checker
    assert {i.checker for i in build_instructions(len(CHECKERS))} == set(CHECKERS)
    kw = next(i for i in instructions if i.checker == "keywords")
    assert "'cozy', 'story'" in kw.prompt and kw.prompt.startswith(TASKS[0].prompt)
    assert all("{" not in i.prompt.replace("{\"", "") for i in instructions)


def test_score_responses():
    instructions = [i for i in build_instructions() if i.checker in ("no_commas", "uppercase")][:2]
    responses = ["FINE WITHOUT COMMAS", "fine, lower"]
    result = score_responses(instructions, responses)
    assert result["n"] == 2
    expected = [ins.check(r) for ins, r in zip(instructions, responses, strict=True)]
    assert result["followed"] == expected
    assert result["accuracy"] == sum(expected) / 2
