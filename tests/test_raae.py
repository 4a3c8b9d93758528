"""RAAE maths: segmentation, the segment penalty, token broadcast, and the advantage estimators (hand-computed
cases, TRL's own GRPO computation, a loop reference, and seeded random property cases)."""

import math

import pytest
import torch

from rerec.errors import ConfigError
from rerec.train.raae import (
    ADVANTAGE_ESTIMATORS,
    SEGMENT_MODES,
    AdvantageConfig,
    ItemName,
    LongerTitles,
    Segment,
    anchor_uniform_groups,
    get_advantage_estimator,
    group_normalise,
    grpo_sequence_advantages,
    mentions_item,
    penalised_segments,
    segment_completion,
    segment_rewards,
    token_penalty_mask,
    token_rewards,
)

COMPLETION = (
    "1. The request asks for a 90s comedy.\n"
    "2. Heat (1995) is from 1995 but it is a crime film.\n"
    "\n"
    "Step 3: Fargo fits the director.\n"
    "\\boxed{Heat}"
)


def test_paragraph_segments_cover_text_and_mark_answer():
    text = "First thought.\n\nSecond thought\nstill second.\n\n\\boxed{Heat}"
    segs = segment_completion(text, "paragraph")
    assert [s.text.strip() for s in segs] == ["First thought.", "Second thought\nstill second.", "\\boxed{Heat}"]
    assert [s.is_answer for s in segs] == [False, False, True]
    assert "".join(s.text for s in segs) == text
    assert all(a.end_char == b.start_char for a, b in zip(segs, segs[1:], strict=False))


def test_line_and_step_segments():
    lines = segment_completion(COMPLETION, "line")
    assert len(lines) == 5 and lines[-1].is_answer and not any(s.is_answer for s in lines[:-1])
    steps = segment_completion(COMPLETION, "step")
    assert [s.text.split()[0] for s in steps] == ["1.", "2.", "Step", "\\boxed{Heat}"]
    assert [s.is_answer for s in steps] == [False, False, False, True]
    assert "".join(s.text for s in steps) == COMPLETION


def test_step_mode_keeps_preamble_and_no_answer():
    segs = segment_completion("Let me think.\n1. a\n2) b", "step")
    assert [s.text for s in segs] == ["Let me think.\n", "1. a\n", "2) b"]
    assert not any(s.is_answer for s in segs)
    assert segment_completion("", "paragraph") == [Segment(0, 0, "", False)]
    with pytest.raises(ValueError, match="unknown segment mode"):
        segment_completion("x", "sentence")


def test_mentions_titles_and_numbers():
    assert mentions_item("I think HEAT is great", "Heat (1995)")
    assert not mentions_item("the heater is on", "Heat (1995)")
    assert mentions_item("so the matrix it is", "Matrix, The (1999)")
    assert mentions_item("Candidate #7 is a comedy", 7)
    assert mentions_item("option 7 fits", "7")
    assert mentions_item("pick [7]", 7)
    assert not mentions_item("17. Fargo and 1997", 7)
    assert not mentions_item("7.5 stars", 7)


def test_mentions_use_the_matchers_normalisation():
    """The three misses of the issue: an alternative title, an accent, a title inside a longer one."""
    seven = "Seven (Se7en) (1995)"
    assert mentions_item("Se7en is too grim for this request.", seven)
    assert mentions_item("seven (se7en) is a thriller", ItemName(title=seven, number=2))
    amelie = "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
    for text in ("Amelie is a comedy", "AMÉLIE is a comedy", "Ame\u0301lie is a comedy",
                 "Le fabuleux destin d'Amélie Poulain fits", "Ame\u200blie is a comedy"):
        assert mentions_item(text, amelie), text
    assert not mentions_item("Amelia is a drama", amelie)


