"""Title matching: exact, normalised, candidate number, embedding fallback; and the MiniLM embedder."""

import pytest
import torch

from rerec.reward.embedder import TextEmbedder
from rerec.reward.matching import MatchResult, TitleMatcher, normalise_title

CANDIDATES = [
    ("64", "Shawshank Redemption, The"),
    ("1", "Toy Story"),
    ("12", "Usual Suspects, The"),
    ("1283", "Horseman on the Roof, The (Hussard sur le toit, Le)"),
    ("1144", "Misérables, Les"),
    ("1941", "Se7en"),
    ("318", "Schindler's List"),
]


@pytest.mark.parametrize(
    "a, b",
    [
        ("Matrix, The", "The Matrix"),
        ("Matrix, The (1999)", "the matrix"),
        ("The Matrix [1999]", "MATRIX"),
        ("Usual Suspects, The", "  the   usual suspects!! "),
        ("Misérables, Les", "Les Miserables"),
        ("Schindler's List", "Schindlers List"),
        ("Schindler’s List", "schindler's list"),
        ("Fish Called Wanda, A", "A Fish Called Wanda"),
        ("Boot, Das", "Das Boot"),
        ("Romeo & Juliet", "Romeo and Juliet"),
        ("ﬁght club", "Fight Club"),  # NFKD folds the ligature
    ],
)
def test_normalise_equal(a, b):
    assert normalise_title(a) == normalise_title(b)


@pytest.mark.parametrize(
    "title, key",
    [
        ("Matrix, The (1999)", "matrix"),
        ("Toy Story", "toy story"),
        ("Se7en (1995)", "se7en"),
        ("Horseman on the Roof, The (Hussard sur le toit, Le)", "horseman on the roof hussard sur le toit le"),
        ("", ""),
    ],
)
def test_normalise_exact_keys(title, key):
    assert normalise_title(title) == key


def test_normalise_keeps_distinct_titles_distinct():
    assert normalise_title("Toy Story") != normalise_title("Toy Story 2")
    assert normalise_title("Heat") != normalise_title("The Heat Is On")


def test_exact_match():
    assert TitleMatcher(CANDIDATES).match("Toy Story") == MatchResult("1", "exact", 1.0)


@pytest.mark.parametrize(
    "text, item",
    [
        ("The Shawshank Redemption", "64"),
        ("toy story (1995)", "1"),
        ("The Usual Suspects", "12"),
        ("Les Misérables", "1144"),
        ("The Horseman on the Roof", "1283"),  # the main part of an "A (B)" title
        ("Hussard sur le toit, Le", "1283"),  # and its alternative
    ],
)
def test_normalised_match(text, item):
    result = TitleMatcher(CANDIDATES).match(text)
    assert result == MatchResult(item, "normalised", 1.0)


def test_numbered_candidate_line_names_that_candidate():
    matcher = TitleMatcher(CANDIDATES)
    assert matcher.match("7. Schindler's List") == MatchResult("318", "number", 1.0)
    assert matcher.match("7. Schindler's List (1993) - drama") == MatchResult("318", "number", 1.0)
    # the number and the title name different candidates: the answer contradicts itself
    assert matcher.match("2. Se7en") == MatchResult(None, "ambiguous", 0.0)


@pytest.mark.parametrize("text", ["2", "#2", "[2]", "2.", "(2)", " 2 ", "Candidate 2", "no. 2"])
def test_candidate_number_is_one_based_displayed_order(text):
    assert TitleMatcher(CANDIDATES).match(text) == MatchResult("1", "number", 1.0)


def test_number_prefix_with_unknown_title_falls_back_to_the_number():
    assert TitleMatcher(CANDIDATES).match("3. The Usual Suspect").item_id == "12"


@pytest.mark.parametrize("text", ["0", "8", "1995", "Heat", "", "   ", "Toy Story 2"])
def test_no_match(text):
    assert TitleMatcher(CANDIDATES).match(text) == MatchResult(None, None, 0.0)


