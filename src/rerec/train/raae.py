"""Reasoning-aware advantage estimation (RAAE), ReRec (arXiv 2604.07851) section 3.3, as pure functions
(the method and its reasoning: ``docs/method.md``).

A completion is split into reasoning segments; when the final answer is wrong, every segment other than
the answer that names the wrongly recommended item is penalised. The paper lowers those tokens' reward,

    r_{i,t} = r_i - w_penalty * |r_i|                 on the tokens of a penalised segment, r_i elsewhere

(it writes ``(1 - w_penalty) * r``, which *raises* a negative reward). The default estimator, ``raae``,
subtracts a fixed ``w_penalty`` (reward units; a right answer's ranking term is 1) from GRPO's
sequence-level advantage in units of the group's reward spread:

    A_{i,t} = (r_i - mean_g r) / (std_g r + eps) - w_penalty * [t penalised] / max(std_g r, sigma_floor)

so nothing penalised gives GRPO's advantages exactly, the penalty's effect is bounded by
``w_penalty / sigma_floor`` whatever share of the tokens it hits, and, like GRPO, nothing changes when a
constant is added to every reward (``raae_scaled`` keeps the ``w_penalty * |r_i|`` form). The paper's
token-level normalisation (``raae_paper``) is kept for reference; it is unbounded.

Advantage estimators are registered by name (verl's ``core_algos`` style) and share one signature
(:func:`get_advantage_estimator`). Shapes: B = number of completions (prompts x G, each prompt's G
completions consecutive, as TRL lays them out), T = completion length.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from rerec.answer import canonical_text, parse_answer
from rerec.errors import ConfigError
from rerec.reward.matching import _PARENTHETICAL, _TRAILING_ARTICLE, _YEAR_AT_END, _YEAR_SUFFIX, _fold, _words

__all__ = [
    "Segment",
    "ItemName",
    "LongerTitles",
    "segment_completion",
    "mention_text",
    "mentions_item",
    "segment_rewards",
    "penalised_segments",
    "token_char_spans",
    "token_rewards",
    "token_penalty_mask",
    "penalised_token_rewards",
    "group_normalise",
    "grpo_group_stats",
    "grpo_sequence_advantages",
    "uniform_groups",
    "anchor_uniform_groups",
    "register_advantage_estimator",
    "get_advantage_estimator",
    "ADVANTAGE_ESTIMATORS",
    "AdvantageConfig",
]

SEGMENT_MODES = ("paragraph", "line", "step")

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_STEP_START = re.compile(r"^[ \t]*(?:step[ \t]*\d+[ \t]*[:.)-]|\d+[.)])", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Segment:
    """A contiguous span ``text[start_char:end_char]`` of a completion; ``is_answer`` marks the one
    holding the final ``\\boxed{}`` answer."""

    start_char: int
    end_char: int
    text: str
    is_answer: bool = False


def _answer_start(text: str) -> int | None:
    """Where the box the answer is read from starts (:func:`rerec.answer.parse_answer`'s ``span``): the
    last *complete* box, so a final box cut off by the token limit is not the answer segment."""
    span = parse_answer(text).span
    return span[0] if span is not None else None


def _starts(text: str, mode: str) -> list[int]:
    if mode == "paragraph":
        return [0] + [m.end() for m in _PARAGRAPH_BREAK.finditer(text) if m.end() < len(text)]
    if mode == "line":
        return [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text)]
    if mode == "step":
        starts = [0] + [m.start() for m in _STEP_START.finditer(text)]
        answer_at = _answer_start(text)
        if answer_at is not None:  # the line holding the answer is a segment of its own, not part of the last step
            starts.append(text.rfind("\n", 0, answer_at) + 1)
        return starts
    raise ValueError(f"unknown segment mode {mode!r}; use one of {', '.join(SEGMENT_MODES)}")


def segment_completion(text: str, mode: str = "paragraph") -> list[Segment]:
    """Split ``text`` into contiguous segments covering every character.

    ``paragraph``: blank-line separated blocks; ``line``: lines; ``step``: numbered steps ("1." / "2)" /
    "Step 3:") with any preamble as its own segment and the line holding the final ``\\boxed{}`` split
    off. Separators stay with the segment before them, so every character (and so every token) belongs
    to exactly one segment. The answer segment is the one holding the box the parser answers from (the
    last complete ``\\boxed{...}``); a completion without a complete box has none.
    """
    starts = sorted(set(_starts(text, mode)))
    ends = starts[1:] + [len(text)]
    answer_at = _answer_start(text)
    segments = []
    for start, end in zip(starts, ends, strict=True):
        is_answer = answer_at is not None and start <= answer_at < end
        segments.append(Segment(start, end, text[start:end], is_answer))
    return segments


@dataclass(frozen=True)
class ItemName:
    """How reasoning text can name one candidate: its ``title`` and its displayed ``number``.
    ``year`` is required in the text when another candidate shares the title (a remake), so a segment
    about "Cape Fear (1962)" does not name "Cape Fear (1991)". ``longer`` holds other titles that contain
    this one as whole words ("Batman Returns" for "Batman", :class:`LongerTitles`): where the text names
    one of them, it does not name this item."""

    title: str | None = None
    number: int | None = None
    year: int | None = None
    year_required: bool = False
    longer: tuple[str, ...] = ()


def mention_text(text: str) -> str:
    """Text as titles are looked for in it, the matcher's normalisation (:mod:`rerec.reward.matching`):
    NFC without format characters, accents folded, case-folded, apostrophes dropped, ``&`` read as
    "and", other punctuation and whitespace runs collapsed to one space. Articles and years stay."""
    return _words(_fold(canonical_text(text)))


def _forms_of(part: str) -> set[str]:
    """A folded title part as words, and with a trailing article moved to the front ("matrix, the" ->
    "matrix the", "the matrix")."""
    forms = {_words(part)}
    article = _TRAILING_ARTICLE.search(part)
    if article:
        forms.add(_words(article.group(0).strip(" ,") + " " + part[:article.start()]))
    return forms


def _title_variants(title: str, year: int | None = None, year_required: bool = False) -> set[str]:
    """The word forms (:func:`mention_text`) that name a title in reasoning text, by the matcher's rules:
    "Matrix, The (1999)" -> {"matrix the", "the matrix", "matrix the 1999", "the matrix 1999"};
    a title with a parenthetical alternative also by each part: "Seven (Se7en)" -> also "seven", "se7en";
    with ``year_required`` only the forms that carry the year. An article is never dropped, so "The Game"
    is not named by every "game"."""
    folded = _fold(canonical_text(title)).strip()
    found = _YEAR_AT_END.search(folded)
    year = int(found.group(1)) if found else year
    bare = _YEAR_SUFFIX.sub("", folded).strip()
    forms = _forms_of(bare)
    paren = _PARENTHETICAL.match(bare)
    if paren and paren.group(1):
        forms |= _forms_of(paren.group(1)) | _forms_of(paren.group(2))
    forms = {f for f in forms if len(f) >= 2}
    with_year = {f"{f} {year}" for f in forms} if year is not None else set()
    return with_year if year_required and with_year else forms | with_year


def _spans(text: str, forms: set[str]) -> list[tuple[int, int]]:
    """Where each form occurs in ``text`` (both :func:`mention_text`), as whole words."""
    return [(m.start(), m.start() + len(f)) for f in forms
            for m in re.finditer(rf"(?<!\S)(?={re.escape(f)}(?!\S))", text)]


class LongerTitles:
    """The catalog's titles indexed by word, to find for one title the others that contain it as whole
    words ("Batman" -> "Batman Returns", "Batman Forever", ...), for :attr:`ItemName.longer`. Cached per
    title."""

    def __init__(self, titles) -> None:
        self._forms: dict[str, set[str]] = {}
        self._by_word: dict[str, set[str]] = {}
        for t in dict.fromkeys(str(t) for t in titles):
            self._forms[t] = _title_variants(t)
            for form in self._forms[t]:
                for word in form.split():
                    self._by_word.setdefault(word, set()).add(t)
        self._cache: dict[str, tuple[str, ...]] = {}

    def containing(self, title: str) -> tuple[str, ...]:
        """Titles (other than ``title``) one of whose forms holds one of ``title``'s forms as whole words
        and is longer."""
        if title not in self._cache:
            own = _title_variants(title)
            pool: set[str] = set()  # titles holding every word of one of the forms
            for form in own:
                pool |= set.intersection(*[self._by_word.get(w, set()) for w in form.split()])
            out = []
            for other in sorted(pool - {title}):
                if any(len(o) > len(f) and _spans(o, {f}) for o in self._forms[other] for f in own):
                    out.append(other)
            self._cache[title] = tuple(out)
        return self._cache[title]


def _names_number(text: str, number: int) -> bool:
    """An explicit candidate reference: "candidate 7", "option 7", "number 7", "no. 7", "#7", "[7]".
    A line that starts "7." is a reasoning step as often as a candidate, so it never counts alone (the
    prompt's candidate line "7. Title" names the item by its title)."""
    n = re.escape(str(number))
    pattern = rf"(?:#\s*{n}\b|\[{n}\]|\b(?:candidate|option|number|no\.)\s*#?\s*{n}\b)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def mentions_item(text: str, name: str | int | ItemName) -> bool:
    """Whether ``text`` names an item: a title, or a candidate number given as an ``int``, a digit string
    or ``ItemName.number``, in an explicit reference (:func:`_names_number`).

    Titles are compared in the matcher's normalisation on both sides (:func:`mention_text`: "AMÉLIE",
    "Amelie" and a decomposed "Ame\u0301lie" are one word), as whole words, with or without the year,
    "Matrix, The" as "The Matrix", and a "Main (Alternative)" title also by either part ("Se7en" names
    "Seven (Se7en)"); only with its year when :class:`ItemName` says a remake shares the title. A match
    inside a longer title of ``ItemName.longer`` does not count: "Batman Returns" does not name
    "Batman"."""
    longer: tuple[str, ...] = ()
    if isinstance(name, ItemName):
        if name.number is not None and _names_number(text, name.number):
            return True
        if not name.title:
            return False
        variants = _title_variants(name.title, name.year, name.year_required)
        longer = name.longer
    else:
        name = str(name).strip()
        if name.isdigit():
            return _names_number(text, int(name))
        variants = _title_variants(name)
    norm = mention_text(text)
    found = _spans(norm, variants)
    if not found or not longer:
        return bool(found)
    covers = [span for t in longer for span in _spans(norm, _title_variants(t))]
    return any(not any(a <= s and e <= b and b - a > e - s for a, b in covers) for s, e in found)


def segment_rewards(
    reward: float, segments: Sequence[Segment], wrong_item_names: Sequence[str | int | ItemName], w_penalty: float
) -> list[float]:
    """One reward per segment (RAAE's segment penalty).

    Args:
        reward: the completion's scalar reward r.
        segments: from :func:`segment_completion`.
        wrong_item_names: names of the wrongly recommended item (:class:`ItemName`, or a title and/or a
            candidate number); empty when the answer is right or absent: every segment keeps r.
        w_penalty: in [0, 1]; penalised segments get ``r - w_penalty * |r|``.
    Returns:
        list of floats, one per segment; the answer segment always keeps r.
    """
    penalised = reward - w_penalty * abs(reward)
    out = []
    for seg in segments:
        names_wrong = not seg.is_answer and any(mentions_item(seg.text, n) for n in wrong_item_names)
        out.append(penalised if names_wrong else float(reward))
    return out


def token_char_spans(tokenizer, token_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decode ``token_ids`` one token at a time: returns the text (the concatenation of the pieces,
    special tokens as "") and each token's ``(start_char, end_char)`` in it, so the char -> token mapping
    is exact for the text that gets segmented. One ``batch_decode`` call, O(T)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pieces = tokenizer.batch_decode([[int(t)] for t in token_ids], clean_up_tokenization_spaces=False)
    spans, pos, parts = [], 0, []
    for tid, piece in zip(token_ids, pieces, strict=True):
        piece = "" if int(tid) in special else piece
        spans.append((pos, pos + len(piece)))
        parts.append(piece)
        pos += len(piece)
    return "".join(parts), spans


def token_rewards(
    segment_rewards: Sequence[Sequence[float]],
    segments: Sequence[Sequence[Segment]],
    token_spans: Sequence[Sequence[tuple[int, int]]],
    completion_mask: torch.Tensor,
) -> torch.Tensor:
    """Broadcast each segment's reward to its tokens.

    Args:
        segment_rewards: B lists, one reward per segment.
        segments: B lists of segments (contiguous, covering the text).
        token_spans: B lists of ``(start_char, end_char)`` per completion token (before padding).
        completion_mask: (B, T), 1 for valid completion tokens.
    Returns:
        (B, T) float tensor: token t of completion i gets the reward of the segment holding its first
        character (a zero-width token, e.g. EOS, the segment at that position); padding gets 0.
    """
    out = torch.zeros(completion_mask.shape, dtype=torch.float32)
    for i, (rewards, segs, spans) in enumerate(zip(segment_rewards, segments, token_spans, strict=True)):
        if not segs:
            continue
        starts = [s.start_char for s in segs]
        row = [rewards[max(bisect.bisect_right(starts, start) - 1, 0)] for start, _ in spans]
        n = min(len(row), out.shape[1])
        out[i, :n] = torch.tensor(row[:n], dtype=torch.float32)
    return out * completion_mask.to(out.dtype).cpu()


def _group_index(batch_size: int, group_size: int | None, group_ids: torch.Tensor | None) -> torch.Tensor:
    if group_ids is not None:
        _, inverse = torch.unique(group_ids, return_inverse=True)
        return inverse
    if not group_size or batch_size % group_size:
        raise ValueError(f"batch of {batch_size} completions is not a whole number of groups of {group_size}")
    return torch.arange(batch_size) // group_size


def group_normalise(
    token_rewards: torch.Tensor,
    mask: torch.Tensor,
    group_size: int | None = None,
    group_ids: torch.Tensor | None = None,
    eps: float = 1e-4,
    correction: int = 0,
) -> torch.Tensor:
    """Token-level group normalisation (RAAE): ``A = (r - mean) / (std + eps)`` with mean and std over
    ALL valid tokens of a prompt's completions (a longer completion weighs more).

    Args:
        token_rewards: (B, T) per-token rewards.
        mask: (B, T), 1 for valid tokens; masked positions get advantage 0.
        group_size: G, when the batch is B/G consecutive groups; or
        group_ids: (B,) prompt id of each completion (any order).
        eps: added to the std.
        correction: 0 for the population std (default), 1 for the unbiased one.
    Returns:
        (B, T) advantages.
    """
    mask_f = mask.to(token_rewards.dtype)
    group = _group_index(token_rewards.shape[0], group_size, group_ids).to(token_rewards.device)
    n_groups = int(group.max()) + 1
    count = torch.zeros(n_groups, dtype=token_rewards.dtype, device=token_rewards.device)
    total = torch.zeros_like(count)
    count.index_add_(0, group, mask_f.sum(1))
    total.index_add_(0, group, (token_rewards * mask_f).sum(1))
    mean = total / count.clamp(min=1)
    centred = (token_rewards - mean[group].unsqueeze(1)) * mask_f
    sq = torch.zeros_like(count).index_add_(0, group, (centred**2).sum(1))
    std = (sq / (count - correction).clamp(min=1)).sqrt()
    return centred / (std[group].unsqueeze(1) + eps) * mask_f


def uniform_groups(sequence_rewards: torch.Tensor, group_size: int | None = None,
                   group_ids: torch.Tensor | None = None, tol: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """``(group index per completion (B,), whether each group's completions share one reward (n_groups,))``:
    the groups where GRPO has no signal."""
    group = _group_index(sequence_rewards.shape[0], group_size, group_ids).to(sequence_rewards.device)
    n_groups = int(group.max()) + 1
    hi = torch.full((n_groups,), -torch.inf, dtype=sequence_rewards.dtype).scatter_reduce(
        0, group, sequence_rewards, "amax")
    lo = torch.full((n_groups,), torch.inf, dtype=sequence_rewards.dtype).scatter_reduce(
        0, group, sequence_rewards, "amin")
    return group, (hi - lo) <= tol


def anchor_uniform_groups(
    advantages: torch.Tensor,
    sequence_rewards: torch.Tensor,
    mask: torch.Tensor,
    group_size: int | None = None,
    group_ids: torch.Tensor | None = None,
    tol: float = 1e-8,
) -> torch.Tensor:
    """Where all completions of a group share one reward, shift its token advantages so that the
    unpenalised tokens get 0 and the penalised ones stay below (a guard of ours, not in the paper).

    In such a group GRPO has no signal, but token-level normalisation turns RAAE's penalty into a
    *positive* advantage for every unpenalised token: when G completions all box the same wrong item,
    their answer lines would be reinforced. Anchoring keeps the penalty's push down on segments that
    name the wrong item and nothing else. Groups whose rewards differ are returned unchanged.

    Args:
        advantages: (B, T) from :func:`group_normalise`.
        sequence_rewards: (B,) each completion's scalar reward r.
        mask: (B, T), 1 for valid tokens.
    Returns:
        (B, T) advantages.
    """
    group, uniform = uniform_groups(sequence_rewards.to(advantages.dtype), group_size, group_ids, tol)
    if not bool(uniform.any()):
        return advantages
    row_top = advantages.masked_fill(~mask.bool(), -torch.inf).amax(1)
    top = torch.full_like(uniform, -torch.inf, dtype=advantages.dtype).scatter_reduce(0, group, row_top, "amax")
    shift = torch.where(uniform & torch.isfinite(top), top, torch.zeros_like(top))
    return (advantages - shift[group].unsqueeze(1)) * mask.to(advantages.dtype)


# ----------------------------------------------------------------------------------------- penalty mask
def penalised_segments(segments: Sequence[Segment], wrong_item_names: Sequence[str | int]) -> list[bool]:
    """Which segments RAAE penalises: exactly those :func:`segment_rewards` lowers (it is asked with
    r = 1 and w_penalty = 1, so a penalised segment comes back as 0), so both share one definition."""
    return [r < 1.0 for r in segment_rewards(1.0, segments, wrong_item_names, 1.0)]


def token_penalty_mask(
    penalised: Sequence[Sequence[bool]],
    segments: Sequence[Sequence[Segment]],
    token_spans: Sequence[Sequence[tuple[int, int]]],
    completion_mask: torch.Tensor,
) -> torch.Tensor:
    """(B, T) bool: token t of completion i lies in a penalised segment (the segment holding its first
    character, as in :func:`token_rewards`); padding is False. ``penalised`` holds B lists, one flag
    per segment (:func:`penalised_segments`)."""
    flags = [[float(p) for p in row] for row in penalised]
    return token_rewards(flags, segments, token_spans, completion_mask) > 0.5


# ----------------------------------------------------------------------------------------- estimators
EPS = 1e-4  # TRL's: GRPO's advantage is (r - mean) / (std + 1e-4)


def _check_groups(batch_size: int, group_size: int) -> None:
    if group_size < 2 or batch_size % group_size:
        raise ValueError(f"a batch of {batch_size} completions is not a whole number of groups of {group_size} "
                         "(GRPO needs at least 2 completions per prompt, consecutive as TRL lays them out)")


def grpo_group_stats(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each completion's group mean and group std (B,) of the rewards (B,), TRL 1.16's way: groups of
    ``group_size`` consecutive completions, ``nanmean`` and the unbiased (Bessel-corrected) ``nanstd``."""
    _check_groups(rewards.shape[0], group_size)
    grouped = rewards.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    variance = torch.nanmean((grouped - mean) ** 2, dim=1, keepdim=True)
    count = torch.sum(~torch.isnan(grouped), dim=1, keepdim=True).to(rewards.dtype)
    variance = variance * (count / (count - 1))
    std = torch.sqrt(variance).squeeze(1)
    return mean.squeeze(1).repeat_interleave(group_size), std.repeat_interleave(group_size)


def grpo_sequence_advantages(rewards: torch.Tensor, group_size: int, eps: float = EPS) -> torch.Tensor:
    """GRPO's advantage (B,): ``(r_i - mean_g r) / (std_g r + eps)`` with TRL's unbiased group std."""
    mean, std = grpo_group_stats(rewards, group_size)
    return torch.nan_to_num((rewards - mean) / (std + eps), nan=0.0)


def penalised_token_rewards(rewards: torch.Tensor, penalised: torch.Tensor, mask: torch.Tensor,
                            w_penalty: float) -> torch.Tensor:
    """(B, T) token rewards ``r_{i,t}``: ``r_i - w_penalty * |r_i|`` on penalised tokens, ``r_i`` on the
    other valid ones, 0 on padding."""
    penalty = (w_penalty * rewards.abs()).unsqueeze(1) * penalised.to(rewards.dtype)
    return (rewards.unsqueeze(1) - penalty) * mask.to(rewards.dtype)


AdvantageEstimator = Callable[..., torch.Tensor]
ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register_advantage_estimator(name: str, uses_penalty: bool = True) -> Callable[[AdvantageEstimator],
                                                                                   AdvantageEstimator]:
    """Register an estimator under ``name`` (verl's ``core_algos`` style). ``uses_penalty=False`` tells the
    trainer it need not segment completions for it."""
    def wrap(fn: AdvantageEstimator) -> AdvantageEstimator:
        fn.uses_penalty = uses_penalty  # type: ignore[attr-defined]
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn

    return wrap


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """``estimator(rewards (B,), penalised (B, T) bool, mask (B, T), group_size, *, w_penalty, sigma_floor,
    eps=EPS) -> advantages (B, T)``, 0 on padding; groups are ``group_size`` consecutive completions."""
    if name not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; use one of {', '.join(ADVANTAGE_ESTIMATORS)}")
    return ADVANTAGE_ESTIMATORS[name]


@register_advantage_estimator("grpo", uses_penalty=False)
def grpo_advantages(rewards: torch.Tensor, penalised: torch.Tensor | None, mask: torch.Tensor, group_size: int, *,
                    w_penalty: float = 0.0, sigma_floor: float = 1.0, eps: float = EPS) -> torch.Tensor:
    """Plain GRPO (TRL's advantage), broadcast to the valid tokens: ``A_{i,t} = (r_i - mean_g r) /
    (std_g r + eps)``. The penalty arguments are ignored."""
    return grpo_sequence_advantages(rewards, group_size, eps).unsqueeze(1) * mask.to(rewards.dtype)


def _bounded_raae(rewards: torch.Tensor, penalised: torch.Tensor, mask: torch.Tensor, group_size: int,
                  penalty: torch.Tensor, sigma_floor: float, eps: float) -> torch.Tensor:
    """GRPO's advantage minus ``penalty`` (B,) on penalised tokens, in units of ``max(std_g r, sigma_floor)``."""
    if not sigma_floor > 0:
        raise ValueError(f"sigma_floor must be > 0, got {sigma_floor}")
    mean, std = grpo_group_stats(rewards, group_size)
    base = torch.nan_to_num((rewards - mean) / (std + eps), nan=0.0)
    mask_f = mask.to(rewards.dtype)
    shift = -penalty / std.clamp(min=sigma_floor)
    return base.unsqueeze(1) * mask_f + shift.unsqueeze(1) * penalised.to(rewards.dtype) * mask_f


@register_advantage_estimator("raae")
def raae_advantages(rewards: torch.Tensor, penalised: torch.Tensor, mask: torch.Tensor, group_size: int, *,
                    w_penalty: float, sigma_floor: float, eps: float = EPS) -> torch.Tensor:
    """Bounded RAAE (ours): GRPO's advantage plus the token's penalty in units of the group's reward spread,

        A_{i,t} = (r_i - mean_g r) / (std_g r + eps) - w_penalty * [t penalised] / max(std_g r, sigma_floor)

    ``std_g`` TRL's unbiased group std. The penalty is ``w_penalty`` reward units whatever r_i is (a right
    answer's ranking term is 1 under every weighting), so like GRPO it does not move when a constant is
    added to every reward (docs/method.md says why; ``raae_scaled`` is the earlier ``w_penalty * |r_i|``).
    Nothing penalised gives GRPO's advantages exactly; the penalty's effect is linear in ``w_penalty`` and
    at most ``w_penalty / sigma_floor`` whatever share of the tokens it hits. ``sigma_floor`` (> 0) is in
    reward units (the trainer takes a fraction of the reward's range). Returns (B, T), 0 on padding."""
    return _bounded_raae(rewards, penalised, mask, group_size, torch.full_like(rewards, w_penalty), sigma_floor, eps)


@register_advantage_estimator("raae_scaled")
def raae_scaled_advantages(rewards: torch.Tensor, penalised: torch.Tensor, mask: torch.Tensor, group_size: int, *,
                           w_penalty: float, sigma_floor: float, eps: float = EPS) -> torch.Tensor:
    """``raae`` as rerec trained with before, the penalty proportional to the reward's size: ``r_{i,t} - r_i =
    -w_penalty * |r_i|`` (so its effect is at most ``w_penalty * |r_i| / sigma_floor``). Kept to reproduce
    results trained with it: it depends on the reward's offset, which GRPO itself ignores."""
    return _bounded_raae(rewards, penalised, mask, group_size, w_penalty * rewards.abs(), sigma_floor, eps)


@register_advantage_estimator("raae_paper")
def raae_paper_advantages(rewards: torch.Tensor, penalised: torch.Tensor, mask: torch.Tensor, group_size: int, *,
                          w_penalty: float, sigma_floor: float = 1.0, eps: float = EPS) -> torch.Tensor:
    """The paper's token-level normalisation, literally: ``A_{i,t} = (r_{i,t} - mean) / (std + eps)`` over all
    valid tokens of the group (population std). Kept for reference: it is UNBOUNDED, since in a group whose
    completions share one reward a penalised token gets about ``-1/sqrt(share of penalised tokens)``
    however small the penalty (``sigma_floor`` is ignored)."""
    _check_groups(rewards.shape[0], group_size)
    tok = penalised_token_rewards(rewards, penalised, mask, w_penalty)
    return group_normalise(tok, mask, group_size=group_size, eps=eps)


@register_advantage_estimator("raae_anchored")
def raae_anchored_advantages(rewards: torch.Tensor, penalised: torch.Tensor, mask: torch.Tensor, group_size: int, *,
                             w_penalty: float, sigma_floor: float = 1.0, eps: float = EPS) -> torch.Tensor:
    """``raae_paper`` with the groups whose completions share one reward shifted so that their unpenalised
    tokens get 0 (:func:`anchor_uniform_groups`), kept to reproduce results trained with it. Unbounded like
    ``raae_paper``."""
    advantages = raae_paper_advantages(rewards, penalised, mask, group_size, w_penalty=w_penalty, eps=eps)
    return anchor_uniform_groups(advantages, rewards, mask, group_size)


ESTIMATORS = tuple(ADVANTAGE_ESTIMATORS)


@dataclass
class AdvantageConfig:
    """How RFT turns rewards into per-token advantages (the estimator and RAAE's segment penalty)."""

    estimator: str = field(default="raae", metadata={
        "help": "raae (GRPO plus a bounded segment penalty of w_penalty reward units), grpo (TRL's sequence-level "
                "advantage), raae_scaled (raae with the penalty w_penalty*|r|, as trained before), raae_paper (the "
                "paper's token-level normalisation, unbounded) or raae_anchored (raae_paper with uniform-reward "
                "groups anchored at 0).", "choices": ESTIMATORS})
    segment_mode: str = field(default="step", metadata={"help": "How completions are split into reasoning "
                                                                "segments: paragraph, line or step.",
                                                        "choices": SEGMENT_MODES})
    w_penalty: float = field(default=0.3, metadata={"help": "Segment penalty: a wrong answer's segments that name "
                                                            "the wrong item are pushed down as if their completion "
                                                            "had earned w_penalty less (raae; raae_scaled and the "
                                                            "paper's: w_penalty*|r| less; paper: 0.3)."})
    sigma_floor: float = field(default=0.1, metadata={"help": "Floor of the group reward std that scales the "
                                                              "penalty (raae), as a fraction of the reward's range "
                                                              "(highest minus lowest achievable reward)."})

    def __post_init__(self) -> None:
        if self.estimator not in ADVANTAGE_ESTIMATORS:
            raise ConfigError(f"unknown advantage estimator {self.estimator!r}. Fix: use one of "
                              f"{', '.join(ADVANTAGE_ESTIMATORS)}.")
        if self.segment_mode not in SEGMENT_MODES:
            raise ConfigError(f"unknown segment mode {self.segment_mode!r}. Fix: use one of {', '.join(SEGMENT_MODES)}.")
        if not 0.0 <= self.w_penalty <= 1.0:
            raise ConfigError(f"w_penalty must be in [0, 1], got {self.w_penalty}. Fix: use the paper's 0.3.")
        if not 0.0 < self.sigma_floor <= 1.0:
            raise ConfigError(f"sigma_floor is a fraction of the reward's range in (0, 1], got {self.sigma_floor}. "
                              "Fix: use 0.1.")