def test_a_title_inside_a_longer_title_is_not_named():
    catalog = LongerTitles(["Batman (1989)", "Batman Returns (1992)", "Batman & Robin (1997)", "Heat (1995)",
                            "Heat and Dust (1983)", "Fargo (1996)"])
    assert catalog.containing("Batman (1989)") == ("Batman & Robin (1997)", "Batman Returns (1992)")
    assert catalog.containing("Fargo (1996)") == ()
    batman = ItemName(title="Batman (1989)", number=1, longer=catalog.containing("Batman (1989)"))
    assert not mentions_item("Batman Returns (1992) - action: 1990s yes - fits.", batman)
    assert not mentions_item("batman and robin is campy", batman)
    assert mentions_item("Batman - action: 1990s no - no.", batman)
    assert mentions_item("Batman Returns is the sequel to Batman.", batman)  # both named
    heat = ItemName(title="Heat (1995)", longer=catalog.containing("Heat (1995)"))
    assert not mentions_item("Heat and Dust is a drama", heat) and mentions_item("Heat is a crime film", heat)


@pytest.mark.parametrize("text", ["1. The request asks for a comedy.", "Step 1: check the genre.", "1) first",
                                  "(1) first", "1 thing to check", "Checked 1 condition."])
def test_a_numbered_reasoning_step_never_names_a_candidate(text):
    assert not mentions_item(text, 1)
    assert not mentions_item(text, ItemName(title="Heat", number=1, year=1995))


def test_remake_named_only_with_its_year():
    wrong = ItemName(title="Cape Fear", number=2, year=1991, year_required=True)
    assert not mentions_item("1. Cape Fear (1962) - crime: fits.", wrong)
    assert mentions_item("2. Cape Fear (1991) - crime: 1960s no - no.", wrong)
    assert mentions_item("candidate 2 is the remake", wrong)
    assert mentions_item("Cape Fear is great", ItemName(title="Cape Fear", number=2, year=1991))


def test_segments_that_name_the_wrong_item_in_every_trace_style():
    """Synthesised traces of every style plus free-form output: only segments with the wrong title (or an
    explicit reference to its number) are penalised, never a step because of its step number."""
    from test_prompt import small_view
    from test_traces import queries

    from rerec.prompt import candidate_lines
    from rerec.train.traces import STYLES, synthesize_trace

    view = small_view()
    for query in queries():
        lines = candidate_lines(query, view)
        for style in STYLES:
            text = synthesize_trace(query, view, style=style, candidate_lines=lines).text
            # pretend the model boxed candidate 1 wrongly: which segments name it?
            wrong_id = query["candidates"][0]
            if wrong_id in query["positives"]:
                continue
            wrong = ItemName(title=view.title(wrong_id), number=1, year=view.years.get(wrong_id))
            for mode in SEGMENT_MODES:
                segs = segment_completion(text, mode)
                rewards = segment_rewards(1.0, segs, [wrong], 0.3)
                for seg, r in zip(segs, rewards, strict=True):
                    names = view.title(wrong_id).lower() in seg.text.lower()
                    assert (r < 1.0) == (names and not seg.is_answer), (style, mode, seg.text)
    free_form = ("1. The user wants a crime film.\n2. Option 1 is Heat, a crime film.\n"
                 "3. Fargo is also crime.\n\\boxed{Fargo}")
    segs = segment_completion(free_form, "step")
    rewards = segment_rewards(1.0, segs, [ItemName(title="Fargo", number=3)], 0.5)
    assert rewards == [1.0, 1.0, 0.5, 1.0]


def test_truncated_final_box_is_not_the_answer_segment():
    text = "I pick \\boxed{Heat}.\n\nWait, maybe Fargo.\n\n\\boxed{Far"
    segs = segment_completion(text, "paragraph")
    assert [s.is_answer for s in segs] == [True, False, False]  # the parser answers from the first box
    steps = segment_completion("1. Heat fits.\n\\boxed{Heat}\n2. Fargo?\n\\boxed{Far", "step")
    assert [s.is_answer for s in steps] == [False, True, False]
    assert [s.text for s in steps][1] == "\\boxed{Heat}\n"


def test_segment_penalty_only_on_wrong_non_answer_segments():
    segs = segment_completion(COMPLETION, "step")
    assert segment_rewards(2.0, segs, ["Heat (1995)"], 0.3) == [2.0, 1.4, 2.0, 2.0]
    # right answer (no wrong names): nothing penalised
    assert segment_rewards(2.0, segs, [], 0.3) == [2.0] * 4
    # the number form
    numbered = segment_completion("1. #4 looks close\n2. #5 fits\n\\boxed{4}", "step")
    assert segment_rewards(1.0, numbered, [4], 0.5) == [0.5, 1.0, 1.0]


