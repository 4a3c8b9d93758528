"""The dual-graph reward of a batch of completions (``docs/method.md``, "Reward"; ReRec,
arXiv 2604.07851, Sec. 3.2):

    r = NDCG@K(answer list, G) + w_q·QAS + w_p·PAS + w_f·format

- NDCG@K keeps the order of the answer list (:mod:`rerec.reward.metrics`); K is the answer length
  asked for (``top_k``: 1 in the default top-1 mode, where NDCG@1 is 1 for a right first answer and
  0 otherwise) unless ``ndcg_k`` says otherwise.
- QAS and PAS (:mod:`rerec.reward.alignment`) score the recommended item, the top-1 of the answer
  (None when the first answer item matches no candidate), against each positive, keeping the best.
- format is ``+format_bonus`` for a *valid* answer and ``-format_penalty`` otherwise. Valid: a
  ``\\boxed{}`` answer whose items each name one candidate, with no item repeated and no more than
  ``top_k`` items (:meth:`rerec.reward.matching.RankedAnswer.valid`).

The completion's ranked answer comes from :func:`rerec.reward.matching.rank_answers`, the function
evaluation and serving use too: an answer item that names no candidate keeps its place as a miss.

Malformed completions (no box, empty box, several boxes, non-candidates, repeats, a 10,000-character
ramble, an echoed prompt) get a defined reward and never raise. The batch path caches one
:class:`~rerec.reward.matching.TitleMatcher` and its QAS/PAS look-ups per distinct query, since
GRPO scores G completions of each prompt; the embedding fallback embeds every unmatched answer
item of the batch in one pass.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from rerec.answer import ParsedAnswer
from rerec.errors import ConfigError, InputError
from rerec.reward.alignment import (
    AttributeGraph,
    ItemEmbeddingTable,
    checkable_conditions,
    condition_pairs,
    preference_alignment_score,
    query_alignment_score,
)
from rerec.reward.matching import Embedder, RankedAnswer, TitleMatcher, rank_answers
from rerec.reward.metrics import hit_at_k, ndcg_at_k, recall_at_k

WEIGHTINGS: dict[str, dict[str, float]] = {
    # ours: QAS and PAS weigh half the ranking term, and a malformed answer costs more than any alignment earns
    "rerec": {"w_query": 0.5, "w_pref": 0.5, "w_format": 1.0, "format_bonus": 0.1, "format_penalty": 0.5},
    # the paper's code: NDCG@1 + 0.01 QAS + 0.01 PAS + 0.1 (+0.5 valid / -0.5 otherwise)
    "paper": {"w_query": 0.01, "w_pref": 0.01, "w_format": 0.1, "format_bonus": 0.5, "format_penalty": 0.5},
}
WEIGHT_FIELDS = ("w_query", "w_pref", "w_format", "format_bonus", "format_penalty")


@dataclass
class RewardConfig:
    """Weights and switches of the dual-graph reward. The weights left unset (None) take the values of the
    ``weights`` weighting; one given explicitly overrides the weighting's (:meth:`resolved`)."""

    # ranking
    top_k: int = field(default=1, metadata={"help": "Answer list length asked for: 1 is top-1 mode "
                                            "(\\boxed{Title}), K > 1 is \\boxed{T1; ...; TK}. Longer answers are "
                                            "not valid format."})
    ndcg_k: int | None = field(default=None, metadata={"help": "K of NDCG@K, Recall@K and Hit@K; unset means "
                                                       "top_k, so items beyond the asked length never count."})
    # weights (ReRec Sec. 3.2: r = NDCG + w_q QAS + w_p PAS + w_f format)
    weights: str = field(default="rerec", metadata={"help": "Weighting: rerec (QAS 0.5, PAS 0.5, format 1.0 x "
                                                            "(+0.1 valid / -0.5 otherwise)) or paper (QAS 0.01, PAS "
                                                            "0.01, format 0.1 x (+0.5 / -0.5)); a weight given "
                                                            "explicitly overrides the weighting's.",
                                                    "choices": tuple(WEIGHTINGS)})
    w_query: float | None = field(default=None, metadata={"help": "Weight of query alignment (QAS, item-attribute "
                                                                  "graph); unset: the weighting's."})
    w_pref: float | None = field(default=None, metadata={"help": "Weight of preference alignment (PAS, LightGCN); "
                                                                 "unset: the weighting's."})
    w_format: float | None = field(default=None, metadata={"help": "Weight of the format term; unset: the weighting's."})
    format_bonus: float | None = field(default=None, metadata={"help": "Format term of a valid answer (boxed, every "
                                                                       "item a candidate, no repeats, at most top_k "
                                                                       "items); unset: the weighting's."})
    format_penalty: float | None = field(default=None, metadata={"help": "Format term of any other completion is "
                                                                         "minus this; unset: the weighting's."})
    # ablations
    use_qas: bool = field(default=True, metadata={"help": "Include QAS (off: the no-QAS ablation)."})
    use_pas: bool = field(default=True, metadata={"help": "Include PAS (off: the no-PAS ablation)."})
    # matching
    embedding_threshold: float = field(default=0.8, metadata={"help": "Lowest cosine similarity (all-MiniLM-L6-v2) "
                                                              "accepted when matching an answer title to a candidate."})
    cache_queries: int = field(default=4096, metadata={"help": "Distinct queries whose matcher and look-ups are cached."})

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTINGS:
            raise ConfigError(f"unknown reward weighting {self.weights!r}. Fix: use one of "
                              f"{', '.join(WEIGHTINGS)}.")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}. Fix: use 1 for top-1 answers.")
        if self.ndcg_k is not None and self.ndcg_k < 1:
            raise ConfigError(f"ndcg_k must be at least 1, got {self.ndcg_k}. Fix: leave it unset to use top_k.")
        for name in WEIGHT_FIELDS:
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}. "
                                  "Fix: use 0 to switch a term off.")
        if not -1.0 <= self.embedding_threshold <= 1.0:
            raise ConfigError(f"embedding_threshold is a cosine similarity in [-1, 1], got "
                              f"{self.embedding_threshold}. Fix: use e.g. 0.8.")

    def resolved(self) -> RewardConfig:
        """A copy with every unset weight taken from the ``weights`` weighting."""
        weighting = WEIGHTINGS[self.weights]
        return replace(self, **{name: weighting[name] for name in WEIGHT_FIELDS if getattr(self, name) is None})

    @property
    def k(self) -> int:
        return self.ndcg_k if self.ndcg_k is not None else self.top_k