def test_a_number_in_range_is_a_candidate_number_unless_another_candidate_is_titled_so():
    # the prompt promises "a candidate number, like \\boxed{3}, is also accepted"; a bare number that is
    # also another candidate's title names two candidates and credits neither
    matcher = TitleMatcher([("a", "Heat", 1995), ("b", "1", 1999), ("c", "10", 1979)])
    assert matcher.match("1") == MatchResult(None, "ambiguous", 0.0)
    assert matcher.match("#1") == MatchResult("a", "number", 1.0)
    assert matcher.match("candidate 1") == MatchResult("a", "number", 1.0)
    assert matcher.match("2") == MatchResult("b", "number", 1.0)
    # out of range: a title
    assert matcher.match("10") == MatchResult("c", "exact", 1.0)
    # the film "1" is named by its displayed label
    assert matcher.match("1 (1999)") == MatchResult("b", "exact", 1.0)
    assert matcher.answer_text("b") == "1 (1999)" and matcher.answer_text("c") == "10"


def test_a_film_titled_with_a_candidate_number_is_ambiguous_when_bare():
    """The film "10" (1979) shown as candidate 3 of 20: \\boxed{10} names candidate 10 and the film "10";
    it credits neither (before: candidate 10, another item)."""
    candidates = [(f"i{k}", f"Film {k}", 1990) for k in range(1, 21)]
    candidates[2] = ("ten", "10", 1979)
    matcher = TitleMatcher(candidates)
    for text in ("10", " 10 ", "10."):
        assert matcher.match(text) == MatchResult(None, "ambiguous", 0.0), text
    assert matcher.match("#10") == MatchResult("i10", "number", 1.0)
    assert matcher.match("option 10") == MatchResult("i10", "number", 1.0)
    assert matcher.match("10 (1979)") == MatchResult("ten", "exact", 1.0)
    assert matcher.match("3") == MatchResult("ten", "number", 1.0)
    assert matcher.answer_text("ten") == "10 (1979)"
    # the film "3" shown as candidate 3: both readings name it
    candidates[2] = ("three", "3", None)
    assert TitleMatcher(candidates).match("3") == MatchResult("three", "number", 1.0)
    # a title "10" without a year among 20: the SFT target falls back to a number that is no title
    candidates[2] = ("ten", "10", None)
    candidates[9] = ("i10", "3", None)
    matcher = TitleMatcher(candidates)
    assert matcher.match(matcher.answer_text("ten")).item_id == "ten"
    assert matcher.match(matcher.answer_text("i10")).item_id == "i10"


def test_look_alike_titles_decomposed_accents_and_format_characters():
    """NFC and invisible format characters: a decomposed accent or a U+200B cannot tell two titles apart,
    nor keep an answer from matching its title."""
    decomposed = "Cafe\u0301 Society"
    matcher = TitleMatcher([("a", decomposed, 2016), ("b", "Heat", 1995)])
    assert matcher.match("Café Society") == MatchResult("a", "exact", 1.0)
    for hidden in ("Caf\u200bé Society", "Café Society\u200f", "\u202eCafé Society", "Café\u00ad Society"):
        assert matcher.match(hidden) == MatchResult("a", "exact", 1.0), repr(hidden)
    hidden_title = TitleMatcher([("a", "Caf\u200bé Society", 2016), ("b", "Heat", 1995)])
    assert hidden_title.match("Café Society") == MatchResult("a", "exact", 1.0)
    assert hidden_title.match("cafe society") == MatchResult("a", "normalised", 1.0)
    # two items that differ only invisibly: the answer names both, so it credits neither
    twins = TitleMatcher([("x", decomposed, 2016), ("y", "Café Society", 2016), ("z", "Heat", 1995)])
    for text in ("Café Society", decomposed, "Café Society (2016)"):
        assert twins.match(text) == MatchResult(None, "ambiguous", 0.0), repr(text)
    assert [twins.answer_text(i) for i in ("x", "y")] == ["1", "2"]