@pytest.mark.parametrize("reward", [-2.0, -0.5, 0.0, 0.7, 3.0])
@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_penalty_never_raises_a_reward(reward, w):
    segs = segment_completion(COMPLETION, "step")
    out = segment_rewards(reward, segs, ["Heat"], w)
    assert all(r <= reward for r in out)
    assert out[1] == pytest.approx(reward - w * abs(reward))
    if reward < 0 and w > 0:
        assert out[1] < reward  # the paper's (1 - w) * r would be > r here
        assert (1 - w) * reward > reward


def test_token_rewards_broadcast():
    segs = [Segment(0, 4, "ab\n\n"), Segment(4, 6, "cd", True)]
    spans = [[(0, 1), (1, 2), (2, 4), (4, 6), (6, 6)]]
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    out = token_rewards([[0.5, 1.0]], [segs], spans, mask)
    assert out.tolist() == [[0.5, 0.5, 0.5, 1.0, 1.0, 0.0]]


def test_penalised_segments_are_the_ones_segment_rewards_lowers():
    segs = segment_completion(COMPLETION, "step")
    assert penalised_segments(segs, ["Heat (1995)"]) == [False, True, False, False]
    assert penalised_segments(segs, []) == [False] * 4
    for reward in (-1.0, 0.5, 2.0):
        lowered = [r < reward for r in segment_rewards(reward, segs, ["Heat (1995)"], 0.3)]
        assert lowered == penalised_segments(segs, ["Heat (1995)"])


def test_token_penalty_mask_broadcast():
    segs = [Segment(0, 4, "ab\n\n"), Segment(4, 6, "cd", True)]
    spans = [[(0, 1), (1, 2), (2, 4), (4, 6), (6, 6)], [(0, 2)]]
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]])
    out = token_penalty_mask([[True, False], [True]], [segs, [Segment(0, 2, "ab")]], spans, mask)
    assert out.dtype == torch.bool
    assert out.tolist() == [[True, True, True, False, False, False], [True, False, False, False, False, False]]


# ------------------------------------------------------------------------------------------------ estimators
def call(name, rewards, penalised, mask, group_size, w_penalty=0.3, sigma_floor=0.26, eps=1e-4):
    return get_advantage_estimator(name)(rewards, penalised.bool(), mask, group_size, w_penalty=w_penalty,
                                         sigma_floor=sigma_floor, eps=eps)


