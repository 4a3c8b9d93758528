"""Online curriculum over prompts, ReRec (arXiv 2604.07851) section 3.4, plus probing and a fallback.

An *epoch* here is a re-assessment window: a fixed number of prompts (:func:`window_size`, sized from
the run's budget so that difficulty is re-assessed ``assessments`` times in a run, not once per pass over
a train set far larger than the budget). After each window a prompt's difficulty is the mean over the
rollouts made for it in that window of

    d = mean_g (1 - r_hat_g)            r_hat in [0, 1] (the reward scaled by RewardScorer.normalised)

Prompts with ``d < tau`` are *mastered* and leave the active set; the rest run the next epoch ordered
from easy to hard (ties broken by a seeded random key). Beyond the paper:

- every ``probe_every`` epochs a seeded sample (``probe_fraction``) of the mastered prompts runs again;
  a probe whose difficulty is back at or above ``tau`` was forgotten and rejoins the active set;
- when fewer than ``min_active`` prompts remain active the fallback is explicit and recorded in
  ``history``: ``"reactivate"`` brings back the hardest mastered prompts, ``"stop"`` sets ``stopped``.

No extra inference: :meth:`record` takes the rewards of rollouts the trainer already made. The
scheduler is pure Python and JSON-serialisable (:meth:`state_dict`), so a checkpoint holds it exactly.

    sched = CurriculumScheduler(prompt_ids, tau=0.2)
    order = sched.begin_epoch(0)          # idempotent; advancing closes the previous epoch
    sched.record(["q1", "q1"], [0.9, 1.0])
    order = sched.begin_epoch(1)
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

FALLBACKS = ("reactivate", "stop")


@dataclass
class CurriculumConfig:
    """The online curriculum's knobs (module docstring); ``enabled`` is read by the RFT stage, which
    builds no scheduler (TRL's shuffled sampler) when it is off."""

    enabled: bool = field(default=True, metadata={"help": "Order prompts by the online curriculum (off: TRL's "
                                                          "shuffled sampler)."})
    tau: float = field(default=0.2, metadata={"help": "Mastery threshold: prompts with difficulty d < tau leave "
                                                      "the active set (d = mean over rollouts of 1 - r_hat)."})
    probe_every: int = field(default=2, metadata={"help": "Probe mastered prompts again every this many epochs "
                                                          "(0 disables probing)."})
    probe_fraction: float = field(default=0.25, metadata={"help": "Fraction of the mastered prompts probed."})
    min_active: int = field(default=4, metadata={"help": "Fewest active prompts before the fallback applies."})
    fallback: str = field(default="reactivate", metadata={"help": "When too few prompts remain: 'reactivate' the "
                                                                  "hardest mastered ones, or 'stop' training.",
                                                          "choices": FALLBACKS})
    window: int = field(default=0, metadata={"help": "Prompts per re-assessment window (a curriculum epoch); 0 = "
                                                     "sized from the budget: steps x batch_size / assessments."})
    assessments: int = field(default=4, metadata={"help": "With window 0: how many windows a run has, so difficulty "
                                                          "is re-assessed after each but the last."})
    screen: int = field(default=0, metadata={"help": "Before training, answer this many training prompts (a seeded "
                                                     "sample stratified by type) greedily with the start model and "
                                                     "train only on those it misses (rerec.train.screen); 0 = train "
                                                     "on every training prompt."})
    screen_answered: float = field(default=0.0, metadata={
        "help": "With screen: answered prompts trained beside the missed ones, per missed one (0 = misses only)."})

    @property
    def screened(self) -> int:
        """How many training prompts the RFT stage screens: ``screen`` with the curriculum on, else 0."""
        return self.screen if self.enabled else 0


def window_size(config: CurriculumConfig, n_prompts: int, steps: int, batch_size: int) -> int:
    """Prompts per curriculum epoch (re-assessment window): ``config.window``, or when it is 0 the run's
    prompts (``steps * batch_size``) split into ``config.assessments`` windows, rounded up to whole steps
    of ``batch_size`` prompts; never more than the ``n_prompts`` training prompts (an epoch is then one
    pass, as in the paper) and never less than one step.

    >>> window_size(CurriculumConfig(), n_prompts=4417, steps=8, batch_size=2)  # make run: 16 prompts
    4
    >>> window_size(CurriculumConfig(), n_prompts=4417, steps=30, batch_size=2)  # the 30-step ablation
    16
    """
    if config.window > 0:
        wanted = config.window
    else:
        wanted = math.ceil(max(steps, 1) / max(config.assessments, 1)) * batch_size
    whole = max(batch_size, n_prompts // batch_size * batch_size)
    return max(batch_size, min(math.ceil(wanted / batch_size) * batch_size, whole))


def _tiebreak(seed: int, epoch: int, prompt_id: str) -> str:
    return hashlib.sha256(f"{seed}:{epoch}:{prompt_id}".encode()).hexdigest()


class CurriculumScheduler:
    """Tracks the active set, difficulties and the per-epoch prompt order. See the module docstring."""

    def __init__(self, prompt_ids: Sequence[str], config: CurriculumConfig | None = None, seed: int = 0) -> None:
        self.config = config or CurriculumConfig()
        if self.config.fallback not in FALLBACKS:
            raise ValueError(f"unknown curriculum fallback {self.config.fallback!r}; use one of {FALLBACKS}")
        self.prompt_ids = [str(p) for p in prompt_ids]
        if len(set(self.prompt_ids)) != len(self.prompt_ids):
            raise ValueError("curriculum prompt ids must be unique")
        self.seed = seed
        self.epoch = -1
        self.active: list[str] = list(self.prompt_ids)
        self.mastered: list[str] = []
        self.difficulty: dict[str, float] = {}
        self.pending: dict[str, list[float]] = {}
        self.probes: list[str] = []
        self.order: list[str] = []
        self.stopped = False
        self.history: list[dict] = []

    # -- rollouts ---------------------------------------------------------------------------------
    def record(self, prompt_ids: Sequence[str], normalised_rewards: Sequence[float]) -> None:
        """Add one rollout per (prompt id, r_hat in [0, 1]) to the current epoch's statistics."""
        for pid, r in zip(prompt_ids, normalised_rewards, strict=True):
            r = min(max(float(r), 0.0), 1.0)
            self.pending.setdefault(str(pid), []).append(1.0 - r)

    # -- epochs -----------------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> list[str]:
        """The prompt order for ``epoch`` (easy to hard, probes included). Idempotent for the current
        epoch; moving forward closes every epoch in between (mastery, probes, fallback)."""
        while self.epoch < epoch:
            if self.epoch >= 0:
                self._close_epoch()
            self._open_epoch()
        return list(self.order)

    def _close_epoch(self) -> None:
        cfg = self.config
        newly_mastered, forgotten, probe_kept = [], [], []
        for pid, values in self.pending.items():
            self.difficulty[pid] = sum(values) / len(values)
        active = set(self.active)
        for pid in self.pending:
            d = self.difficulty[pid]
            if pid in active and d < cfg.tau:
                newly_mastered.append(pid)
            elif pid in self.probes:
                (forgotten if d >= cfg.tau else probe_kept).append(pid)
        mastered_now = set(newly_mastered)
        forgotten_set = set(forgotten)
        self.active = [p for p in self.prompt_ids if (p in active and p not in mastered_now) or p in forgotten_set]
        self.mastered = [p for p in self.prompt_ids if p not in set(self.active)]
        seen = [self.difficulty[p] for p in self.pending]
        self.history.append({
            "epoch": self.epoch,
            "n_rollouts": sum(len(v) for v in self.pending.values()),
            "mean_difficulty": sum(seen) / len(seen) if seen else None,
            "newly_mastered": sorted(newly_mastered),
            "forgotten": sorted(forgotten),
            "probes_still_mastered": sorted(probe_kept),
            "n_active_after": len(self.active),
            "n_mastered_after": len(self.mastered),
            "difficulties": {p: round(self.difficulty[p], 6) for p in sorted(self.pending)},
        })
        if forgotten:
            log.info("curriculum epoch %d: %d probed prompt(s) forgotten, back in the active set", self.epoch,
                     len(forgotten))
        self.pending = {}

    def _open_epoch(self) -> None:
        cfg = self.config
        self.epoch += 1
        fallback = None
        if len(self.active) < cfg.min_active and self.epoch > 0:
            if cfg.fallback == "reactivate" and self.mastered:
                need = cfg.min_active - len(self.active)
                hardest = sorted(self.mastered, key=lambda p: (-self.difficulty.get(p, 0.0),
                                                              _tiebreak(self.seed, self.epoch, p)))[:need]
                back = set(hardest)
                self.active = [p for p in self.prompt_ids if p in set(self.active) | back]
                self.mastered = [p for p in self.mastered if p not in back]
                fallback = {"kind": "reactivate", "prompts": sorted(hardest)}
            elif cfg.fallback == "stop" or not self.mastered:
                self.stopped = cfg.fallback == "stop"
                fallback = {"kind": cfg.fallback if self.stopped else "none_left", "n_active": len(self.active)}
            log.warning("curriculum epoch %d: only %d active prompt(s) (< min_active %d); fallback %s",
                        self.epoch, len(self.active), cfg.min_active, fallback)
        self.probes = []
        if cfg.probe_every > 0 and self.epoch > 0 and self.epoch % cfg.probe_every == 0 and self.mastered:
            k = max(1, math.ceil(cfg.probe_fraction * len(self.mastered)))
            rng = random.Random(f"{self.seed}:{self.epoch}:probe")
            self.probes = sorted(rng.sample(self.mastered, min(k, len(self.mastered))),
                                 key=self.prompt_ids.index)
        # unseen prompts rank as tau (between mastered and hard); the seeded key breaks ties
        self.order = sorted(self.active + self.probes, key=lambda p: (self.difficulty.get(p, cfg.tau),
                                                                      _tiebreak(self.seed, self.epoch, p)))
        self.history.append({"epoch": self.epoch, "event": "begin", "n_active": len(self.active),
                             "n_mastered": len(self.mastered), "n_probes": len(self.probes),
                             "fallback": fallback})

    # -- reporting and checkpoints -------------------------------------------------------------------
    def window_summary(self) -> dict:
        """What the last re-assessment changed, for the run's log and MLflow: the window now open
        (``epoch``), its active/mastered/probe counts, and from the window just closed the prompts newly
        mastered, the probes forgotten (back in the active set), their mean difficulty and the active count
        before (None in the first window); ``fallback`` as :meth:`begin_epoch` recorded it."""
        closed = next((h for h in reversed(self.history) if "newly_mastered" in h), None) if self.epoch > 0 else None
        opened = next((h for h in reversed(self.history) if h.get("event") == "begin"), {})
        before = None
        if closed is not None:
            before = len(self.active) + len(closed["newly_mastered"]) - len(closed["forgotten"])
            if opened.get("fallback") and opened["fallback"].get("kind") == "reactivate":
                before -= len(opened["fallback"]["prompts"])
        return {"epoch": self.epoch, "n_active": len(self.active), "n_mastered": len(self.mastered),
                "n_probes": len(self.probes), "n_active_before": before,
                "newly_mastered": list(closed["newly_mastered"]) if closed else [],
                "forgotten": list(closed["forgotten"]) if closed else [],
                "mean_difficulty": closed["mean_difficulty"] if closed else None,
                "n_rollouts": closed["n_rollouts"] if closed else 0, "fallback": opened.get("fallback")}

    def active_difficulties(self) -> list[float]:
        """Last known difficulty of every prompt seen so far (for the per-epoch histogram)."""
        return [self.difficulty[p] for p in self.prompt_ids if p in self.difficulty]

    def state_dict(self) -> dict:
        return {
            "prompt_ids": list(self.prompt_ids), "seed": self.seed, "epoch": self.epoch,
            "active": list(self.active), "mastered": list(self.mastered), "difficulty": dict(self.difficulty),
            "pending": {k: list(v) for k, v in self.pending.items()}, "probes": list(self.probes),
            "order": list(self.order), "stopped": self.stopped, "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["prompt_ids"]) != self.prompt_ids:
            raise ValueError("curriculum state belongs to a different prompt set; start a new run instead of resuming")
        self.seed, self.epoch = state["seed"], state["epoch"]
        self.active, self.mastered = list(state["active"]), list(state["mastered"])
        self.difficulty = dict(state["difficulty"])
        self.pending = {k: list(v) for k, v in state["pending"].items()}
        self.probes, self.order = list(state["probes"]), list(state["order"])
        self.stopped, self.history = state["stopped"], list(state["history"])


def describe_window(summary: dict) -> str:
    """One line of the run's log from :meth:`CurriculumScheduler.window_summary`, e.g. "curriculum window 2:
    active 4417 -> 4415 (2 mastered: q1, q7; 0 forgotten), 2 mastered in all, 0 probes; the closed window's
    mean difficulty 0.41 over 16 rollouts"."""
    if summary["n_active_before"] is None:
        return (f"curriculum window {summary['epoch']}: {summary['n_active']} prompts active, "
                f"{summary['n_mastered']} mastered, {summary['n_probes']} probes")
    shown = ", ".join(summary["newly_mastered"][:5]) + (", ..." if len(summary["newly_mastered"]) > 5 else "")
    line = (f"curriculum window {summary['epoch']}: active {summary['n_active_before']} -> {summary['n_active']} "
            f"({len(summary['newly_mastered'])} mastered{': ' + shown if shown else ''}; "
            f"{len(summary['forgotten'])} forgotten), {summary['n_mastered']} mastered in all, "
            f"{summary['n_probes']} probes")
    if summary["mean_difficulty"] is not None:
        line += (f"; the closed window's mean difficulty {summary['mean_difficulty']:.2f} over "
                 f"{summary['n_rollouts']} rollouts")
    if summary["fallback"]:
        line += f"; fallback {summary['fallback']}"
    return line
