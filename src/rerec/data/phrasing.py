"""How generated requests are worded: several phrasings per condition kind, picked by a seeded RNG,
so that query text is never one template (RecBench+, arXiv 2503.09382, uses LLM-written paraphrases;
templates keep generation offline, fast and reproducible).

Every function takes the ``numpy.random.Generator`` that the query generator uses, so the same seed
gives the same words. Fragments returned here are also stored as each condition's ``text``.
"""

from __future__ import annotations

import re

import numpy as np

_ARTICLE_SUFFIX = re.compile(r"^(?P<body>.+), (?P<article>The|A|An|Les|La|Le|L'|Il|Das|Der|Die)$")

# MovieLens genre names -> how a person would say them.
_GENRE_WORDS = {
    "Children's": "children's",
    "Film-Noir": "film noir",
    "Sci-Fi": "sci-fi",
    "Fantasy": "fantasy",
}


def display_title(title: str) -> str:
    """'Usual Suspects, The' -> 'The Usual Suspects' (how a person writes it in a request)."""
    match = _ARTICLE_SUFFIX.match(title.strip())
    if not match:
        return title.strip()
    article = match["article"]
    sep = "" if article.endswith("'") else " "
    return f"{article}{sep}{match['body']}"


def genre_word(genre: str) -> str:
    return _GENRE_WORDS.get(genre, genre.lower())


