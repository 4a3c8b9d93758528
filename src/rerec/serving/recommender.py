"""Serving: a request goes through the prompt, the generator and the answer mapping that evaluation uses.

A request is ``{"request": text, "candidates": [...], "history": [...], "mentions": [...], "liked":
[...], "user_id": id}``, each list holding catalog item ids or titles (``liked``: the items the request
says the person liked; ``user_id``: a user of the training graph, whose taste a model trained with
taste evidence reads). :class:`Recommender` resolves them to item ids
(:class:`CatalogIndex`), turns the request into the query row evaluation ranks (text, candidates in
the order given, history, and the mentioned items as the items a request's conditions name, whose
shared people evidence mode shows), and ranks it with :class:`rerec.eval.generate.LLMRanker` - the
evaluation's own ranker: :func:`rerec.prompt.build_messages` with the model's context mode and
history setting (a model with taste evidence is shown the candidates in the person's taste order,
:func:`rerec.prompt.display_order`), the shared batched generator, :func:`rerec.prompt.answer_ranking`.
So a request served equals the query evaluation scored, token for token.

Response per request (:data:`RESPONSE_COLUMNS`):

- ``answer``: the candidate ids the model's boxed answer names, in its order, each once;
- ``ranked``: ``answer`` then the candidates it did not name, in the order given (always a
  permutation of the candidates; ``ranked[len(answer):]`` are appended, not chosen);
- ``titles``: the catalog titles of ``ranked``;
- ``answer_items``: the answer's items as the model wrote them, and ``matched`` the candidate id
  each names (None where it names no single candidate: unknown or ambiguous), which is the ranking
  evaluation scores;
- ``parsed``: whether the completion has a boxed answer; ``reasoning``: the completion before that
  box (all of it when there is none); ``completion``: the raw completion;
- ``warnings``: what of the request the model did not use, and why (:func:`request_warnings`).

Prompt settings (:class:`ServingSettings`) come from the evaluation report the model was judged by,
else the training config in the model folder's ``metrics.json``, else its profile, and can be set
explicitly; a request whose prompt is longer than ``max_prompt_tokens`` is refused rather than cut.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerec.config import with_current_names
from rerec.errors import ConfigError, InputError, RerecError
from rerec.models.folder import training_config

log = logging.getLogger(__name__)

REQUEST_COLUMNS = ("request", "candidates", "history", "mentions", "liked", "user_id")
RESPONSE_COLUMNS = ("answer", "ranked", "titles", "answer_items", "matched", "parsed", "reasoning", "completion",
                    "warnings")
#: a mentioned item that the request does not say the person liked ("by the director of Fargo"): its
#: condition's relation, which :func:`rerec.taste.liked_references` does not count as liked
MENTION = "mention"
CATALOG_FORMAT = "rerec.catalog_view/1"
GENERATION_PARAMS = ("max_new_tokens", "batch_size", "max_prompt_tokens")


@dataclass
class ServingSettings:
    """How the served model is prompted and decoded: the settings it was evaluated with."""

    context_mode: str = field(default="evidence", metadata={"help": "Prompt context mode: evidence or titles.",
                                                            "old_names": ("mode",)})
    max_history: int = field(default=5, metadata={"help": "History items shown per prompt (0: none)."})
    max_prompt_tokens: int = field(default=768, metadata={
        "help": "Longest prompt served, in tokens; longer requests are refused."})
    max_new_tokens: int = field(default=128, metadata={"help": "Tokens generated per answer (request default).",
                                                       "old_names": ("max_completion_tokens",)})
    batch_size: int = field(default=8, metadata={"help": "Prompts generated together (request default)."})
    n_candidates: int = field(default=0, metadata={
        "help": "Candidates per prompt the model was trained with (0: unknown); informational."})
    taste_evidence: bool = field(default=False, metadata={
        "help": "Evidence lines carry each candidate's taste rank for the user (rerec.taste); the model then "
                "carries its taste index (taste.npz)."})
    decade_evidence: bool = field(default=False, metadata={
        "help": "Evidence lines name each candidate's decade beside its year (\"Dumbo (1941) - 1940s; ...\")."})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ServingSettings:
        """The settings a model was registered with (its ``model_config``; one registered before the rename
        says ``mode``, read as ``context_mode``)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = with_current_names(cls, values, warn=False)
        return cls(**{k: v for k, v in values.items() if k in known})

    def check(self) -> ServingSettings:
        from rerec.prompt import MODES

        if self.context_mode not in MODES:
            raise ConfigError(f"serving context_mode {self.context_mode!r} is not one of {', '.join(MODES)}. Fix: pass "
                              "--context-mode evidence.")
        for name in ("max_prompt_tokens", "max_new_tokens", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"serving {name} must be at least 1, got {getattr(self, name)}.")
        if self.max_history < 0 or self.n_candidates < 0:
            raise ConfigError("serving max_history and n_candidates must be 0 or more.")
        return self