@dataclass(slots=True)
class RewardBreakdown:
    """One completion's reward and everything it was made of.

    ``matched_items`` is aligned with ``parsed.items``: the candidate id each answer item matched,
    None where it matched none. ``recommended`` is the top-1 (``matched_items[0]``, or None).
    ``valid`` is the format test; ``format`` the signed, unweighted format term.
    """

    total: float
    ndcg: float
    recall: float
    hit: float
    qas: float
    pas: float
    format: float
    parsed: ParsedAnswer
    matched_items: list[str | None]
    recommended: str | None
    valid: bool
    match_kinds: list[str | None] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The numeric components, with MLflow-safe names."""
        return {"reward": self.total, "ndcg": self.ndcg, "recall": self.recall, "hit": self.hit,
                "qas": self.qas, "pas": self.pas, "format": self.format, "valid": float(self.valid)}


class _QueryContext:
    """What the scorer reuses across the G completions of one query."""

    __slots__ = ("matcher", "positives", "pairs", "checkable", "qas", "pas")

    def __init__(self, matcher: TitleMatcher, positives: list[str], pairs: list[tuple[str, str]]) -> None:
        self.matcher = matcher
        self.positives = positives
        self.pairs = pairs
        self.checkable: list[list[tuple[str, str]]] | None = None
        self.qas: dict[str, float] = {}
        self.pas: dict[str, float] = {}


def _id_list(value: object, key: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [value]
    if value is None:
        return []
    try:
        return [str(v) for v in value]  # lists, tuples, numpy arrays from parquet
    except TypeError:
        raise InputError(f"query field '{key}' must be a list of item ids, got {type(value).__name__}",
                         column=key, fix="store candidates and positives as lists of ids") from None


def _completion_text(completion: object) -> str:
    """Plain text, or the last message's content of a conversational completion (TRL's format)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    if isinstance(completion, Mapping):
        content = completion.get("content", "")
        return content if isinstance(content, str) else ""
    return ""


