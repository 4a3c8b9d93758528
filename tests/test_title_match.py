"""Title + year alignment of two film tables (rerec.data.title_match), on hand-made cases."""

from rerec.data.title_match import Film, align_films, title_aliases, title_numbers


def test_aliases_cover_articles_alternate_titles_and_accents():
    assert title_aliases("Usual Suspects, The") == {"the usual suspects"}
    assert title_aliases("Cinema Paradiso (Nuovo cinema Paradiso)") == {"cinema paradiso", "nuovo cinema paradiso"}
    assert title_aliases("RocketMan (a.k.a. Rocket Man)") == {"rocketman", "rocket man"}
    assert title_aliases("Amélie") == {"amelie"}
    assert title_aliases("Blood & Wine") == title_aliases("Blood and Wine") == {"blood and wine"}
    assert title_aliases("   ") == frozenset()


def test_numbers_are_sequel_numbers():
    assert title_numbers("star trek ii the wrath of khan") == {"ii"}
    assert title_numbers("se7en") == frozenset()
    assert title_numbers("bloodsport 2") == {"2"}


def _align(source, target, **kw):
    return align_films([Film(*s) for s in source], [Film(*t) for t in target], **kw)


def test_tiers():
    target = [("1", "Cinema Paradiso", 1988), ("2", "Heat", 1995), ("3", "Underneath, The", 1995),
              ("4", "Supercop", 1992)]
    result = _align([("10", "Heat", 1995), ("11", "Cinema Paradiso (Nuovo cinema Paradiso)", 1989),
                     ("12", "Underneath", 1995), ("13", "Supercop 2", 1993), ("14", "Heat", 1986)], target,
                    fuzzy_threshold=0.8)
    by = {m.source_id: (m.target_ids, m.tier) for m in result.matches}
    assert by["10"] == (("2",), "exact")
    assert by["11"] == (("1",), "year_off_by_one")
    assert by["12"] == (("3",), "fuzzy")          # "underneath" vs "the underneath"
    assert "13" in result.unmatched                # the numbers differ: a sequel is another film
    assert "14" in result.unmatched                # a remake nine years apart is another film
    assert result.counts()["matched"] == 3


def test_a_film_listed_twice_in_the_target_gets_both_ids():
    result = _align([("7", "Chasing Amy", 1997)], [("246", "Chasing Amy", 1997), ("268", "Chasing Amy", 1997)])
    assert result.matches[0].target_ids == ("246", "268")


def test_two_films_for_one_source_is_ambiguous_and_one_film_for_two_sources_is_contested():
    target = [("1", "Crash", 1996), ("2", "Collision (Crash)", 1996), ("3", "Fly Away Home", 1996)]
    result = _align([("9", "Crash", 1996)], target)
    assert result.ambiguous == ("9",) and not result.matches
    result = _align([("5", "Fly Away Home", 1996), ("6", "Fly Away Home", 1996)], target)
    assert sorted(result.contested) == ["5", "6"] and not result.matches


def test_fuzzy_needs_a_clear_winner():
    target = [("1", "Star Wars Episode A", 1977), ("2", "Star Wars Episode B", 1977)]
    result = _align([("9", "Star Wars Episode C", 1977)], target, fuzzy_threshold=0.8)
    assert result.ambiguous == ("9",)