@dataclass
class ServingOverrides:
    """Serving settings given explicitly (CLI flags of ``rerec register`` and ``rerec recommend``);
    ``None`` keeps the value :func:`resolve_settings` finds."""

    context_mode: str | None = field(default=None, metadata={"help": "Prompt context mode: evidence or titles.",
                                                             "old_names": ("mode",)})
    max_history: int | None = field(default=None, metadata={"help": "History items shown per prompt (0: none)."})
    max_prompt_tokens: int | None = field(default=None, metadata={
        "help": "Longest prompt served, in tokens; longer requests are refused."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Tokens generated per answer."})
    batch_size: int | None = field(default=None, metadata={"help": "Prompts generated together."})
    taste_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's taste rank for the user (needs the graphs and reward folders)."})
    decade_evidence: bool | None = field(default=None, metadata={
        "help": "Show each candidate's decade beside its year."})


#: the settings a training config decides (the others, prompt limit and batch size, are the evaluation's)
TRAINED_SETTINGS = ("context_mode", "max_history", "max_new_tokens", "n_candidates", "taste_evidence", "decade_evidence")
_BOOL_SETTINGS = ("taste_evidence", "decade_evidence")


def resolve_settings(model_dir: str | Path | None = None, report: Mapping | None = None,
                     overrides: Mapping[str, Any] | None = None) -> tuple[ServingSettings, list[str]]:
    """The serving settings of a model and where each came from.

    Precedence, later wins: built-in defaults < the training profile named in ``model_dir/metrics.json``
    (``config.profile``) < that training config (:data:`TRAINED_SETTINGS`) < the evaluation report's ``config``
    (what the model was scored with) < ``overrides`` (non-None values). Every stage names these settings as
    :class:`ServingSettings` does; configs and reports saved before the names were shared say ``mode`` (evaluation)
    and ``max_completion_tokens`` (RFT), which are read as ``context_mode`` and ``max_new_tokens``. Returns the
    settings and notes (the source of each setting, and any training/evaluation disagreement).
    """
    values = ServingSettings().to_dict()
    source = dict.fromkeys(values, "default")
    notes: list[str] = []
    train = with_current_names(ServingSettings, training_config(model_dir) if model_dir else {}, warn=False)
    if train.get("profile"):
        from rerec.models.profiles import PROFILES

        profile = PROFILES.get(str(train["profile"]))
        if profile is not None:
            for key in (*TRAINED_SETTINGS, "max_prompt_tokens"):
                values[key], source[key] = getattr(profile, key), f"profile {profile.name}"
        if "decade_evidence" not in train:  # trained before the setting existed: its prompts showed no decades
            values["decade_evidence"], source["decade_evidence"] = False, "trained before decade evidence"
    trained = {key: train[key] for key in TRAINED_SETTINGS if train.get(key) is not None}
    for key, value in trained.items():
        values[key], source[key] = value, "training config"
    evaluated = with_current_names(ServingSettings, (report or {}).get("config") or {}, warn=False)
    for key in values:
        value = evaluated.get(key)
        if value is None:
            continue
        if key == "n_candidates" and not value:
            continue  # evaluation showed every candidate; keep the trained count
        if key in trained and key not in ("batch_size", "max_new_tokens") and trained[key] != value:
            notes.append(f"{key}: trained with {trained[key]!r}, evaluated with {value!r}; serving as evaluated")
        values[key], source[key] = value, "evaluation report"
    for key, value in with_current_names(ServingSettings, overrides or {}, "serving overrides").items():
        if value is not None and key in values:
            values[key], source[key] = value, "given"
    settings = ServingSettings(**{k: (v if k == "context_mode" else bool(v) if k in _BOOL_SETTINGS else int(v))
                                  for k, v in values.items()}).check()
    notes.insert(0, "settings: " + ", ".join(f"{k}={values[k]!r} ({source[k]})" for k in values))
    return settings, notes


# --- The catalog the model carries ----------------------------------------------------------------


def catalog_view_dict(view: Any, relations: Sequence[str] | None = None) -> dict:
    """A JSON-ready compact :class:`rerec.prompt.CatalogView`: every item's id, title, year and genres,
    and the item-attribute pairs of ``relations`` (default: the people relations evidence mode shows);
    popularity is left out (prompts do not use it)."""
    from rerec.prompt import EVIDENCE_RELATIONS

    keep = set(EVIDENCE_RELATIONS if relations is None else relations)
    items = [{"item_id": i, "title": t, "year": view.years.get(i), "genres": list(view.genres.get(i) or [])}
             for i, t in view.titles.items()]
    attributes = {}
    for item, rels in view.attributes.items():
        kept = {r: sorted(e) for r, e in rels.items() if r in keep and e}
        if kept:
            attributes[item] = kept
    return {"format": CATALOG_FORMAT, "relations": sorted(keep), "items": items, "attributes": attributes}


def catalog_view_from_dict(data: Mapping) -> Any:
    """The :class:`rerec.prompt.CatalogView` of :func:`catalog_view_dict`'s output."""
    from rerec.prompt import CatalogView

    if data.get("format") != CATALOG_FORMAT:
        raise RerecError(f"the model's catalog is in format {data.get('format')!r}, not {CATALOG_FORMAT!r}. "
                         "Fix: register the model again with this version of rerec.")
    items = data["items"]
    return CatalogView(
        titles={str(r["item_id"]): str(r["title"]) for r in items},
        years={str(r["item_id"]): (None if r.get("year") is None else int(r["year"])) for r in items},
        genres={str(r["item_id"]): [str(g) for g in r.get("genres") or []] for r in items},
        attributes={str(i): {r: set(e) for r, e in rels.items()} for i, rels in data.get("attributes", {}).items()},
    )


def write_catalog_view(view: Any, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(catalog_view_dict(view), ensure_ascii=False, sort_keys=True), encoding="utf-8")
    return path


def read_catalog_view(path: str | Path) -> Any:
    return catalog_view_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def catalog_view_of_data(data_dir: str | Path) -> Any:
    """The catalog view of a prepared data folder (or any dataset folder ``load_catalog`` reads), built
    as evaluation builds it."""
    from rerec.data.load import load_catalog
    from rerec.prompt import CatalogView

    return CatalogView.from_catalog(load_catalog(Path(data_dir)))


# --- Naming items in a request --------------------------------------------------------------------


class CatalogIndex:
    """Resolve what a request names - an item id or a title - to one catalog item id.

    In order: an item id; a title exactly as the catalog writes it, or with its year ("Heat (1995)");
    the matching key of :func:`rerec.reward.matching.normalise_title` (case, accents, punctuation,
    "Matrix, The" == "The Matrix"), narrowed by a year written in the text. Text naming several items
    (two films called "Cape Fear" and no year) or none is an error that says which items, or which
    titles come close.
    """

    def __init__(self, view: Any) -> None:
        from rerec.reward.matching import Candidate, normalise_title

        self.view = view
        self._exact: dict[str, list[str]] = {}
        self._keys: dict[str, list[str]] = {}
        for item, title in view.titles.items():
            label = Candidate(item, title, view.years.get(item)).label
            for text in {title, title.strip(), label}:
                self._exact.setdefault(text, []).append(item)
            self._keys.setdefault(normalise_title(title), []).append(item)

    def describe(self, item: str) -> str:
        year = self.view.years.get(item)
        return f"{item} ({self.view.titles[item]}{f', {year}' if year else ''})"

    def lookup(self, text: str) -> tuple[list[str], str]:
        """(matching item ids, how): one id when ``text`` names one item."""
        from rerec.reward.matching import normalise_title, title_year

        if text in self.view.titles:
            return [text], "id"
        hits = list(dict.fromkeys(self._exact.get(text, [])))
        if hits:
            return hits, "title"
        hits = list(dict.fromkeys(self._keys.get(normalise_title(text), [])))
        year = title_year(text)
        if year is not None and len(hits) > 1:
            hits = [i for i in hits if self.view.years.get(i) == year] or hits
        return hits, "normalised"

    def resolve(self, text: Any, column: str, row: int) -> str:
        from rerec.reward.matching import normalise_title

        value = _item_text(text, column, row)
        hits, _ = self.lookup(value)
        if len(hits) == 1:
            return hits[0]
        if hits:
            shown = "; ".join(self.describe(i) for i in hits[:5])
            years = {self.view.years.get(i) for i in hits}
            raise InputError(f"{value!r} names {len(hits)} catalog items: {shown}", column=column, row=row,
                             fix="pass the item id" + (", or the title with its year" if len(years) == len(hits) else ""))
        close = difflib.get_close_matches(normalise_title(value), list(self._keys), n=3, cutoff=0.75)
        near = [self.describe(i) for key in close for i in self._keys[key]][:3]
        raise InputError(f"{value!r} is not in the model's catalog (no item id or title matches it)",
                         column=column, row=row,
                         fix="pass an item id or a title as the catalog writes it"
                             + (f"; close titles: {'; '.join(near)}" if near else ""))


def _item_text(value: Any, column: str, row: int) -> str:
    if isinstance(value, bool) or value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise InputError(f"an entry is {value!r}, not an item id or title", column=column, row=row,
                         fix="list item ids or titles as strings")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise InputError("an entry is empty", column=column, row=row, fix="list item ids or titles")
    return text


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not hasattr(value, "__len__") or isinstance(value, str) else False
    except (TypeError, ValueError):
        return False


def _as_list(value: Any, column: str, row: int) -> list:
    if _is_missing(value):
        return []
    if isinstance(value, str | bytes | Mapping):
        raise InputError(f"{column} is {type(value).__name__} {str(value)[:60]!r}, not a list", column=column,
                         row=row, fix=f'send a JSON list, e.g. "{column}": ["Heat (1995)", "50"]')
    try:
        return list(value)
    except TypeError:
        raise InputError(f"{column} is {value!r}, not a list", column=column, row=row,
                         fix=f'send a JSON list, e.g. "{column}": ["Heat (1995)", "50"]') from None


def request_records(model_input: Any) -> list[dict]:
    """Requests as a list of dicts, from a DataFrame, a list of dicts, or one dict."""
    try:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            return model_input.to_dict("records")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(model_input, Mapping):
        return [dict(model_input)]
    if isinstance(model_input, Sequence) and all(isinstance(r, Mapping) for r in model_input):
        return [dict(r) for r in model_input]
    raise InputError(f"requests must be a table or a list of objects, got {type(model_input).__name__}",
                     fix='send {"dataframe_records": [{"request": "...", "candidates": ["..."]}]}')


def _user_id(value: Any, row: int) -> str | None:
    """A request's ``user_id`` as the training graph writes ids (a string), or None when absent."""
    if _is_missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | numbers.Integral | float):
        raise InputError(f"user_id is {type(value).__name__} {str(value)[:60]!r}, not an id", column="user_id",
                         row=row, fix='send the id as the training data writes it, e.g. "user_id": "196"')
    if isinstance(value, float):
        if not value.is_integer():
            raise InputError(f"user_id is {value!r}, not an id", column="user_id", row=row,
                             fix='send the id as a string, e.g. "user_id": "196"')
        value = int(value)
    text = str(value).strip()
    if not text:
        raise InputError("user_id is empty", column="user_id", row=row, fix="send a user id, or leave the field out")
    return text


def to_query(record: Mapping, index: CatalogIndex, row: int) -> dict:
    """One request -> the query row :func:`rerec.prompt.build_messages` renders. ``conditions`` holds the
    mentioned and the liked items as ``via`` items in the order the request lists them (mentions first,
    then liked items not mentioned), which is how a query names an item its request refers to; a liked
    item's condition is a ``co_interaction`` one (the user liked it: the taste rank counts its co-likes),
    a mention's is not (``MENTION``). ``user_id`` is kept as the query's user."""
    from rerec.data.schema import CO_INTERACTION

    unknown = sorted(set(record) - set(REQUEST_COLUMNS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(map(repr, unknown))}", row=row,
                         fix=f"send only {', '.join(REQUEST_COLUMNS)}")
    text = record.get("request")
    if _is_missing(text) or not isinstance(text, str) or not text.strip():
        raise InputError("the request text is missing or empty", column="request", row=row,
                         fix='say what the person wants, e.g. "request": "a 90s crime movie"')
    raw = _as_list(record.get("candidates"), "candidates", row)
    if not raw:
        raise InputError("the candidate list is empty", column="candidates", row=row,
                         fix="list at least one candidate item (an id or a title) for the model to rank")
    candidates: list[str] = []
    for position, value in enumerate(raw, start=1):
        item = index.resolve(value, "candidates", row)
        if item in candidates:
            first = candidates.index(item) + 1
            raise InputError(f"candidates {first} and {position} are the same item, {index.describe(item)}",
                             column="candidates", row=row, fix="list each candidate once")
        candidates.append(item)
    history = [index.resolve(v, "history", row) for v in _as_list(record.get("history"), "history", row)]
    mentions = [index.resolve(v, "mentions", row) for v in _as_list(record.get("mentions"), "mentions", row)]
    liked = [index.resolve(v, "liked", row) for v in _as_list(record.get("liked"), "liked", row)]
    conditions = [{"via": m, "relation": CO_INTERACTION if m in liked else MENTION}
                  for m in dict.fromkeys(mentions + liked)]
    return {"query_id": str(row), "user_id": _user_id(record.get("user_id"), row), "text": text.strip(),
            "candidates": candidates, "history": history, "conditions": conditions}


def request_of_query(query: Mapping) -> dict:
    """The request a client sends for a query row of ``queries.parquet``: its text, candidates and history
    by item id, as ``mentions`` the items its conditions name (``via`` items, misinformed premises), as
    ``liked`` those of them the request says the user liked (``co_interaction`` conditions: "I loved
    Fargo"), and its ``user_id``, so that :func:`to_query` gives back the prompt evaluation renders for
    that row (taste ranks included)."""
    from rerec.data.schema import CO_INTERACTION, decode_conditions

    mentions: list[str] = []
    liked: list[str] = []
    for cond in decode_conditions(query.get("conditions") or []):
        for item in (cond.get("via"), (cond.get("false_premise") or {}).get("item_id")):
            if item is not None and str(item) not in mentions:
                mentions.append(str(item))
        via = cond.get("via")
        if via is not None and cond.get("relation") in (None, "", CO_INTERACTION) and str(via) not in liked:
            liked.append(str(via))
    request = {"request": str(query["text"]), "candidates": [str(c) for c in query["candidates"]],
               "history": [str(h) for h in (query.get("history") if query.get("history") is not None else [])],
               "mentions": mentions, "liked": liked}
    if not _is_missing(query.get("user_id")) and str(query["user_id"]).strip():  # "": an anonymous query
        request["user_id"] = str(query["user_id"])
    return request


def request_warnings(query: Mapping, settings: ServingSettings, taste: Any, row: int) -> list[str]:
    """What of a request (:func:`to_query`'s row) this model does not use, as warnings for the response;
    an unknown ``user_id`` with nothing else to read the user's taste from is refused.

    ``history`` is used when the prompt shows it (``max_history > 0``) or, with taste evidence, to fold the
    user's taste in when the user is not known (:meth:`rerec.taste.TasteIndex.preference`). ``user_id`` is
    used with taste evidence only (in evidence mode)."""
    warnings: list[str] = []
    history, user = list(query.get("history") or []), query.get("user_id")
    tasted = bool(settings.taste_evidence) and settings.context_mode == "evidence" and taste is not None
    known = tasted and user is not None and user in taste.user_index
    folds_in = tasted and not known and bool(history) and taste.preference([], None, history) is not None
    if user is not None and not tasted:
        warnings.append(f"user_id {user!r} was not used: this model was trained without taste evidence, so its "
                        "prompt has nothing that depends on the user")
    elif user is not None and not known:
        if not folds_in:
            raise InputError(
                f"user_id {user!r} is not a user of the model's training graph, and no history the taste index "
                "knows was sent, so nothing would personalise the taste ranks", column="user_id", row=row,
                fix="send the person's history (items they liked), or leave user_id out to rank by popularity")
        warnings.append(f"user_id {user!r} is not a user of the model's training graph: the taste ranks come "
                        f"from the {len(history)} history item(s) instead")
    elif user is None and tasted and not folds_in:
        warnings.append("no user_id and no history the taste index knows: the taste ranks follow the liked "
                        "items' co-likes and popularity, not this person's taste")
    if history and settings.max_history == 0 and not folds_in:
        why = ("reads the user's taste from user_id" if known else "has no taste evidence" if not tasted
               else "its taste index knows none of these items")
        warnings.append(f"history was not used: this model shows no history (it was trained with max_history 0) "
                        f"and {why}")
    return warnings


def response(query: Mapping, answer: Any, view: Any, warnings: Sequence[str] = ()) -> dict:
    """The response to one query from its :class:`rerec.eval.generate.LLMAnswer` (see the module doc)."""
    from rerec.answer import parse_answer

    completion = answer.completion or ""
    parsed = parse_answer(completion)
    chosen = list(dict.fromkeys(i for i in answer.ranked if i is not None))
    ranked = chosen + [c for c in query["candidates"] if c not in chosen]
    reasoning = completion[: parsed.span[0]] if parsed.span else completion
    if answer.closed:
        warnings = [*warnings, "the model's reasoning ran past the last candidate without an answer; it was cut "
                               "there and the model was asked for its answer (as in evaluation)"]
    return {"answer": chosen, "ranked": ranked, "titles": [view.title(i) for i in ranked],
            "answer_items": list(parsed.items), "matched": list(answer.ranked), "parsed": bool(answer.parsed),
            "reasoning": reasoning.strip(), "completion": completion, "warnings": list(warnings)}


def _param(params: Mapping[str, Any] | None, name: str, default: int) -> int:
    """A whole-number generation param of at least 1 (``default`` when absent)."""
    value = (params or {}).get(name)
    if value is None:
        return int(default)
    whole = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) \
        or (isinstance(value, float) and value.is_integer()) or (isinstance(value, str) and value.strip().isdigit())
    if not whole or int(value) < 1:
        raise InputError(f"param {name} is {value!r}, not a whole number of at least 1",
                         fix=f'send e.g. "params": {{"{name}": {default}}}')
    return int(value)


