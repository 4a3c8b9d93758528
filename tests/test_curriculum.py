"""The curriculum scheduler on hand-made reward sequences."""

import json

import pytest

from rerec.train.curriculum import CurriculumConfig, CurriculumScheduler

IDS = ["a", "b", "c", "d", "e", "f"]


def _run_epoch(sched, rewards_by_prompt, epoch):
    order = sched.begin_epoch(epoch)
    for pid in order:
        sched.record([pid] * len(rewards_by_prompt[pid]), rewards_by_prompt[pid])
    return order


def test_mastery_and_easy_to_hard_order():
    cfg = CurriculumConfig(tau=0.3, probe_every=0, min_active=1)
    sched = CurriculumScheduler(IDS, cfg, seed=1)
    first = sched.begin_epoch(0)
    assert sorted(first) == IDS
    assert sched.begin_epoch(0) == first  # idempotent
    rewards = {"a": [1.0, 0.9], "b": [0.0, 0.2], "c": [0.5, 0.5], "d": [0.8, 0.8], "e": [0.1, 0.0], "f": [0.6, 1.0]}
    _run_epoch(sched, rewards, 0)
    order = sched.begin_epoch(1)
    # d: a 0.05 (mastered), d 0.2 (mastered), f 0.2 (mastered), c 0.5, b 0.9, e 0.95
    assert sched.difficulty["a"] == pytest.approx(0.05)
    assert order == ["c", "b", "e"]
    assert sched.mastered == ["a", "d", "f"]
    closed = [h for h in sched.history if h.get("event") is None][-1]
    assert closed["newly_mastered"] == ["a", "d", "f"] and closed["n_active_after"] == 3


def test_probe_catches_forgetting():
    cfg = CurriculumConfig(tau=0.3, probe_every=2, probe_fraction=1.0, min_active=1)
    sched = CurriculumScheduler(IDS, cfg)
    easy = dict.fromkeys(IDS, [0.0])
    easy.update({"a": [1.0], "b": [1.0]})
    _run_epoch(sched, easy, 0)
    assert sched.begin_epoch(1) and sched.mastered == ["a", "b"] and sched.probes == []
    _run_epoch(sched, dict.fromkeys(IDS, [0.0]), 1)
    order = sched.begin_epoch(2)  # probing epoch: every mastered prompt runs again, easiest first
    assert sched.probes == ["a", "b"] and order[:2] == ["a", "b"] and len(order) == 6
    forgot = dict.fromkeys(IDS, [0.0])
    forgot.update({"a": [0.0], "b": [0.9]})  # "a" was forgotten, "b" is still mastered
    _run_epoch(sched, forgot, 2)
    sched.begin_epoch(3)
    assert "a" in sched.active and "b" in sched.mastered
    closed = [h for h in sched.history if h.get("event") is None][-1]
    assert closed["forgotten"] == ["a"] and closed["probes_still_mastered"] == ["b"]


def test_fallback_reactivates_hardest_mastered_and_is_logged():
    cfg = CurriculumConfig(tau=0.5, probe_every=0, min_active=3, fallback="reactivate")
    sched = CurriculumScheduler(IDS, cfg)
    rewards = {"a": [0.9], "b": [0.6], "c": [0.8], "d": [0.95], "e": [0.1], "f": [0.55]}
    _run_epoch(sched, rewards, 0)
    order = sched.begin_epoch(1)
    # only "e" stays active; the two hardest mastered (f 0.45, b 0.4) come back
    assert sorted(order) == ["b", "e", "f"] and order == ["b", "f", "e"]
    event = sched.history[-1]
    assert event["fallback"] == {"kind": "reactivate", "prompts": ["b", "f"]}


def test_fallback_stop():
    cfg = CurriculumConfig(tau=0.5, probe_every=0, min_active=2, fallback="stop")
    sched = CurriculumScheduler(IDS, cfg)
    _run_epoch(sched, dict.fromkeys(IDS, [1.0]), 0)
    assert sched.begin_epoch(1) == [] and sched.stopped
    assert sched.history[-1]["fallback"]["kind"] == "stop"


