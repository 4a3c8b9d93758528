"""rerec.train.callbacks.TrackingCallback: the history and MLflow metrics of sft-warmup and rft, and their stops."""

from transformers import TrainerControl, TrainerState

from rerec.train.callbacks import TrackingCallback, deadline_after


class RecordingTracker:
    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step=None):
        self.logged.append((dict(metrics), step))


def at_step(step, max_steps=0):
    state = TrainerState()
    state.global_step, state.max_steps = step, max_steps
    return state


def test_logs_keep_numbers_in_the_history_and_the_tracker_at_the_trainers_step():
    tracker, history = RecordingTracker(), []
    callback = TrackingCallback(tracker, history)
    control = TrainerControl()
    callback.on_log(None, at_step(3), control, logs={"loss": 0.5, "epoch": 1, "note": "text", "lr": None})
    callback.on_log(None, at_step(4), control, logs=None)
    assert history == [{"step": 3, "loss": 0.5, "epoch": 1}, {"step": 4}]
    assert tracker.logged == [({"loss": 0.5, "epoch": 1}, 3), ({}, 4)]
    callback.on_step_end(None, at_step(1000), control)
    assert not control.should_training_stop  # no budget: never stops


def test_stops_after_the_step_budget_and_not_before():
    callback = TrackingCallback(RecordingTracker(), [], stop_after_steps=2)
    control = TrainerControl()
    callback.on_step_end(None, at_step(1), control)
    assert not control.should_training_stop
    callback.on_step_end(None, at_step(2), control)
    assert control.should_training_stop


def test_stops_once_the_clock_passes_the_deadline():
    now = [100.0]
    clock = lambda: now[0]  # noqa: E731
    deadline = deadline_after(5.0, clock)
    assert deadline == 105.0 and deadline_after(0.0, clock) is None
    callback = TrackingCallback(RecordingTracker(), [], deadline=deadline, clock=clock)
    control = TrainerControl()
    now[0] = 105.0
    callback.on_step_end(None, at_step(1), control)
    assert not control.should_training_stop
    now[0] = 105.5
    callback.on_step_end(None, at_step(2, max_steps=10), control)
    assert control.should_training_stop and callback.stopped_by_deadline  # 2 of 10 steps


def test_a_deadline_passed_at_the_last_step_did_not_cut_the_run_short():
    now = [0.0]
    callback = TrackingCallback(RecordingTracker(), [], deadline=deadline_after(1.0, lambda: now[0]),
                                clock=lambda: now[0])
    assert not callback.stopped_by_deadline
    now[0] = 2.0
    callback.on_step_end(None, at_step(10, max_steps=10), TrainerControl())
    assert not callback.stopped_by_deadline


def test_evaluation_hook_gets_the_model_and_step():
    seen = []
    callback = TrackingCallback(RecordingTracker(), [], on_evaluate=lambda model, step: seen.append((model, step)))
    callback.on_evaluate(None, at_step(7), TrainerControl(), model="the model")
    callback.on_evaluate(None, at_step(8), TrainerControl(), model=None)
    assert seen == [("the model", 7)]
    TrackingCallback(RecordingTracker(), []).on_evaluate(None, at_step(7), TrainerControl(), model="m")  # no hook
