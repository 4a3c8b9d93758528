"""The trainer callback of the training stages (``sft-warmup``, ``rft``): it keeps the stage's ``history``
(written to ``metrics.json``), mirrors it to the stage's MLflow run and stops training on the stage's budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback


def deadline_after(seconds: float, clock: Callable[[], float] = time.perf_counter) -> float | None:
    """The ``clock`` reading ``seconds`` from now; ``None`` for no limit (``seconds`` = 0)."""
    return clock() + seconds if seconds else None


class TrackingCallback(TrainerCallback):
    """On every trainer log: append ``{"step": global_step, **numeric values}`` to ``history`` and log the
    numeric values to ``tracker`` (a :class:`rerec.tracking.StageTracker`) at that step. After a step: stop
    once ``clock()`` passes ``deadline`` (``None``: no limit) or ``stop_after_steps`` steps are done (0: no
    limit); ``stopped_by_deadline`` then says whether the deadline ended the run before its last step. After
    an evaluation: call ``on_evaluate(model, global_step)`` when given."""

    def __init__(self, tracker: Any, history: list[dict], *, deadline: float | None = None, stop_after_steps: int = 0,
                 on_evaluate: Callable[[Any, int], Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.tracker = tracker
        self.history = history
        self.deadline = deadline
        self.stop_after_steps = stop_after_steps
        self.evaluate_hook = on_evaluate
        self.clock = clock
        self.stopped_by_deadline = False

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        logs = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
        self.history.append({"step": state.global_step, **logs})
        self.tracker.log_metrics(logs, step=state.global_step)

    def on_evaluate(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if self.evaluate_hook is not None and model is not None:
            self.evaluate_hook(model, state.global_step)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.deadline is not None and self.clock() > self.deadline:
            control.should_training_stop = True
            # the time budget cut the run short (not when the last planned step had just been done)
            self.stopped_by_deadline = state.global_step < state.max_steps
        if self.stop_after_steps and state.global_step >= self.stop_after_steps:
            control.should_training_stop = True