def trl_advantages(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """TRL 1.16's GRPO advantage ("sum_then_normalize", scale_rewards="group"), with TRL's own nanstd."""
    from trl.trainer.utils import nanstd

    mean_grouped = torch.nanmean(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    std = nanstd(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    return torch.nan_to_num((rewards - mean_grouped) / (std + 1e-4), nan=0.0)


def test_issue_example_paper_normalisation_is_scale_free_and_raae_is_not():
    """One group of two completions sharing reward 1.0; the middle token of the first is penalised (w=0.3).
    Token-level normalisation (then the uniform-group anchor) gives -2.68 whatever w is; ours gives
    -w / sigma_floor, since the group's reward std is 0 (below the floor)."""
    rewards = torch.tensor([1.0, 1.0])
    penalised = torch.tensor([[0, 1, 0], [0, 0, 0]])
    mask = torch.ones(2, 3)
    # tokens 1, .7, 1, 1, 1, 1: mean .95, population variance (5 * .05^2 + .25^2) / 6 = .0125
    std = math.sqrt(0.0125)
    paper = call("raae_paper", rewards, penalised, mask, 2, eps=0.0)
    torch.testing.assert_close(paper, torch.tensor([[0.05, -0.25, 0.05], [0.05] * 3]) / std)
    anchored = call("raae_anchored", rewards, penalised, mask, 2, eps=0.0)
    assert anchored[0, 1].item() == pytest.approx(-0.3 / std, rel=1e-5) == pytest.approx(-2.683, abs=1e-3)
    assert call("raae_anchored", rewards, penalised, mask, 2, w_penalty=0.003, eps=0.0)[0, 1].item() == \
        pytest.approx(-2.683, abs=1e-3)  # a 100x smaller penalty, the same advantage
    ours = call("raae", rewards, penalised, mask, 2, sigma_floor=0.5)
    torch.testing.assert_close(ours, torch.tensor([[0.0, -0.3 / 0.5, 0.0], [0.0] * 3]))
    small = call("raae", rewards, penalised, mask, 2, w_penalty=0.003, sigma_floor=0.5)
    assert small[0, 1].item() == pytest.approx(-0.003 / 0.5)


def test_raae_hand_computed_mixed_group():
    """G=3, rewards 2, 0.5, -0.5; completion 1 (r=0.5) and completion 2 (r=-0.5) each have one penalised
    token, w=0.3. mean 2/3; unbiased variance ((4/3)^2 + (1/6)^2 + (7/6)^2) / 2 = 114/72. ``raae`` lowers
    each penalised token by 0.3 / std; ``raae_scaled`` by 0.3 * |r| / std = 0.15 / std."""
    rewards = torch.tensor([2.0, 0.5, -0.5])
    penalised = torch.tensor([[0, 0], [1, 0], [0, 1]])
    mask = torch.tensor([[1, 0], [1, 1], [1, 1]])
    std = math.sqrt(114 / 72)
    z = [(r - 2 / 3) / (std + 1e-4) for r in (2.0, 0.5, -0.5)]
    for estimator, pen in (("raae", 0.3), ("raae_scaled", 0.3 * 0.5)):
        expected = torch.tensor([[z[0], 0.0], [z[1] - pen / std, z[1]], [z[2], z[2] - pen / std]])
        torch.testing.assert_close(call(estimator, rewards, penalised, mask, 3, sigma_floor=0.26), expected)
        # a floor above the group's std takes its place
        floored = call(estimator, rewards, penalised, mask, 3, sigma_floor=2.0)
        assert floored[1, 0].item() == pytest.approx(z[1] - pen / 2.0, rel=1e-5)


def test_raae_penalty_does_not_depend_on_the_rewards_offset():
    """GRPO is unchanged when a constant is added to every reward; so is raae's penalty. With w * |r| the same
    wrong step cost 11 times more at r = 1.1 than at r = 0.1 (raae_scaled, kept for earlier results)."""
    penalised = torch.tensor([[1, 0], [0, 0], [1, 0], [0, 0]])
    mask = torch.ones(4, 2)
    low = torch.tensor([0.1, 2.1, 0.1, -0.5])
    high = low + 1.0  # 1.1, 3.1, 1.1, 0.5
    a, b = call("raae", low, penalised, mask, 4, sigma_floor=0.26), call("raae", high, penalised, mask, 4,
                                                                          sigma_floor=0.26)
    torch.testing.assert_close(a, b)
    grpo = call("grpo", low, penalised, mask, 4)
    # uniform group at r = 0.1 and at r = 1.1: the same push down, -w / floor
    for r in (0.1, 1.1):
        u = call("raae", torch.full((2,), r), penalised[:2], mask[:2], 2, sigma_floor=0.26)
        assert u[0, 0].item() == pytest.approx(-0.3 / 0.26) and u[0, 1].item() == 0.0
    scaled = [call("raae_scaled", torch.full((2,), r), penalised[:2], mask[:2], 2, sigma_floor=0.26)[0, 0].item()
              for r in (0.1, 1.1)]
    assert scaled[1] / scaled[0] == pytest.approx(11.0)
    assert not torch.allclose(call("raae_scaled", low, penalised, mask, 4, sigma_floor=0.26) - grpo,
                              call("raae_scaled", high, penalised, mask, 4, sigma_floor=0.26) - grpo)


def test_paper_token_normalisation_by_hand():
    # Group of G=2. Completion A: wrong answer, r=1, its first segment (2 tokens) names the wrong item,
    # w=0.5 -> segment rewards [0.5, 1.0]; the answer segment is 1 token. Completion B: right, r=2, 1 token.
    seg_a = segment_completion("Heat?\n\n\\boxed{Heat}", "paragraph")
    seg_b = segment_completion("\\boxed{Fargo}", "paragraph")
    assert segment_rewards(1.0, seg_a, ["Heat"], 0.5) == [0.5, 1.0]
    spans = [[(0, 3), (3, 7), (7, 19)], [(0, 13)]]
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    penalised = token_penalty_mask([penalised_segments(seg_a, ["Heat"]), penalised_segments(seg_b, [])],
                                   [seg_a, seg_b], spans, mask)
    assert penalised.tolist() == [[True, True, False], [False, False, False]]
    # valid tokens 0.5, 0.5, 1, 2: mean 1, population variance (0.25+0.25+0+1)/4 = 0.375
    std = math.sqrt(0.375)
    expected = torch.tensor([[-0.5 / std, -0.5 / std, 0.0], [1.0 / std, 0.0, 0.0]])
    torch.testing.assert_close(call("raae_paper", torch.tensor([1.0, 2.0]), penalised, mask, 2, w_penalty=0.5,
                                    eps=0.0), expected)


def test_uniform_group_anchored_by_hand():
    # Group 0: both completions box the same wrong item, r = -0.5; A's first token names it (w=0.3 ->
    # -0.65). Paper: valid tokens -0.65, -0.5, -0.5, -0.5: mean -0.5375, population std sqrt(0.00421875),
    # so the unpenalised tokens of these wrong answers get +0.0375/std = +0.577 (reinforced).
    # Anchored: those get 0, the penalised token -0.15/std = -2.309. Group 1 (rewards differ) is unchanged.
    tok = torch.tensor([[-0.65, -0.5], [-0.5, -0.5], [1.0, 1.0], [0.0, 0.0]])
    mask = torch.ones(4, 2, dtype=torch.long)
    seq = torch.tensor([-0.5, -0.5, 1.0, 0.0])
    paper = group_normalise(tok, mask, group_size=2, eps=0.0)
    std = math.sqrt(0.00421875)
    torch.testing.assert_close(paper[:2], torch.tensor([[-0.1125 / std, 0.0375 / std], [0.0375 / std] * 2]))
    anchored = anchor_uniform_groups(paper, seq, mask, group_size=2)
    torch.testing.assert_close(anchored[:2], torch.tensor([[-0.15 / std, 0.0], [0.0, 0.0]]))
    assert anchored[0, 0].item() == pytest.approx(-2.309, abs=1e-3)
    torch.testing.assert_close(anchored[2:], paper[2:])
    penalised = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 0]])
    torch.testing.assert_close(call("raae_anchored", seq, penalised, mask, 2, eps=0.0), anchored)
    # padding stays 0, and a batch with no uniform group comes back as it was
    mask[1, 1] = 0
    assert anchor_uniform_groups(group_normalise(tok * mask, mask, group_size=2), seq, mask, group_size=2)[1, 1] == 0
    other = group_normalise(tok, mask, group_size=2)
    assert anchor_uniform_groups(other, torch.tensor([-0.5, -0.4, 1.0, 0.0]), mask, group_size=2) is other