def _with_article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def join_words(words: list[str], conjunction: str = "and") -> str:
    """['a'] -> 'a'; ['a', 'b'] -> 'a and b'; ['a', 'b', 'c'] -> 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.?!])", r"\1", text)
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------------------------
# named conditions (explicit queries; optional extra condition on implicit ones)

def time_fragment(relation: str, entity: str, rng: np.random.Generator) -> str:
    """A decade ('1990s') or year ('1995') condition as words."""
    if relation == "decade":
        short = f"'{entity[2:]}" if len(entity) == 5 and entity.endswith("s") else entity
        return _pick(rng, [f"from the {entity}", f"made in the {entity}", f"from the {short}",
                           f"released in the {entity}"])
    return _pick(rng, [f"from {entity}", f"released in {entity}", f"that came out in {entity}"])


def explicit_text(genres: list[str], time: str | None, rng: np.random.Generator) -> str:
    """A request for a movie with all ``genres`` (display words) and the ``time`` fragment."""
    time = time or ""
    if not genres:
        return _tidy(_pick(rng, [
            f"Can you recommend a movie {time}?",
            f"I'd like to watch something {time}.",
            f"Recommend me a film {time}.",
            f"What should I watch {time}?",
        ]))
    adjective = " and ".join(genres) if len(genres) <= 2 else join_words(genres)
    both = join_words(genres)
    if len(genres) > 1:
        both = ("both " if len(genres) == 2 else "at once ") + both
    return _tidy(_pick(rng, [
        f"Can you recommend {_with_article(adjective)} movie {time}?",
        f"I'm in the mood for {_with_article(adjective)} film {time}.",
        f"What's a good {adjective} movie {time}?",
        f"Suggest something {time} that is {both}.",
        f"I'm looking for a film {time} that counts as {both}.",
        f"Any {adjective} picks {time}? I want one movie.",
    ]))


def named_extra_fragment(relation: str, entity: str, rng: np.random.Generator) -> str:
    """A named condition appended to a multi-hop one ('... and that is a comedy')."""
    if relation == "genre":
        word = genre_word(entity)
        return _pick(rng, [f"that is {_with_article(word)} movie", f"and it should be {_with_article(word)} film",
                           f"in the {word} genre"])
    return time_fragment(relation, entity, rng)


# ---------------------------------------------------------------------------------------------
# multi-hop conditions (implicit and misinformed queries)

_HOP = {
    "director": ["by the director of {x}", "directed by whoever made {x}", "from the same director as {x}"],
    "actor": ["with an actor from {x}", "starring someone who was in {x}", "that shares a cast member with {x}"],
    "writer": ["written by the writer of {x}", "from the screenwriter of {x}", "by the same writer as {x}"],
    "producer": ["produced by a producer of {x}", "from one of the producers of {x}",
                 "that shares a producer with {x}"],
}
# The wrong link a misinformed request states as fact about the person it names.
_PREMISE = {
    "director": ["who also directed {y}", "the one behind {y}", "who made {y} as well"],
    "actor": ["who was also in {y}", "the same person who starred in {y}", "who also played in {y}"],
    "writer": ["who also wrote {y}", "the writer of {y} too", "who wrote {y} as well"],
    "producer": ["who also produced {y}", "the producer of {y} too", "who produced {y} as well"],
}


def hop_fragment(relation: str, via_title: str, rng: np.random.Generator) -> str:
    return _pick(rng, _HOP[relation]).format(x=display_title(via_title))


def premise_fragment(relation: str, premise_title: str, rng: np.random.Generator) -> str:
    return _pick(rng, _PREMISE[relation]).format(y=display_title(premise_title))


def implicit_text(conditions: list[str], via_title: str, rng: np.random.Generator) -> str:
    """Wrap condition fragments ('by the director of Fargo', 'from the 1990s') into a request."""
    cond = " ".join(conditions[:1] + [c if c.startswith(("and ", "that ", "in the ")) else f"and {c}"
                                      for c in conditions[1:]])
    via = display_title(via_title)
    lead = _pick(rng, ["", f"I really liked {via}.", f"{via} is one of my favourites.",
                       f"I watched {via} recently."])
    ask = _pick(rng, [f"Can you recommend a movie {cond}?", f"I'd like to watch something {cond}.",
                      f"Find me a film {cond}.", f"What else is there {cond}?"])
    return _tidy(f"{lead} {ask}")


def misinformed_hop_text(hop: str, premise: str, extra: list[str], rng: np.random.Generator) -> str:
    cond = f"{hop}, {premise},"
    if extra:
        cond += " " + " ".join(c if c.startswith(("and ", "that ", "in the ")) else f"and {c}" for c in extra)
    ask = _pick(rng, [f"Can you recommend a movie {cond}?", f"I'd like to watch something {cond}.",
                      f"Find me a film {cond}.", f"Please suggest a movie {cond}."])
    return _tidy(ask.replace(",?", "?").replace(",.", "."))


def misinformed_named_text(genre: str, premise_title: str, rng: np.random.Generator) -> tuple[str, str]:
    """'Another comedy like Heat' where Heat is no comedy: returns (request, premise fragment)."""
    word, title = genre_word(genre), display_title(premise_title)
    premise = _pick(rng, [f"like {title}", f"just like {title} was", f"in the style of {title}"])
    text = _pick(rng, [
        f"I loved {title} because it was {_with_article(word)}. Recommend another {word} movie.",
        f"Give me another {word} film {premise}.",
        f"{title} is my favourite {word} movie; what other {word} movie should I watch?",
        f"Looking for {_with_article(word)} movie {premise}.",
    ])
    return _tidy(text), premise


# ---------------------------------------------------------------------------------------------
# interest-based (co-interaction) queries

def interest_fragment(via_title: str, rng: np.random.Generator) -> str:
    return _pick(rng, ["loved {x}", "enjoyed {x}", "liked {x}"]).format(x=display_title(via_title))


def interest_text(via_titles: list[str], rng: np.random.Generator) -> str:
    items = join_words([display_title(t) for t in via_titles])
    return _tidy(_pick(rng, [
        f"People who loved {items}, like me, also watched something else. What should I see next?",
        f"Fans of {items} (I'm one of them) tend to watch one more film. Which one suits me?",
        f"I loved {items}. What do other viewers with the same taste watch?",
        f"Viewers who enjoyed {items} as much as I did also liked which movie?",
        f"Based on what people who liked {items} went on to watch, recommend me a movie.",
    ]))


# ---------------------------------------------------------------------------------------------
# Rewording a generated request from its stored conditions: paraphrases for training (QueryConfig.paraphrase)
# and a held-out family that no training text uses, for evaluating requests phrased unlike the templates
# above (rerec evaluate's "unseen phrasing" section). Each family says the same conditions in its own words.

PHRASE_FAMILIES = ("train", "heldout")

_FAMILY: dict[str, dict[str, list[str]]] = {
    "train": {
        "explicit": ["Could you point me to {a_want} {time}?", "Please pick {a_want} {time} for tonight.",
                     "My ideal film tonight is {a_want} {time}. Any suggestion?",
                     "Help me choose {a_want} {time}.", "Which {want} {time} would you suggest?"],
        "implicit": ["Could you point me to a film {cond}?", "Please pick something {cond} for me.",
                     "My next watch should be a movie {cond}. Any idea?", "Help me find a movie {cond}."],
        "misinformed": ["Could you point me to a film {cond}?", "Please pick something {cond} for me.",
                        "Help me find a movie {cond}."],
        "misinformed_genre": ["{x} was such a great {genre} film. Please suggest another {genre} movie.",
                              "Could you point me to a {genre} movie {premise}?",
                              "Help me find another {genre} film, {premise}."],
        "interest": ["Viewers with my taste loved {items}. Which film would they pick next for me?",
                     "Since I share the taste of people who enjoyed {items}, what should I watch?",
                     "Please pick a movie that fans of {items} also watch; I am one of them."],
        "lead": ["", "{via} was great.", "I enjoyed {via} a lot."],
        "decade": ["from the {decade}", "made during the {decade}"],
        "year": ["from {year}", "released in the year {year}"],
        "genre_extra": ["that is also {a_genre} film", "and in the {genre} genre"],
        "director": ["directed by the person who directed {x}", "by whoever directed {x}"],
        "actor": ["featuring an actor who appears in {x}", "with someone from the cast of {x}"],
        "writer": ["written by the screenwriter of {x}", "penned by whoever wrote {x}"],
        "producer": ["produced by someone who produced {x}", "with a producer of {x} behind it"],
        "premise_director": ["(the one who also directed {y})", "- the director of {y} too -"],
        "premise_actor": ["(who was also in {y})", "- also seen in {y} -"],
        "premise_writer": ["(the one who also wrote {y})", "- also the writer of {y} -"],
        "premise_producer": ["(who also produced {y})", "- a producer of {y} as well -"],
        "premise_genre": ["just like {x}", "similar to {x}"],
    },
    "heldout": {
        "explicit": ["need {a_want} {time}, got any", "{want} {time} pls", "feel like watching {want} {time} tbh",
                     "so what's {a_want} {time} i'd like", "gimme {a_want} {time}"],
        "implicit": ["something {cond} pls", "any flick {cond}? thx", "got anything {cond}",
                     "want to see a flick {cond}, ideas"],
        "misinformed": ["something {cond} pls", "any flick {cond}? thx", "got anything {cond}"],
        "misinformed_genre": ["{x} was a solid {genre} flick so gimme another {genre} one",
                              "more {genre} stuff {premise} pls", "another {genre} one {premise}?"],
        "interest": ["big fan of {items}. what else do ppl like me watch",
                     "{items} fan here, what's next", "ppl who dug {items} also watch what?"],
        "lead": ["", "loved {via}.", "{via} was a blast."],
        "decade": ["outta the {short}", "from back in the {short}"],
        "year": ["outta {year}", "from the year {year}"],
        "genre_extra": ["and make it {genre}", "{genre} pls"],
        "director": ["w/ whoever helmed {x}", "by {x}'s director"],
        "actor": ["w/ somebody from {x} in it", "starring anyone from {x}"],
        "writer": ["w/ whoever scripted {x}", "by {x}'s writer"],
        "producer": ["w/ the same producer as {x}", "from {x}'s producers"],
        "premise_director": ["(same guy did {y})", "(they made {y} too)"],
        "premise_actor": ["(they were in {y} too)", "(same person from {y})"],
        "premise_writer": ["(they wrote {y} too)", "(same writer did {y})"],
        "premise_producer": ["(they produced {y} too)", "(same producer did {y})"],
        "premise_genre": ["like {x}", "same vibe as {x}"],
    },
}


def _time_words(family: dict, cond: dict, rng: np.random.Generator) -> str:
    entity = str(cond["entity"])
    short = f"'{entity[2:]}" if len(entity) == 5 and entity.endswith("s") else entity
    if cond["relation"] == "decade":
        return _pick(rng, family["decade"]).format(decade=entity, short=short.lstrip("'"))
    return _pick(rng, family["year"]).format(year=entity)


def _named_words(family: dict, cond: dict, rng: np.random.Generator) -> str:
    if cond["relation"] == "genre":
        word = genre_word(str(cond["entity"]))
        return _pick(rng, family["genre_extra"]).format(genre=word, a_genre=_with_article(word))
    return _time_words(family, cond, rng)


def reword_request(qtype: str, conditions: list[dict], titles, family: str, rng: np.random.Generator) -> str | None:
    """The request of a generated query (its ``type`` and stored ``conditions``) in another family's words
    (:data:`PHRASE_FAMILIES`), saying the same conditions, the same named films and the same false premise.
    ``titles``: item id -> title (a mapping or a callable). None when the conditions are not a shape the
    query generator writes (the text is then kept)."""
    words = _FAMILY[family]
    title = titles if callable(titles) else (lambda i: titles[str(i)])

    def name(item_id) -> str:
        return display_title(str(title(str(item_id))))

    hops = [c for c in conditions if c.get("via") is not None and c["relation"] in _HOP]
    interest = [c for c in conditions if c.get("via") is not None and c["relation"] not in _HOP]
    named = [c for c in conditions if c.get("via") is None]
    if qtype == "explicit" and named and not hops and not interest:
        genres = [genre_word(str(c["entity"])) for c in named if c["relation"] == "genre"]
        times = [c for c in named if c["relation"] != "genre"]
        want = (join_words(genres) + " movie") if genres else "movie"
        time = " ".join(_time_words(words, c, rng) for c in times)
        return _tidy(_pick(rng, words["explicit"]).format(want=want, a_want=_with_article(want), time=time))
    if qtype == "interest" and interest and not hops:
        return _tidy(_pick(rng, words["interest"]).format(items=join_words([name(c["via"]) for c in interest])))
    if qtype in ("implicit", "misinformed") and len(hops) == 1 and not interest:
        hop = hops[0]
        cond = _pick(rng, words[hop["relation"]]).format(x=name(hop["via"]))
        premise = hop.get("false_premise")
        if qtype == "misinformed":
            if not isinstance(premise, dict) or premise.get("item_id") is None:
                return None
            cond += " " + _pick(rng, words[f"premise_{hop['relation']}"]).format(y=name(premise["item_id"]))
        cond = " ".join([cond] + [_named_words(words, c, rng) for c in named])
        if qtype == "implicit":
            lead = _pick(rng, words["lead"]).format(via=name(hop["via"]))
            return _tidy(f"{lead} {_pick(rng, words['implicit']).format(cond=cond)}")
        return _tidy(_pick(rng, words["misinformed"]).format(cond=cond))
    if qtype == "misinformed" and len(named) == 1 and named[0]["relation"] == "genre":
        premise = named[0].get("false_premise")
        if not isinstance(premise, dict) or premise.get("item_id") is None:
            return None
        x, genre = name(premise["item_id"]), genre_word(str(named[0]["entity"]))
        said = _pick(rng, words["premise_genre"]).format(x=x)
        return _tidy(_pick(rng, words["misinformed_genre"]).format(x=x, genre=genre, premise=said))
    return None