def test_state_dict_roundtrip_mid_epoch_and_seeded():
    cfg = CurriculumConfig(tau=0.3, probe_every=1, probe_fraction=0.5, min_active=1)
    rewards = {p: [i / 5] for i, p in enumerate(IDS)}

    def run(split_at):
        sched = CurriculumScheduler(IDS, cfg, seed=3)
        for epoch in range(4):
            order = sched.begin_epoch(epoch)
            for k, pid in enumerate(order):
                if (epoch, k) == split_at:  # a "kill": rebuild from a JSON round trip of the state
                    state = json.loads(json.dumps(sched.state_dict()))
                    sched = CurriculumScheduler(IDS, cfg, seed=3)
                    sched.load_state_dict(state)
                    assert sched.begin_epoch(epoch) == order
                sched.record([pid], rewards[pid])
        return sched.state_dict()

    assert run(None) == run((2, 1)) == run((1, 0))
    with pytest.raises(ValueError, match="different prompt set"):
        CurriculumScheduler(["x"], cfg).load_state_dict(run(None))


def test_rewards_clamped_and_unseen_active_kept():
    sched = CurriculumScheduler(["a", "b"], CurriculumConfig(tau=0.3, probe_every=0, min_active=1))
    sched.begin_epoch(0)
    sched.record(["a"], [1.7])  # clamped to 1 -> d = 0
    sched.begin_epoch(1)
    assert sched.difficulty == {"a": 0.0} and sched.active == ["b"]


def test_window_sized_from_the_budget_by_hand():
    from rerec.train.curriculum import window_size

    cfg = CurriculumConfig()  # window 0: steps x batch / 4 assessments, in whole steps
    assert window_size(cfg, n_prompts=4417, steps=8, batch_size=2) == 4  # make run: 16 prompts, 4 windows
    assert window_size(cfg, n_prompts=4417, steps=30, batch_size=2) == 16  # ceil(30 / 4) = 8 steps of 2
    assert window_size(cfg, n_prompts=4417, steps=3, batch_size=4) == 4  # never less than one step
    assert window_size(cfg, n_prompts=10, steps=400, batch_size=4) == 8  # never more than the train set
    assert window_size(CurriculumConfig(assessments=2), n_prompts=4417, steps=8, batch_size=2) == 8
    assert window_size(CurriculumConfig(window=5), n_prompts=4417, steps=8, batch_size=2) == 6  # whole steps


def test_small_windows_reassess_and_say_what_changed():
    """Windows of 2 prompts over 6: after the first, the mastered one leaves and the summary says so."""
    from rerec.train.curriculum import describe_window

    sched = CurriculumScheduler(IDS, CurriculumConfig(tau=0.3, probe_every=0, min_active=1), seed=0)
    order = sched.begin_epoch(0)
    first = sched.window_summary()
    assert first["n_active_before"] is None and first["n_active"] == 6
    assert describe_window(first) == "curriculum window 0: 6 prompts active, 0 mastered, 0 probes"
    easy, hard = order[0], order[1]  # the window: the first two of the seeded order
    sched.record([easy, easy], [0.9, 1.0])  # d = 0.05 < tau
    sched.record([hard, hard], [0.2, 0.4])  # d = 0.7
    sched.begin_epoch(1)
    summary = sched.window_summary()
    assert summary["newly_mastered"] == [easy] and summary["forgotten"] == []
    assert (summary["n_active_before"], summary["n_active"], summary["n_mastered"]) == (6, 5, 1)
    assert summary["mean_difficulty"] == pytest.approx((0.05 + 0.7) / 2) and summary["n_rollouts"] == 4
    assert describe_window(summary) == (f"curriculum window 1: active 6 -> 5 (1 mastered: {easy}; 0 forgotten), "
                                        "1 mastered in all, 0 probes; the closed window's mean difficulty 0.38 "
                                        "over 4 rollouts")
    # the unseen prompts (ranked as tau) come before the hard one, the mastered one is gone
    assert sched.order[-1] == hard and easy not in sched.order and len(sched.order) == 5