class RewardScorer:
    """Score completions against queries with the dual-graph reward (module docstring).

    Args:
        config: weights and switches (unset weights take the weighting's values).
        titles: item_id -> title for every item that can be a candidate.
        years: item_id -> release year (optional): tells apart candidates that share a title.
        attribute_graph: anything with ``satisfies``/``attributes_of``
            (:class:`rerec.graphs.attributes.ItemAttributeGraph`); None turns QAS off.
        embeddings: LightGCN item embeddings (:class:`ItemEmbeddingTable` or the saved dict);
            None turns PAS off.
        embedder: a text embedder for the title-matching fallback (:class:`TextEmbedder`); None
            matches exactly, normalised and by number only.

    QAS and PAS are part of the reward (and of its range in :meth:`normalised`) only when their
    switch is on *and* their graph is given: see :attr:`qas_on`, :attr:`pas_on`.
    """

    def __init__(
        self,
        config: RewardConfig | None = None,
        titles: Mapping[str, str] | None = None,
        years: Mapping[str, int | None] | None = None,
        attribute_graph: AttributeGraph | None = None,
        embeddings: ItemEmbeddingTable | Mapping | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.config = (config or RewardConfig()).resolved()
        self.titles = {str(k): str(v) for k, v in (titles or {}).items()}
        self.years = {str(k): v for k, v in (years or {}).items() if v is not None}
        self.attribute_graph = attribute_graph
        if embeddings is not None and not isinstance(embeddings, ItemEmbeddingTable):
            embeddings = ItemEmbeddingTable.from_saved(embeddings)
        self.embeddings = embeddings
        self.embedder = embedder
        self.qas_on = self.config.use_qas and attribute_graph is not None
        self.pas_on = self.config.use_pas and embeddings is not None
        self._contexts: OrderedDict[tuple, _QueryContext] = OrderedDict()
        self.__name__ = "dual_graph_reward"  # TRL logs reward functions by __name__

    # ------------------------------------------------------------------ range
    @property
    def bounds(self) -> tuple[float, float]:
        """(lowest, highest) achievable total."""
        c = self.config
        worst_format, best_format = min(c.format_bonus, -c.format_penalty), max(c.format_bonus, -c.format_penalty)
        high = 1.0 + c.w_query * self.qas_on + c.w_pref * self.pas_on + c.w_format * best_format
        return c.w_format * worst_format, high

    def normalised(self, total: float) -> float:
        """r-hat in [0, 1]: the total min-max scaled over :attr:`bounds` (the curriculum's input)."""
        low, high = self.bounds
        if high <= low:
            return 0.0
        return min(1.0, max(0.0, (total - low) / (high - low)))

    # ------------------------------------------------------------------ per query
    def _context(self, query: Mapping) -> _QueryContext:
        try:
            candidates, positives = query["candidates"], query["positives"]
        except KeyError as exc:
            raise InputError(f"a query has no '{exc.args[0]}' field", column=exc.args[0],
                             fix="pass query rows with candidates, positives and conditions") from None
        conditions = query.get("conditions")
        key = (
            tuple(candidates) if not isinstance(candidates, str) else candidates,
            tuple(positives) if not isinstance(positives, str) else positives,
            conditions if isinstance(conditions, str) or conditions is None else repr(conditions),
        )
        try:
            context = self._contexts.get(key)
        except TypeError:  # unhashable ids: no caching
            key, context = None, None
        if context is not None:
            self._contexts.move_to_end(key)
            return context
        candidate_ids = _id_list(candidates, "candidates")
        matcher = TitleMatcher([(i, self.titles.get(i, ""), self.years.get(i)) for i in candidate_ids],
                               embedder=self.embedder, threshold=self.config.embedding_threshold)
        context = _QueryContext(matcher, _id_list(positives, "positives"), condition_pairs(conditions))
        if key is not None:
            self._contexts[key] = context
            if len(self._contexts) > self.config.cache_queries:
                self._contexts.popitem(last=False)
        return context

    def _qas(self, context: _QueryContext, item: str | None) -> float:
        """The best QAS of ``item`` over the query's positives, cached per (query, item); the checkable
        conditions of each positive are computed once per query."""
        if item is None or not self.qas_on:
            return 0.0
        value = context.qas.get(item)
        if value is None:
            graph, truths = self.attribute_graph, context.positives or [None]
            if context.checkable is None:
                context.checkable = [checkable_conditions(context.pairs, graph, truth) for truth in truths]
            value = context.qas[item] = max(
                query_alignment_score(item, None, graph, truth, checkable=checkable)
                for truth, checkable in zip(truths, context.checkable, strict=True))
        return value

    def _pas(self, context: _QueryContext, item: str | None) -> float:
        if item is None or not self.pas_on:
            return 0.0
        value = context.pas.get(item)
        if value is None:
            value = max((preference_alignment_score(item, truth, self.embeddings) for truth in context.positives),
                        default=0.0)
            context.pas[item] = value
        return value

    # ------------------------------------------------------------------ batch
    def score(self, completions: Sequence[object], queries: Sequence[Mapping]) -> list[RewardBreakdown]:
        """One :class:`RewardBreakdown` per completion; ``queries[i]`` is completion i's query
        (``candidates`` in displayed order, ``positives``, ``conditions`` as JSON or list, ``type``)."""
        if len(completions) != len(queries):
            raise InputError(f"{len(completions)} completions but {len(queries)} queries",
                             fix="pass one query per completion (repeat a prompt's query for each rollout)")
        contexts = [self._context(q) for q in queries]
        answers = rank_answers([_completion_text(c) for c in completions], [ctx.matcher for ctx in contexts])
        return [self._breakdown(ctx, a) for ctx, a in zip(contexts, answers, strict=True)]

    def _breakdown(self, context: _QueryContext, answer: RankedAnswer) -> RewardBreakdown:
        c = self.config
        ranked = answer.ranked
        k, positives = c.k, context.positives
        ndcg = ndcg_at_k(ranked, positives, k)
        recall = recall_at_k(ranked, positives, k)
        hit = hit_at_k(ranked, positives, k)
        recommended = answer.top1
        valid = answer.valid(c.top_k)
        fmt = c.format_bonus if valid else -c.format_penalty
        qas = self._qas(context, recommended)
        pas = self._pas(context, recommended)
        total = ndcg + c.w_query * qas + c.w_pref * pas + c.w_format * fmt
        return RewardBreakdown(total=total, ndcg=ndcg, recall=recall, hit=hit, qas=qas, pas=pas, format=fmt,
                               parsed=answer.parsed, matched_items=ranked, recommended=recommended, valid=valid,
                               match_kinds=answer.kinds)

    def __call__(self, prompts: Sequence | None = None, completions: Sequence | None = None,
                 **columns: Sequence) -> list[float]:
        """A TRL reward function: dataset columns ``candidates``, ``positives``, ``conditions``
        arrive as keyword lists, one entry per completion; returns the totals."""
        completions = completions or []
        names = [n for n in ("candidates", "positives", "conditions", "type") if n in columns]
        queries = [{n: columns[n][i] for n in names} for i in range(len(completions))]
        return [b.total for b in self.score(completions, queries)]

    def config_dict(self) -> dict:
        return asdict(self.config)
