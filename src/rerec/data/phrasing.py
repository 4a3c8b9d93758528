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