def test_grpo_is_trls_advantage_by_hand_and_on_every_token():
    rewards = torch.tensor([1.0, 0.0, 3.0, 2.0, -1.0, 0.5])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
    adv = call("grpo", rewards, torch.ones(6, 3), mask, 3)  # the penalty is ignored
    # group 0: r = 1, 0, 3 -> mean 4/3, unbiased std sqrt(((1/3)^2 + (4/3)^2 + (5/3)^2) / 2)
    std = math.sqrt(((1 / 3) ** 2 + (4 / 3) ** 2 + (5 / 3) ** 2) / 2)
    assert adv[0, 0].item() == pytest.approx((1 - 4 / 3) / (std + 1e-4), rel=1e-6)
    assert torch.equal(adv, trl_advantages(rewards, 3).unsqueeze(1) * mask)


def test_estimators_refuse_bad_groups_and_names():
    with pytest.raises(ValueError, match="whole number of groups of 4"):
        call("raae", torch.zeros(6), torch.zeros(6, 2), torch.ones(6, 2), 4)
    with pytest.raises(ValueError, match="at least 2"):
        call("grpo", torch.zeros(3), torch.zeros(3, 2), torch.ones(3, 2), 1)
    with pytest.raises(ValueError, match="sigma_floor must be > 0"):
        call("raae", torch.zeros(2), torch.zeros(2, 2), torch.ones(2, 2), 2, sigma_floor=0.0)
    with pytest.raises(ValueError, match="unknown advantage estimator 'gpro'"):
        get_advantage_estimator("gpro")
    assert set(ADVANTAGE_ESTIMATORS) == {"grpo", "raae", "raae_scaled", "raae_paper", "raae_anchored"}
    assert not get_advantage_estimator("grpo").uses_penalty and get_advantage_estimator("raae").uses_penalty
    for bad, match in [({"estimator": "gpro"}, "unknown advantage estimator"), ({"w_penalty": 1.5}, r"\[0, 1\]"),
                       ({"sigma_floor": 0.0}, "sigma_floor"), ({"segment_mode": "word"}, "segment mode")]:
        with pytest.raises(ConfigError, match=match):
            AdvantageConfig(**bad)