class Recommender:
    """A model, its catalog and its settings: :meth:`recommend` answers requests (module doc)."""

    def __init__(self, model: Any, tokenizer: Any, view: Any, settings: ServingSettings, name: str = "served") -> None:
        self.model, self.tokenizer, self.view = model, tokenizer, view
        self.settings = settings.check()
        if self.settings.taste_evidence and getattr(view, "taste", None) is None:
            raise ConfigError("this model was trained and evaluated with taste evidence, but no taste index was "
                              "given, so its prompts would lack the taste ranks. Fix: register it with --graphs and "
                              "--reward (a registered model carries taste.npz), or pass them to rerec recommend.")
        view.decades = bool(self.settings.decade_evidence)  # the prompts as the model was trained and evaluated
        self.index = CatalogIndex(view)
        self.name = name

    @classmethod
    def load(cls, model_dir: str | Path, view: Any, settings: ServingSettings, name: str = "served") -> Recommender:
        """Load the model folder as evaluation loads it (:func:`rerec.models.loading.load_model`)."""
        from rerec.models.loading import load_model

        model, tokenizer = load_model(str(model_dir))
        return cls(model, tokenizer, view, settings, name=name)

    def ranker(self, max_new_tokens: int | None = None, batch_size: int | None = None,
               max_prompt_tokens: int | None = None) -> Any:
        """The evaluation's :class:`rerec.eval.generate.LLMRanker` with these settings."""
        from rerec.eval.generate import LLMRanker

        s = self.settings
        return LLMRanker(self.name, self.model, self.tokenizer, self.view, mode=s.context_mode, max_history=s.max_history,
                         max_new_tokens=max_new_tokens or s.max_new_tokens, batch_size=batch_size or s.batch_size,
                         max_prompt_tokens=max_prompt_tokens or s.max_prompt_tokens)

    def queries(self, requests: Any) -> list[dict]:
        records = request_records(requests)
        if not records:
            raise InputError("no requests were sent", fix="send at least one request")
        return [to_query(r, self.index, row) for row, r in enumerate(records)]

    def check_lengths(self, queries: Sequence[Mapping], ranker: Any) -> list[int]:
        """Prompt lengths in tokens (as the generator counts them); refuses any over the limit."""
        lengths = [len(self.tokenizer.encode(p, add_special_tokens=False)) for p in ranker.prompts(queries)]
        limit = ranker.max_prompt_tokens
        for row, n in enumerate(lengths):
            if n > limit:
                trained = (f" (it was trained with {self.settings.n_candidates} candidates a prompt)"
                           if self.settings.n_candidates else "")
                raise InputError(
                    f"the prompt is {n} tokens, over the model's limit of {limit}, the prompt length it was "
                    f"trained and evaluated with; it was not cut, which would drop the instructions", row=row,
                    fix=f"send fewer candidates{trained}, fewer history items or a shorter request, or raise "
                        f'the limit with "params": {{"max_prompt_tokens": {n}}} (the model never saw prompts that long)')
        return lengths

    def recommend(self, requests: Any, params: Mapping[str, Any] | None = None) -> list[dict]:
        """Rank every request's candidates; ``params``: ``max_new_tokens``, ``batch_size``,
        ``max_prompt_tokens`` (defaults: the settings). One batched generation for all requests."""
        unknown = sorted(set(params or {}) - set(GENERATION_PARAMS))
        if unknown:
            raise InputError(f"unknown param(s) {', '.join(map(repr, unknown))}",
                             fix=f"use {', '.join(GENERATION_PARAMS)}")
        s = self.settings
        ranker = self.ranker(_param(params, "max_new_tokens", s.max_new_tokens),
                             _param(params, "batch_size", s.batch_size),
                             _param(params, "max_prompt_tokens", s.max_prompt_tokens))
        queries = self.queries(requests)
        warnings = [request_warnings(q, s, getattr(self.view, "taste", None), row) for row, q in enumerate(queries)]
        self.check_lengths(queries, ranker)
        answers = ranker.rank_all(queries)
        return [response(q, a, self.view, w) for q, a, w in zip(queries, answers, warnings, strict=True)]