def test_remakes_sharing_a_title_are_told_apart_by_year_or_ambiguous():
    matcher = TitleMatcher([("x", "Heat", 1995), ("old", "Cape Fear", 1962), ("new", "Cape Fear", 1991)])
    assert matcher.match("Cape Fear (1962)") == MatchResult("old", "exact", 1.0)
    assert matcher.match("Cape Fear (1991)") == MatchResult("new", "exact", 1.0)
    assert matcher.match("cape fear [1991]") == MatchResult("new", "normalised", 1.0)
    assert matcher.match("2. Cape Fear (1962)") == MatchResult("old", "number", 1.0)
    assert matcher.match("2. Cape Fear") == MatchResult("old", "number", 1.0)  # the number picks among the remakes
    assert matcher.match("3. Cape Fear (1962)") == MatchResult(None, "ambiguous", 0.0)
    # never credited to the first displayed one
    assert matcher.match("Cape Fear") == MatchResult(None, "ambiguous", 0.0)
    assert matcher.match("the cape fear") == MatchResult(None, "ambiguous", 0.0)
    assert [matcher.answer_text(i) for i in ("x", "old", "new")] == ["Heat", "Cape Fear (1962)", "Cape Fear (1991)"]


def test_identical_title_and_year_only_the_number_tells_apart():
    matcher = TitleMatcher([("9", "Chasing Amy", 1997), ("7", "Chasing Amy", 1997)])
    assert matcher.match("chasing amy") == MatchResult(None, "ambiguous", 0.0)
    assert matcher.match("Chasing Amy (1997)") == MatchResult(None, "ambiguous", 0.0)
    assert [matcher.answer_text(i) for i in ("9", "7")] == ["1", "2"]


def test_answer_text_round_trips_on_random_catalogs():
    """Whatever the titles (format characters, numbers, remakes, exact duplicates), the boxed answer text
    for a candidate ranks that candidate first, alone."""
    import random

    from rerec.answer import format_answer
    from rerec.reward.matching import rank_answer

    rng = random.Random(1)
    pool = ["Heat", "Cape Fear", "10", "9", "1", "Crimes; Director's Cut", "Se7en {1995}", "A\\B", "Sabrina",
            "Usual Suspects, The", "The Usual Suspects", "\\boxed{x}", "3. Heat", "#2", "Heat (1995)", "2",
            "Cafe\u0301 Society", "Café Society", "Caf\u200bé Society", "4."]
    for _ in range(500):
        n = rng.randint(1, 12)
        candidates = [(f"i{k}", rng.choice(pool), rng.choice([None, 1962, 1991, 1995])) for k in range(n)]
        matcher = TitleMatcher(candidates)
        for item_id, _, _ in candidates:
            answer = rank_answer("Thinking...\n" + format_answer([matcher.answer_text(item_id)]), matcher)
            assert answer.ranked == [item_id], (candidates, item_id, matcher.answer_text(item_id))
            assert answer.valid(1)


def test_rank_answer_keeps_unmatched_items_in_place():
    from rerec.reward.matching import rank_answer

    matcher = TitleMatcher([("f", "Fargo"), ("h", "Heat")])
    answer = rank_answer("\\boxed{Casablanca; Fargo}", matcher)
    assert answer.ranked == [None, "f"] and answer.top1 is None and not answer.valid(2)
    assert rank_answer("\\boxed{Fargo; Heat}", matcher).valid(2)
    assert not rank_answer("\\boxed{Fargo; Heat}", matcher).valid(1)
    assert not rank_answer("\\boxed{Fargo; fargo}", matcher).valid(2)  # a repeat
    assert rank_answer("no box", matcher).ranked == [] and rank_answer(None, matcher).top1 is None


def test_an_unescaped_title_with_a_separator_is_recovered_as_one_item():
    from rerec.reward.matching import rank_answer

    matcher = TitleMatcher([("c", "Crimes and Misdemeanors; Director's Cut"), ("h", "Heat")])
    assert rank_answer("\\boxed{Crimes and Misdemeanors; Director's Cut}", matcher).ranked == ["c"]
    assert rank_answer("\\boxed{Heat; Fargo}", matcher).ranked == ["h", None]