# ------------------------------------------------------------------------------------ random property cases
def random_batch(seed: int, n_groups: int = 40, G: int = 4, T: int = 12, share: float = 0.3, uniform: float = 0.3):
    """Seeded rewards (some groups sharing one reward, some negative), varying lengths (left-aligned
    masks, as TRL pads completions) and a random penalty mask on the valid tokens."""
    gen = torch.Generator().manual_seed(seed)
    B = n_groups * G
    rewards = torch.randn(B, generator=gen) * 1.5
    same = torch.rand(n_groups, generator=gen) < uniform
    rewards = torch.where(same.repeat_interleave(G), rewards.view(-1, G)[:, :1].expand(-1, G).reshape(-1), rewards)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).long()
    penalised = (torch.rand(B, T, generator=gen) < share) & mask.bool()
    return rewards, penalised, mask, G


def loop_raae(rewards, penalised, mask, G, w_penalty, sigma_floor, eps=1e-4, scaled=False):
    """The bounded RAAE formula one token at a time (the reference for the vectorised estimator); ``scaled``:
    the penalty w * |r| (raae_scaled) instead of w."""
    out = torch.zeros(mask.shape, dtype=torch.float64)
    r = rewards.double().tolist()
    for g in range(0, len(r), G):
        group = r[g:g + G]
        mean = sum(group) / G
        std = math.sqrt(sum((x - mean) ** 2 for x in group) / (G - 1))
        for i in range(g, g + G):
            for t in range(mask.shape[1]):
                if mask[i, t]:
                    pen = -w_penalty * (abs(r[i]) if scaled else 1.0) if penalised[i, t] else 0.0
                    out[i, t] = (r[i] - mean) / (std + eps) + pen / max(std, sigma_floor)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("estimator", ["raae", "raae_scaled"])
def test_raae_vectorised_equals_loop(seed, estimator):
    rewards, penalised, mask, G = random_batch(seed, n_groups=12)
    got = call(estimator, rewards.double(), penalised, mask, G, w_penalty=0.3, sigma_floor=0.26)
    expected = loop_raae(rewards, penalised, mask, G, 0.3, 0.26, scaled=estimator == "raae_scaled")
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("estimator", ["raae", "raae_scaled"])
def test_raae_properties_on_random_groups(seed, estimator):
    rewards, penalised, mask, G = random_batch(seed)
    floor, w = 0.26, 0.3
    size = rewards.abs() if estimator == "raae_scaled" else torch.ones_like(rewards)  # the penalty is w * size
    grpo = call("grpo", rewards, penalised, mask, G)
    # nothing penalised => exactly plain GRPO (TRL's values) on every token
    assert torch.equal(call(estimator, rewards, torch.zeros_like(penalised), mask, G, w_penalty=w, sigma_floor=floor),
                       grpo)
    assert torch.equal(grpo, trl_advantages(rewards, G).unsqueeze(1) * mask)
    assert torch.equal(call(estimator, rewards, penalised, mask, G, w_penalty=0.0, sigma_floor=floor), grpo)
    adv = call(estimator, rewards, penalised, mask, G, w_penalty=w, sigma_floor=floor)
    # a penalty 10x smaller moves the advantages 10x less
    tenth = call(estimator, rewards, penalised, mask, G, w_penalty=w / 10, sigma_floor=floor)
    torch.testing.assert_close(tenth - grpo, (adv - grpo) / 10, rtol=1e-4, atol=1e-6)
    assert ((adv - grpo).abs() > 0).any()
    # masked positions are 0
    assert (adv[mask == 0] == 0).all()
    # within a completion, no penalised token above an unpenalised one (strictly below when w * size > 0)
    for i in range(adv.shape[0]):
        pen = adv[i][penalised[i] & mask[i].bool()]
        free = adv[i][~penalised[i] & mask[i].bool()]
        if len(pen) and len(free):
            assert pen.max() <= free.min()
            if size[i] != 0:
                assert pen.max() < free.min()
    # bounded: GRPO's |z| <= (G-1)/sqrt(G) plus at most w * size / floor from the penalty
    bound = (G - 1) / math.sqrt(G) + w * size.max() / floor
    assert adv.abs().max() <= bound + 1e-5


