"""RAAE maths: segmentation, the segment penalty, token broadcast, group normalisation."""

import math

import pytest
import torch

from rerec.train.raae import (
    ADVANTAGE_ESTIMATORS,
    SEGMENT_MODES,
    ItemName,
    Segment,
    anchor_uniform_groups,
    get_advantage_estimator,
    group_normalise,
    mentions_item,
    segment_completion,
    segment_rewards,
    sequence_group_normalise,
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


def test_hand_computed_advantages():
    # Group of G=2. Completion A: wrong answer, r=1, its first segment (2 tokens) names the wrong item,
    # w=0.5 -> segment rewards [0.5, 1.0]; the answer segment is 1 token. Completion B: right, r=2, 1 token.
    seg_a = segment_completion("Heat?\n\n\\boxed{Heat}", "paragraph")
    seg_b = segment_completion("\\boxed{Fargo}", "paragraph")
    rew_a = segment_rewards(1.0, seg_a, ["Heat"], 0.5)
    rew_b = segment_rewards(2.0, seg_b, [], 0.5)
    assert rew_a == [0.5, 1.0] and rew_b == [2.0]
    spans_a = [(0, 3), (3, 7), (7, 19)]
    spans_b = [(0, 13)]
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    tok = token_rewards([rew_a, rew_b], [seg_a, seg_b], [spans_a, spans_b], mask)
    assert tok.tolist() == [[0.5, 0.5, 1.0], [2.0, 0.0, 0.0]]
    # valid tokens 0.5, 0.5, 1, 2: mean 1, population variance (0.25+0.25+0+1)/4 = 0.375
    std = math.sqrt(0.375)
    adv = group_normalise(tok, mask, group_size=2, eps=0.0)
    expected = torch.tensor([[-0.5 / std, -0.5 / std, 0.0], [1.0 / std, 0.0, 0.0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ADVANTAGE_ESTIMATORS["raae"](tok, mask, 2, eps=0.0), expected)


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
    # padding stays 0, and a batch with no uniform group comes back as it was
    mask[1, 1] = 0
    assert anchor_uniform_groups(group_normalise(tok * mask, mask, group_size=2), seq, mask, group_size=2)[1, 1] == 0
    other = group_normalise(tok, mask, group_size=2)
    assert anchor_uniform_groups(other, torch.tensor([-0.5, -0.4, 1.0, 0.0]), mask, group_size=2) is other


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
def test_vectorised_equals_loop(seed):
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


def test_grpo_special_case():
    """No penalty + one segment => every token of completion i carries r_i. With EQUAL lengths the
    token-level normalisation equals sequence-level normalisation with the population std (each
    completion then weighs the same); with unequal lengths RAAE weighs a completion by its length, and
    the 'grpo' estimator (TRL: unbiased std, each completion once) is smaller by sqrt((G-1)/G)."""
    rewards = torch.tensor([1.0, 0.0, 3.0, 2.0, -1.0, 0.5])
    G, T = 3, 5
    mask = torch.ones(6, T, dtype=torch.long)
    tok = rewards.unsqueeze(1).expand(6, T).clone()
    token_level = group_normalise(tok, mask, group_size=G, eps=0.0)
    seq_pop = sequence_group_normalise(rewards, mask, group_size=G, eps=0.0, correction=0)
    torch.testing.assert_close(token_level, seq_pop)
    grpo = get_advantage_estimator("grpo")(tok, mask, G, eps=0.0)
    torch.testing.assert_close(grpo * math.sqrt(G / (G - 1)), token_level)
    # hand check for group 0: r = 1, 0, 3 -> mean 4/3, unbiased std sqrt(((1/3)^2+(4/3)^2+(5/3)^2)/2)
    std = math.sqrt(((1 / 3) ** 2 + (4 / 3) ** 2 + (5 / 3) ** 2) / 2)
    assert grpo[0, 0].item() == pytest.approx((1 - 4 / 3) / std, rel=1e-5)
    # unequal lengths: the longer completion pulls the token-level mean towards its reward
    mask[0, 1:] = 0
    token_level = group_normalise(tok * mask, mask, group_size=G, eps=0.0)
    mean0 = (1 * 1 + 0 * 5 + 3 * 5) / 11
    assert (token_level[1, 0] * token_level[0, 0]).item() > 0  # both below the weighted mean
    assert token_level[1, 0].item() < 0 and mean0 > 4 / 3
    assert (token_level * (1 - mask)).abs().sum() == 0
