"""The arms of the ablation experiment (``experiments/ablation.py``) and the summary of their per-query hits.

An *arm* is one RFT run from the shared SFT checkpoint with the same budget as every other arm. It is named by

- an ablation switch of :data:`rerec.train.rft.ABLATIONS` (``none`` is full ReRec and is reported as ``rerec``);
- a built-in variant (:data:`BUILTIN_VARIANTS`: ReRec or plain GRPO with the paper's reward weights);
- a variant the user names: ``{"name": {RFTConfig fields, nested like the RFT config}}``, ReRec unless the
  variant sets ``ablation``.

:func:`arm_fields` gives an arm's result name and the RFTConfig fields it sets on top of the shared config
(apply them with :func:`rerec.config.config_with`). :func:`summarise` turns per-query hits into Acc@1 per
query type with a 95% bootstrap interval and, against a reference arm, the paired difference on the same
queries (:func:`rerec.eval.metrics.paired_difference`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rerec.errors import ConfigError

#: arm sets ``--arms`` accepts by name; ``none`` is full ReRec
ARM_SETS: dict[str, list[str]] = {
    "default": ["plain_grpo", "none"],
    "all": ["plain_grpo", "none", "no_raae", "no_curriculum", "no_qas", "no_pas"],
    "weights": ["plain_grpo", "none", "rerec_paper_weights"],
}
#: named arms every run knows, as RFTConfig overrides (nested like the RFT config)
BUILTIN_VARIANTS: dict[str, dict] = {
    "rerec_paper_weights": {"reward": {"weights": "paper"}},
    "plain_grpo_paper_weights": {"ablation": "plain_grpo", "reward": {"weights": "paper"}},
}
#: result names that are not ablation switches
RESERVED = {"rerec", "sft_start"}


def arm_fields(arm: str, variants: Mapping[str, dict]) -> tuple[str, dict]:
    """An arm's name in the results and the RFTConfig fields it sets on top of the shared ones (nested dicts
    for the nested configs): an ablation switch (``none`` = ReRec, named ``rerec``), a built-in variant, or a
    variant of ``variants`` (ReRec unless the variant sets ``ablation``)."""
    from rerec.train.rft import ABLATIONS

    named = {**BUILTIN_VARIANTS, **variants}
    if arm in named:
        return arm, {"ablation": "none", **named[arm]}
    if arm in ABLATIONS:
        return ("rerec" if arm == "none" else arm), {"ablation": arm}
    raise ConfigError(f"--arms: unknown arm {arm!r}. Fix: use an ablation switch ({', '.join(ABLATIONS)}), a "
                      f"built-in variant ({', '.join(BUILTIN_VARIANTS)}) or the name of a variant defined with "
                      "--variants.")


def check_variants(variants: object) -> dict[str, dict]:
    """``--variants``: a JSON object of named arms, each an object of RFTConfig fields (nested configs as
    nested objects). Returns it unchanged, or raises :class:`ConfigError` naming the fix."""
    from rerec.train.rft import ABLATIONS

    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError('--variants: expected an object of named arms, each an object of RFTConfig fields, e.g. '
                          '\'{"rerec_probe1": {"curriculum": {"probe_every": 1}}}\'.')
    bad = [name for name in variants if not re.fullmatch(r"[A-Za-z0-9_.-]+", name)]
    if bad:
        raise ConfigError(f"--variants: {bad[0]!r} cannot name an arm (it names the arm's output folder). Fix: use "
                          "letters, digits, '_', '.' and '-'.")
    clash = sorted(set(variants) & (set(ABLATIONS) | RESERVED | set(BUILTIN_VARIANTS)))
    if clash:
        raise ConfigError(f"--variants: {', '.join(clash)} already name(s) an arm. Fix: give the variant another "
                          "name, such as rerec_probe1.")
    return variants


def resolve_arms(spec: str, variants: Mapping[str, dict]) -> list[str]:
    """``--arms``: a set of :data:`ARM_SETS` or a comma list of arms, each checked by :func:`arm_fields`
    (so an unknown arm fails before any work) and none named twice."""
    arms = ARM_SETS.get(spec) or spec.split(",")
    names = [arm_fields(arm, variants)[0] for arm in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"--arms names an arm twice: {','.join(arms)}. Fix: list each arm once.")
    return arms


def summarise(records: Sequence[Mapping], reference: Sequence[Mapping] | None) -> dict[str, dict]:
    """Acc@1 per query type and over all (``"all"``) from per-query records ``{"query_id", "type", "hit"}``:
    ``{type: {"n", "acc_at_1", "ci95"}}`` with a 95% bootstrap interval; with ``reference`` (the reference
    arm's records on the same queries) also ``diff_vs_plain``, its paired interval ``diff_ci95`` and
    ``separated`` (the interval excludes 0)."""
    from rerec.eval.metrics import bootstrap_ci, paired_difference

    types = sorted({r["type"] for r in records}) + ["all"]
    summary = {}
    base = {r["query_id"]: r["hit"] for r in reference} if reference else None
    for t in types:
        part = [r for r in records if t == "all" or r["type"] == t]
        hits = [r["hit"] for r in part]
        low, high = bootstrap_ci(hits)
        entry = {"n": len(hits), "acc_at_1": sum(hits) / max(len(hits), 1), "ci95": [low, high]}
        if base is not None:
            paired = paired_difference(hits, [base[r["query_id"]] for r in part])
            entry.update(diff_vs_plain=paired["diff"], diff_ci95=[paired["low"], paired["high"]],
                         separated=paired["separated"])
        summary[t] = entry
    return summary