@pytest.mark.parametrize("estimator", ["raae", "raae_scaled", "raae_paper", "raae_anchored"])
def test_penalised_tokens_never_above_unpenalised_ones_for_every_penalty_estimator(estimator):
    rewards, penalised, mask, G = random_batch(11)
    adv = call(estimator, rewards, penalised, mask, G)
    for i in range(adv.shape[0]):
        pen = adv[i][penalised[i] & mask[i].bool()]
        free = adv[i][~penalised[i] & mask[i].bool()]
        if len(pen) and len(free):
            assert pen.max() <= free.min() + 1e-6


def test_advantage_stays_bounded_as_the_penalised_share_goes_to_zero():
    """A group of G=4 completions of N tokens sharing reward 1.0, one token penalised: the paper's
    normalisation gives that token about -sqrt(4N - 1), growing without bound as the share 1/(4N)
    shrinks; ours stays at -w/sigma_floor."""
    paper, ours = [], []
    for n in (10, 100, 1000, 10000):
        rewards = torch.ones(4)
        mask = torch.ones(4, n)
        penalised = torch.zeros(4, n)
        penalised[0, 0] = 1
        paper.append(call("raae_paper", rewards, penalised, mask, 4, eps=0.0)[0, 0].item())
        ours.append(call("raae", rewards, penalised, mask, 4, sigma_floor=0.26)[0, 0].item())
        assert paper[-1] == pytest.approx(-math.sqrt(4 * n - 1), rel=1e-3)
    assert ours == pytest.approx([-0.3 / 0.26] * 4)
    assert paper[-1] < -100


def _loop_group_normalise(r, m, groups, eps):
    out = torch.zeros_like(r)
    for g in sorted(set(groups)):
        vals = [r[i, t].item() for i in range(r.shape[0]) if groups[i] == g for t in range(r.shape[1]) if m[i, t]]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        for i in range(r.shape[0]):
            if groups[i] == g:
                for t in range(r.shape[1]):
                    if m[i, t]:
                        out[i, t] = (r[i, t] - mean) / (std + eps)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_token_normalisation_vectorised_equals_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    G, n_prompts, T = 3, 4, 7
    B = G * n_prompts
    r = torch.randn(B, T, generator=gen)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    m = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).long()
    groups = torch.arange(B) // G
    expected = _loop_group_normalise(r, m, groups.tolist(), 1e-4)
    torch.testing.assert_close(group_normalise(r, m, group_size=G), expected)
    # shuffled rows with explicit group ids give the same per-row answer
    perm = torch.randperm(B, generator=gen)
    torch.testing.assert_close(group_normalise(r[perm], m[perm], group_ids=groups[perm]), expected[perm])


def test_grpo_sequence_advantages_zero_for_a_uniform_group():
    torch.testing.assert_close(grpo_sequence_advantages(torch.tensor([0.5, 0.5, 1.0, 0.0]), 2),
                               torch.tensor([0.0, 0.0, 0.5, -0.5]) / (math.sqrt(0.5) + 1e-4))