def test_alias_never_shadows_a_primary_title():
    matcher = TitleMatcher([("x", "Blue Angel, The (Blaue Engel, Der)"), ("y", "Blue Angel")])
    assert matcher.match("The Blue Angel").item_id == "y"


class FakeEmbedder:
    """Hand-made unit vectors: rows for known strings, a fixed vector otherwise."""

    def __init__(self, table):
        self.table = {k: torch.nn.functional.normalize(torch.tensor(v, dtype=torch.float32), dim=0)
                      for k, v in table.items()}
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        return torch.stack([self.table.get(t, torch.tensor([0.0, 0.0, 1.0])) for t in texts])


def test_embedding_fallback_above_threshold_only():
    embedder = FakeEmbedder({"Heat": [1, 0, 0], "Fargo": [0, 1, 0], "Heat-ish": [0.9, 0.1, 0], "Between": [1, 1, 0]})
    matcher = TitleMatcher([("a", "Heat"), ("b", "Fargo")], embedder=embedder, threshold=0.8)
    result = matcher.match("Heat-ish")
    assert result.item_id == "a" and result.how == "embedding"
    assert result.score == pytest.approx(0.9 / (0.9**2 + 0.1**2) ** 0.5)
    below = matcher.match("Between")  # cos = 1/sqrt(2) = 0.707 < 0.8
    assert below.item_id is None and below.how is None
    assert below.score == pytest.approx(2**-0.5)


def test_embedding_step_skipped_when_lexical_matches_and_batched_otherwise():
    embedder = FakeEmbedder({"Heat": [1, 0, 0], "Fargo": [0, 1, 0], "Heat-ish": [0.9, 0.1, 0]})
    matcher = TitleMatcher([("a", "Heat"), ("b", "Fargo")], embedder=embedder)
    assert matcher.match_many(["heat", "2"]) == [MatchResult("a", "normalised", 1.0), MatchResult("b", "number", 1.0)]
    assert embedder.calls == 0
    results = matcher.match_many(["Heat-ish", "Fargo", "Heat-ish"])
    assert [r.item_id for r in results] == ["a", "b", "a"]
    assert embedder.calls == 2  # candidate titles once, then one batch for the pending texts


@pytest.fixture(scope="module")
def minilm():
    torch.set_num_threads(1)
    return TextEmbedder()


def test_minilm_embeddings_are_unit_384(minilm):
    vectors = minilm.encode(["The Matrix", "Toy Story", "The Matrix"])
    assert vectors.shape == (3, 384)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(vectors[0], vectors[2])


def test_minilm_similarity_is_semantic(minilm):
    matrix, bare, toy = minilm.encode(["The Matrix", "Matrix", "Toy Story"])
    assert float(matrix @ bare) > float(matrix @ toy)
    assert float(matrix @ bare) > 0.8


def test_minilm_cache_hits_skip_the_model(minilm, monkeypatch):
    minilm.encode(["Fargo"])
    monkeypatch.setattr(minilm, "_forward", lambda texts: pytest.fail(f"re-embedded {texts}"))
    assert minilm.encode(["Fargo", "Fargo"]).shape == (2, 384)


def test_minilm_lru_evicts_oldest():
    embedder = TextEmbedder(cache_size=2)
    embedder._load = lambda: None
    embedder._model = object()
    embedder._forward = lambda texts: torch.ones(len(texts), 384)
    embedder.encode(["a", "b", "c"])
    assert list(embedder._cache) == ["b", "c"]


def test_matcher_with_minilm_matches_a_paraphrased_title(minilm):
    matcher = TitleMatcher([("1", "Toy Story"), ("2", "Shawshank Redemption, The"), ("3", "Heat")],
                           embedder=minilm, threshold=0.7)
    result = matcher.match("Shawshank Redemption (the movie)")
    assert result.item_id == "2" and result.how in ("normalised", "embedding")
    assert matcher.match("Shawshank's Redemptions").item_id == "2"
    assert matcher.match("a documentary about penguins").item_id is None
