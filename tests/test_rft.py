"""ReRecGRPOTrainer on a tiny random Llama with a tokenizer built here: the (B, T) advantage hook in the
installed TRL, the curriculum sampler, and (slow) resuming a SIGKILLed run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from rerec.train.curriculum import CurriculumConfig, CurriculumScheduler  # noqa: E402
from rerec.train.grpo import CurriculumRepeatSampler, ReRecGRPOTrainer, ScoredCompletion  # noqa: E402
from rerec.train.raae import (  # noqa: E402
    AdvantageConfig,
    penalised_segments,
    raae_advantages,
    segment_completion,
    token_char_spans,
    token_penalty_mask,
)

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = "Heat Fargo Toy Story comedy crime 1. 2. Step the director of \\boxed{ } I think fits not because".split()


def build_tokenizer(folder: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) + "\n\n" for i in range(len(WORDS))] * 4
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                            special_tokens=["<|im_start|>", "<|im_end|>", "<pad>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<pad>")
    tok.chat_template = CHATML
    tok.save_pretrained(folder)
    return tok


def build_model_dir(folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def toy_score(texts, rows):
    """Right iff the text names the row's answer; a wrong completion 'recommends' Heat. The length term
    keeps rewards varied inside a group so the advantages are not all zero."""
    out = []
    for text, row in zip(texts, rows, strict=True):
        correct = row["answer"].lower() in text.lower()
        total = (1.0 if correct else -0.5) + 0.01 * len(text)
        out.append(ScoredCompletion(total=total, normalised=min(max(total, 0.0), 1.0), correct=correct,
                                    wrong_item_names=[] if correct else ["Heat"], parsed="\\boxed{" in text,
                                    components={"hit": float(correct)}))
    return out


def recording(score_fn=toy_score):
    """A score_fn that keeps what it returned, call by call: what the trainer's reward handed over."""
    calls = []

    def fn(texts, rows):
        calls.append(score_fn(texts, rows))
        return calls[-1]

    return fn, calls


def toy_dataset(n=4):
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"Recommend a comedy {i}"}], "prompt_id": f"q{i}",
         "answer": "Fargo" if i % 2 else "Toy"} for i in range(n)
    ])


def grpo_args(out, **kw):
    from trl import GRPOConfig

    base = dict(output_dir=str(out), per_device_train_batch_size=4, num_generations=2, max_completion_length=10,
                max_steps=2, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", learning_rate=1e-3,
                seed=0, beta=0.0, temperature=1.0, disable_tqdm=True)
    base.update(kw)
    return GRPOConfig(**base)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("tiny"))


def make_trainer(model_dir, out, curriculum=None, estimator="raae", w_penalty=0.5, reward_range=1.0, score_fn=None,
                 **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return ReRecGRPOTrainer(model=model, args=grpo_args(out, **kw), train_dataset=toy_dataset(), processing_class=tok,
                            score_fn=score_fn or toy_score, reward_range=reward_range,
                            advantage=AdvantageConfig(estimator=estimator, w_penalty=w_penalty,
                                                      segment_mode="paragraph"),
                            curriculum=curriculum)


def test_token_char_spans_roundtrip(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    text = "1. Heat fits\n\n2. Fargo fits\n\n\\boxed{Fargo}"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    decoded, spans = token_char_spans(tok, ids)
    assert decoded == text
    assert len(spans) == len(ids) and spans[-1] == (len(text), len(text))
    assert "".join(decoded[s:e] for s, e in spans) == text


def test_advantage_hook_is_per_token_and_drives_the_loss(model_dir, tmp_path):
    """Pins TRL 1.16's hook: the override returns (B, T) advantages equal to RAAE's, and TRL's loss
    weighs each token's policy-gradient term by its own advantage (zero advantage -> no gradient)."""
    import trl

    assert trl.__version__ == "1.16.0"
    score_fn, calls = recording()
    trainer = make_trainer(model_dir, tmp_path, gradient_checkpointing=False, reward_range=2.0, score_fn=score_fn)
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(batch)
    adv, mask, ids = out["advantages"], out["completion_mask"], out["completion_ids"]
    assert adv.dim() == 2 and adv.shape == ids.shape == mask.shape
    # recompute by hand from the scores of the one reward call of this batch
    (scores,) = calls
    segs, flags, spans = [], [], []
    for i, s in enumerate(scores):
        text, sp = token_char_spans(trainer.processing_class, ids[i, : int(mask[i].sum())].tolist())
        seg = segment_completion(text, "paragraph")
        segs.append(seg)
        flags.append(penalised_segments(seg, [] if s.correct else ["Heat"]))
        spans.append(sp)
    penalised = token_penalty_mask(flags, segs, spans, mask)
    # the floor is the config's fraction (0.1) of the reward range the trainer was given (2.0)
    expected = raae_advantages(torch.tensor([s.total for s in scores]), penalised, mask, 2, w_penalty=0.5,
                               sigma_floor=0.2)
    torch.testing.assert_close(adv, expected)
    assert (adv * (1 - mask)).abs().sum() == 0

    model = trainer.model
    params = [p for p in model.parameters() if p.requires_grad]

    def grad_for(advantages):
        inputs = dict(out, advantages=advantages)
        model.zero_grad()
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in params])

    zero = grad_for(torch.zeros_like(adv))
    assert zero.abs().max() == 0  # no advantage anywhere -> no policy gradient (beta = 0)
    rows, cols = mask.nonzero(as_tuple=True)
    one_hot_a = torch.zeros_like(adv)
    one_hot_a[rows[0], cols[0]] = 1.0
    one_hot_b = torch.zeros_like(adv)
    one_hot_b[rows[1], cols[1]] = 1.0
    ga, gb = grad_for(one_hot_a), grad_for(one_hot_b)
    assert ga.abs().max() > 0 and gb.abs().max() > 0
    # the gradient of a one-hot advantage is -grad log p of exactly that token (up to the normaliser)
    model.zero_grad()
    logps, _, _ = trainer._get_per_token_logps_and_entropies(
        model, torch.cat([out["prompt_ids"], ids], 1), torch.cat([out["prompt_mask"], mask], 1), ids.size(1))
    (-logps[rows[0], cols[0]]).backward()
    direct = torch.cat([p.grad.flatten() for p in params])
    cos = torch.nn.functional.cosine_similarity(ga, direct, dim=0)
    assert cos > 0.999
    assert torch.nn.functional.cosine_similarity(ga, gb, dim=0) < 0.999
    # linearity: a (B, T) advantage acts token by token, not as one number per sequence
    combo = grad_for(2 * one_hot_a - 3 * one_hot_b)
    # Measured: additive to ~0.2% of the norm (also in float64, while -logp itself is additive to 1e-8);
    # the source of that small deviation inside TRL's loss is not pinned down, hence the tolerance.
    assert ((combo - (2 * ga - 3 * gb)).norm() / combo.norm()) < 1e-2


def test_completion_only_logps_equal_trls_scoring_of_every_position(model_dir, tmp_path):
    """On a CPU (no Triton) TRL scores prompt and completion through its kernel's torch fallback; the
    override builds logits for the completion only. Same log-probs, entropies and gradients."""
    from trl import GRPOTrainer

    trainer = make_trainer(model_dir, tmp_path, gradient_checkpointing=False, bf16=False)
    torch.manual_seed(0)
    ids = torch.randint(3, 60, (4, 12))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding, as in a batch of prompts
    model, params = trainer.model, [p for p in trainer.model.parameters() if p.requires_grad]

    def run(fn):
        model.zero_grad()
        logps, entropies, _ = fn(trainer, model, ids, mask, 5, batch_size=3, compute_entropy=True)
        logps.sum().backward()
        return logps.detach(), entropies, torch.cat([p.grad.flatten() for p in params])

    ours = run(ReRecGRPOTrainer._get_per_token_logps_and_entropies)
    trl_ = run(GRPOTrainer._get_per_token_logps_and_entropies)
    assert ours[0].shape == (4, 5)
    torch.testing.assert_close(ours[0], trl_[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], trl_[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[2], trl_[2], atol=1e-5, rtol=1e-4)


def test_rollouts_come_from_rerecs_generator_in_trls_format(model_dir, tmp_path):
    """``_generate_single_turn`` returns what TRL's own returns: per completion its token ids, cut after the first
    EOS (kept), at most max_completion_length; no log-probabilities. The weight copy is timed in the step."""
    trainer = make_trainer(model_dir, tmp_path, temperature=0.7, top_k=20)
    trainer.model.train()  # as in the training loop
    assert trainer.rollout_fallback_reason() is None
    prompt_ids = [trainer.processing_class.encode(t) for t in ("Recommend a comedy 1", "Recommend a comedy 2")] * 2
    torch.manual_seed(0)
    ids, logprobs = trainer._generate_single_turn(prompt_ids, None, {}, 2)
    assert logprobs is None and len(ids) == 4
    eos = trainer.eos_token_ids
    for row in ids:
        assert row and all(isinstance(t, int) for t in row) and len(row) <= 10
        assert all(t not in eos for t in row[:-1])
    assert trainer._metrics["train"]["rerec/rollout_weight_copy_s"][-1] > 0

    torch.manual_seed(0)
    assert trainer._generate_single_turn(prompt_ids, None, {}, 2)[0] == ids  # seeded from torch's global RNG


@pytest.mark.parametrize("bf16", [True, False])
def test_rollouts_run_in_the_trainers_precision(model_dir, tmp_path, monkeypatch, bf16):
    import rerec.eval.generate as G

    seen = []
    real = G.generate_completions
    monkeypatch.setattr(G, "generate_completions", lambda *a, **k: seen.append(k["dtype"]) or real(*a, **k))
    trainer = make_trainer(model_dir, tmp_path, bf16=bf16)
    trainer._generate_single_turn([trainer.processing_class.encode("Recommend a comedy")] * 2, None, {}, 2)
    assert seen == [torch.bfloat16 if bf16 else torch.float32]


def test_rollouts_fall_back_to_trl_where_the_generator_lacks_an_option(model_dir, tmp_path, monkeypatch):
    from trl import GRPOTrainer

    trainer = make_trainer(model_dir, tmp_path, min_p=0.1)
    assert trainer.rollout_fallback_reason() == "min_p sampling"
    assert trainer.rollout_fallback_reason(images=[None]) == "the prompts carry images or multimodal inputs"
    called = []
    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", lambda self, *a, **k: called.append(a) or ([[1]], None))
    assert trainer._generate_single_turn([[5, 6]], None, {}, 2) == ([[1]], None)
    assert called


@pytest.mark.parametrize("requested, cuda, vllm, engine, why", [
    ("vllm", True, True, "vllm", "colocated"),
    ("vllm", True, False, "rerec", "not installed"),
    ("vllm", False, True, "rerec", "needs a CUDA device"),
    ("rerec", True, True, "rerec", "requested"),
])
def test_rollout_engine_choice(requested, cuda, vllm, engine, why):
    from rerec.train.grpo import choose_rollout_engine, rollout_config

    chosen, reason = choose_rollout_engine(requested, cuda, vllm)
    assert chosen == engine and why in reason
    assert rollout_config(chosen) == ({"use_vllm": True, "vllm_mode": "colocate"} if engine == "vllm"
                                      else {"use_vllm": False})


def test_the_paper_profile_asks_for_vllm_and_the_cpu_profiles_do_not():
    from rerec.errors import ConfigError
    from rerec.models.profiles import PROFILES
    from rerec.train.grpo import choose_rollout_engine

    assert PROFILES["paper"].rollout_engine == "vllm"
    assert {PROFILES[p].rollout_engine for p in ("tiny", "smollm2")} == {"rerec"}
    with pytest.raises(ConfigError, match="rerec or vllm"):
        choose_rollout_engine("sglang", True, True)


def test_segment_penalty_reaches_the_advantages(model_dir, tmp_path):
    """Every completion wrong with one shared reward (GRPO: no signal, advantage 0), its 'wrong item' the
    first word it wrote: the advantages are -w / (sigma_floor * reward_range) exactly on the tokens of
    the segments naming that word (raae's penalty is w reward units, whatever r is), and 0 elsewhere."""
    import re

    def first_word_wrong(texts, rows):
        names = [(re.findall(r"[A-Za-z]{2,}", t) or ["zz"])[0] for t in texts]
        return [ScoredCompletion(total=0.8, normalised=0.5, correct=False, wrong_item_names=[n]) for n in names]

    trainer = make_trainer(model_dir, tmp_path, w_penalty=0.5, reward_range=4.0, score_fn=first_word_wrong)
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(batch)
    adv, mask, ids = out["advantages"], out["completion_mask"], out["completion_ids"]
    segs, flags, spans = [], [], []
    for i in range(ids.shape[0]):
        text, sp = token_char_spans(trainer.processing_class, ids[i, : int(mask[i].sum())].tolist())
        seg = segment_completion(text, "paragraph")
        segs.append(seg)
        flags.append(penalised_segments(seg, [(re.findall(r"[A-Za-z]{2,}", text) or ["zz"])[0]]))
        spans.append(sp)
    penalised = token_penalty_mask(flags, segs, spans, mask)
    assert penalised.sum() > 0
    expected = torch.where(penalised, torch.tensor(-0.5 / (0.1 * 4.0)), torch.tensor(0.0))
    torch.testing.assert_close(adv, expected)
    logged = trainer._metrics["train" if trainer.model.training else "eval"]
    assert logged["rerec/uniform_group_rate"][-1] == 1.0 and logged["rerec/segment_penalty_rate"][-1] > 0


@pytest.mark.parametrize("estimator, w_penalty", [("grpo", 0.5), ("raae", 0.0)])
def test_plain_grpo_and_unpenalised_raae_give_trls_own_advantages(model_dir, tmp_path, monkeypatch, estimator,
                                                                  w_penalty):
    """The advantage the trainer hands TRL's loss equals, on every valid token, the one TRL itself computed
    from the same rewards in the same call (captured from GRPOTrainer), bit for bit."""
    from trl import GRPOTrainer

    trls = {}
    original = GRPOTrainer._generate_and_score_completions

    def capture(self, inputs):
        out = original(self, inputs)
        trls["advantages"] = out["advantages"].clone()
        return out

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", capture)
    score_fn, calls = recording()
    trainer = make_trainer(model_dir, tmp_path, estimator=estimator, w_penalty=w_penalty, score_fn=score_fn)
    batch = next(iter(trainer.get_train_dataloader()))
    out = trainer._generate_and_score_completions(batch)
    adv, mask = out["advantages"], out["completion_mask"]
    assert trls["advantages"].dim() == 1 and adv.shape == mask.shape
    assert trls["advantages"].abs().max() > 0
    assert torch.equal(adv, trls["advantages"].unsqueeze(1) * mask)
    (scores,) = calls
    totals = torch.tensor([s.total for s in scores]).view(-1, 2)
    expected = (totals - totals.mean(1, keepdim=True)) / (totals.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(adv[:, 0], expected.flatten(), rtol=1e-4, atol=1e-5)


def test_trainer_steps_with_curriculum(model_dir, tmp_path):
    cur = CurriculumScheduler([f"q{i}" for i in range(4)], CurriculumConfig(tau=0.5, probe_every=0, min_active=1))
    trainer = make_trainer(model_dir, tmp_path, curriculum=cur, max_steps=3, per_device_train_batch_size=4)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, CurriculumRepeatSampler)
    trainer.train()
    assert trainer.state.global_step == 3
    # 4 prompts x 2 generations per step; an epoch is 4 prompts = 2 steps -> epoch 1 began
    assert cur.epoch == 1 and cur.history[1]["n_rollouts"] == 8 and cur.history[1]["epoch"] == 0
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"rerec/parse_rate", "rerec/segment_penalty_rate", "rerec/hit", "rerec/uniform_group_rate"} <= logged
    assert len(trainer.sample_completions) == 12


def test_sampler_layout_matches_repeat_sampler():
    cur = CurriculumScheduler(["a", "b", "c"], CurriculumConfig(probe_every=0, min_active=1))
    s = CurriculumRepeatSampler(["a", "b", "c"], cur, mini_repeat_count=2, batch_size=2, repeat_count=2,
                                prompts_per_epoch=4)
    s.set_epoch(0)
    order = [["a", "b", "c"].index(p) for p in cur.begin_epoch(0)]
    got = list(s)
    assert len(got) == len(s) == 16
    cyc = [order[i % 3] for i in range(4)]
    expected = []
    for chunk in (cyc[:2], cyc[2:]):
        for _ in range(2):
            for i in chunk:
                expected += [i, i]
    assert got == expected


RESUME_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_rft import make_trainer
    from rerec.train.curriculum import CurriculumConfig, CurriculumScheduler
    out, resume, slow = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
    cur = CurriculumScheduler([f"q{{i}}" for i in range(4)], CurriculumConfig(tau=0.5, probe_every=1, min_active=1))
    trainer = make_trainer({model_dir!r}, out, curriculum=cur, max_steps=6, save_strategy="steps", save_steps=1)
    if slow:
        from transformers import TrainerCallback
        class Slow(TrainerCallback):
            def on_save(self, args, state, control, **kw):
                print("SAVED", state.global_step, flush=True)
        trainer.add_callback(Slow())
    ckpt = None
    if resume:
        from rerec.train.resume import latest_checkpoint
        ckpt = str(latest_checkpoint(out))
    trainer.train(resume_from_checkpoint=ckpt)
    w = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    json.dump({{"step": trainer.state.global_step, "curriculum": cur.state_dict(), "wsum": float(w.sum()),
               "wabs": float(w.abs().sum())}}, open(os.path.join(out, "final.json"), "w"))
""")


@pytest.mark.slow
def test_sigkill_resume_matches_uninterrupted_run(model_dir, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(Path(__file__).parent), model_dir=str(model_dir)))
    env = dict(os.environ, REREC_TRACKING="off", OMP_NUM_THREADS="1")

    def run(out, resume, slow="0"):
        return subprocess.run([sys.executable, str(script), str(out), resume, slow], env=env, capture_output=True,
                              text=True, timeout=600)

    straight = run(tmp_path / "a", "0")
    assert straight.returncode == 0, straight.stderr[-3000:]
    # the interrupted run: SIGKILL right after the third checkpoint is written
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "b"), "0", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("SAVED 3"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "b" / "final.json").exists()
    time.sleep(0.1)
    resumed = run(tmp_path / "b", "1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "final.json").read_text())
    b = json.loads((tmp_path / "b" / "final.json").read_text())
    assert a["step"] == b["step"] == 6
    assert a["curriculum"] == b["curriculum"]
    assert a["wsum"] == pytest.approx(b["wsum"], rel=1e-5) and a["wabs"] == pytest.approx(b["wabs"], rel=1e-5)


TITLES = ["Fargo", "Toy Story", "Apollo 13", "Heat", "Babe", "Casino", "Clueless", "Seven"]


@pytest.fixture(scope="module")
def stage_folders(tmp_path_factory, model_dir):
    return build_stage_folders(tmp_path_factory.mktemp("rftstage"))


def build_stage_folders(root: Path) -> Path:
    """data/, graphs/ and reward/ folders of a 12-query catalog (8 train queries), for the rft stage."""
    import pandas as pd

    from rerec.data.load import save_catalog
    from rerec.data.schema import Catalog, encode_conditions
    from rerec.graphs.attributes import ItemAttributeGraph

    items = pd.DataFrame({"item_id": [str(i) for i in range(1, 9)], "title": TITLES,
                          "year": pd.array([1995] * 8, dtype="Int64"), "genres": [["Crime"], ["Comedy"]] * 4})
    inter = pd.DataFrame([(f"u{u}", str(1 + (u + j) % 8)) for u in range(6) for j in range(3)],
                         columns=["user_id", "item_id"])
    attrs = pd.DataFrame({"item_id": [str(i) for i in range(1, 9)], "relation": ["genre"] * 8,
                          "entity": ["Crime", "Comedy"] * 4})
    rows = []
    for n in range(12):
        candidates = [str(1 + (n + j) % 8) for j in range(4)]
        cond = [{"relation": "genre", "entity": "Crime", "text": "crime"}]
        rows.append({"query_id": f"q{n}", "user_id": f"u{n % 6}", "type": "explicit", "text": "a crime film",
                     "conditions": encode_conditions(cond), "positives": [candidates[n % 4]], "candidates": candidates,
                     "history": [], "n_conditions": 1, "split": "train" if n < 8 else "val"})
    save_catalog(Catalog(items=items, interactions=inter, item_attributes=attrs, queries=pd.DataFrame(rows)),
                 root / "data")
    ItemAttributeGraph(attrs).save(root / "graphs")
    (root / "reward").mkdir()
    torch.save({"ids": items["item_id"].tolist(), "embeddings": torch.randn(8, 4)}, root / "reward/item_embeddings.pt")
    return root


def test_rft_stage_end_to_end(stage_folders, model_dir, tmp_path, caplog):
    import logging

    from rerec.errors import RerecError
    from rerec.train.rft import RFTConfig, rft

    cfg = RFTConfig(profile="tiny", steps=2, batch_size=2, num_generations=2, max_new_tokens=8, use_lora=True,
                    lora_r=4, n_candidates=4, max_history=0, save_steps=1, curriculum=CurriculumConfig(min_active=1))
    out = tmp_path / "rft"
    with caplog.at_level(logging.INFO, logger="rerec.train.rft"):
        metrics = rft(stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir, out, cfg)
    assert metrics["steps"] == 2 and metrics["n_train_prompts"] == 8
    # 2 steps of 2 prompts in 4 windows of at least one step: a window of 2 prompts, re-assessed after step 1
    # (an epoch of all 8 prompts would never have been re-assessed in these 2 steps)
    assert metrics["curriculum_window"] == 2 and metrics["curriculum_epoch"] == 1
    state = json.loads((out / "curriculum.json").read_text())
    closed = [h for h in state["history"] if "newly_mastered" in h]
    assert len(closed) == 1 and closed[0]["n_rollouts"] == 4 and len(closed[0]["difficulties"]) == 2
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("curriculum window")]
    assert lines[0] == "curriculum window 0: 8 prompts active, 0 mastered, 0 probes"
    assert lines[1].startswith("curriculum window 1: active 8 -> ")
    assert (out / "config.json").is_file() and (out / "adapter").is_dir() and (out / "curriculum.json").is_file()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-2"]
    saved = json.loads((out / "metrics.json").read_text())
    logged = {k for entry in saved["history"] for k in entry}
    assert {"rerec/parse_rate", "rerec/segment_penalty_rate", "rerec/ndcg", "rerec/qas", "rerec/pas"} <= logged
    assert not out.with_name("rft.rft-work").exists()
    # plain GRPO arm resolves its switches
    assert saved["config"]["reward"]["w_query"] == 0.5 and saved["config"]["advantage"]["estimator"] == "raae"
    assert metrics["reward_bounds"] == [-0.5, 2.1]
    # leftover checkpoints without --resume are refused with a fix
    (tmp_path / "again.rft-work" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    with pytest.raises(RerecError, match="--resume"):
        rft(stage_folders / "data", None, None, model_dir, tmp_path / "again", cfg)


def test_fewer_prompts_than_a_step_takes_is_refused_before_training(stage_folders, model_dir, tmp_path):
    """TRL's sampler drops an incomplete batch: 8 prompts at 9 a step would have trained 0 steps silently."""
    from rerec.errors import ConfigError
    from rerec.train.rft import RFTConfig, rft

    cfg = RFTConfig(profile="tiny", ablation="plain_grpo", steps=1, batch_size=9, num_generations=2,
                    max_new_tokens=8, n_candidates=4, max_history=0)
    with pytest.raises(ConfigError, match=r"gives 8 prompt\(s\) \(n_train=0\) but one RFT step takes batch_size=9"):
        rft(stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir, tmp_path / "r", cfg)
    assert not (tmp_path / "r").exists()
    # screening fewer prompts than a step takes: the message names the screening and its fix
    cfg = RFTConfig(profile="tiny", steps=1, batch_size=4, num_generations=2, max_new_tokens=8, n_candidates=4,
                    max_history=0, curriculum=CurriculumConfig(screen=2))
    with pytest.raises(ConfigError, match=r"gives 2 prompt\(s\) \(n_train=0, curriculum.screen=2\).*Fix: raise "
                                          r"curriculum.screen and n_train to at least 4"):
        rft(stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir, tmp_path / "s", cfg)


def test_stop_after_steps_keeps_the_learning_rate_schedule_of_steps(stage_folders, model_dir, tmp_path):
    """The ablation's equal budget: a later arm stops at the first arm's step count, on the first arm's
    schedule (linear decay over --steps), not on a schedule squeezed into fewer steps."""
    from rerec.train.rft import RFTConfig, rft

    cfg = RFTConfig(profile="tiny", steps=3, stop_after_steps=1, batch_size=2, num_generations=2, lr=3e-4,
                    max_new_tokens=8, use_lora=True, lora_r=4, n_candidates=4, max_history=0,
                    save_steps=10, curriculum=CurriculumConfig(min_active=1))
    metrics = rft(stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir,
                  tmp_path / "rft", cfg)
    assert metrics["steps"] == 1
    assert metrics["stopped_by_time_budget"] == 0  # stopped by the step budget, not by the clock
    history = json.loads((tmp_path / "rft" / "metrics.json").read_text())["history"]
    lrs = [e["learning_rate"] for e in history if "learning_rate" in e]
    assert lrs and lrs[0] > 0  # a 1-step schedule would have decayed to 0 at step 1


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint_and_resumes(stage_folders, model_dir, tmp_path,
                                                                                 monkeypatch):
    """ENOSPC inside the HF Trainer's checkpoint save (the optimiser's torch.save of checkpoint-2, after a
    partial write): one RerecError naming both checkpoints, checkpoint-1 intact, and --resume finishes."""
    import errno

    from rerec.errors import RerecError
    from rerec.train.resume import latest_checkpoint
    from rerec.train.rft import RFTConfig, rft

    real_save = torch.save

    def save_on_a_full_disk(obj, f, *args, **kwargs):
        if isinstance(f, str | os.PathLike) and "checkpoint-2" in str(f):
            with open(f, "wb") as partial:
                partial.write(b"PK\x03\x04 half an optimizer state")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    cfg = RFTConfig(profile="tiny", steps=2, batch_size=2, num_generations=2, max_new_tokens=8, use_lora=True,
                    lora_r=4, n_candidates=4, max_history=0, save_steps=1, curriculum=CurriculumConfig(min_active=1))
    out = tmp_path / "rft"
    checkpoints = tmp_path / "rft.rft-work" / "checkpoints"
    folders = (stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir, out, cfg)
    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    with pytest.raises(RerecError) as info:
        rft(*folders)
    message = str(info.value)
    assert message.startswith(f"Disk full while writing checkpoint {checkpoints / 'checkpoint-2'} (No space left")
    assert f"the previous checkpoint {checkpoints / 'checkpoint-1'} is intact" in message
    assert "Fix: free space" in message and "--resume" in message
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-1"]  # the partial one is gone
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-1" and not out.exists()

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    metrics = rft(*folders, resume=True)
    assert metrics["steps"] == 2 and metrics["resumed_from"] == str(checkpoints / "checkpoint-1")
    assert (out / "config.json").is_file() and [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-2"]


def test_a_checkpoint_with_a_truncated_trainer_state_is_not_resumed_from(tmp_path):
    from rerec.train.resume import latest_checkpoint

    for step, state in ((1, "{}"), (2, '{"global_step": 2, "log_hi')):  # checkpoint-2 cut short by a kill
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert latest_checkpoint(tmp_path, need_curriculum=False) == tmp_path / "checkpoint-1"


def test_the_reward_hands_each_batch_s_scores_over_once():
    """ScoringReward: TRL's call gives the totals; take() gives that call's breakdowns once, and refuses a
    batch it did not score (no stale scores) or a count that does not match."""
    from rerec.train.grpo import ScoringReward

    reward = ScoringReward(toy_score)
    assert reward.__name__ == "rerec_reward"  # the name of TRL's reward metrics
    rows = {"answer": ["Fargo", "Fargo"], "prompt_id": ["p", "p"], "other": "not per-row"}
    totals = reward(["x", "y"], ["\\boxed{Fargo}", [{"content": "Heat"}]], **rows)
    scores = reward.take(2)
    assert [s.total for s in scores] == totals and [s.correct for s in scores] == [True, False]
    with pytest.raises(RuntimeError, match="did not call the reward"):
        reward.take(2)
    reward(["x"], ["Heat"], answer=["Fargo"])
    with pytest.raises(RuntimeError, match="scored 1 completions for 2 inputs"):
        reward.take(2)


def test_screening_keeps_the_missed_prompts_and_tops_up_to_the_minimum():
    from rerec.train.screen import ScreenResult, keep_for_training

    ids, hits = ["q1", "q2", "q3", "q4", "q5"], [True, False, True, True, False]
    assert keep_for_training(ids, hits, minimum=2, seed=0) == ["q2", "q5"]
    assert keep_for_training(ids, hits, minimum=0, seed=0) == ["q2", "q5"]
    topped = keep_for_training(ids, hits, minimum=4, seed=0)
    assert len(topped) == 4 and {"q2", "q5"} < set(topped) and topped == sorted(topped)  # in the ids' order
    assert topped == keep_for_training(ids, hits, minimum=4, seed=0)  # seeded
    assert keep_for_training(ids, hits, minimum=9, seed=0) == ids  # never more than were screened
    with pytest.raises(ValueError, match="5 prompt ids but 4 screening results"):
        keep_for_training(ids, hits[:4], minimum=1, seed=0)
    # answered prompts beside the missed ones: one per missed one, half of one (2 x 0.5 = 1), all there are
    mixed = keep_for_training(ids, hits, minimum=1, seed=0, answered_per_missed=1.0)
    assert len(mixed) == 4 and {"q2", "q5"} < set(mixed)
    assert len(keep_for_training(ids, hits, minimum=1, seed=0, answered_per_missed=0.5)) == 3
    assert keep_for_training(ids, hits, minimum=1, seed=0, answered_per_missed=5.0) == ids
    with pytest.raises(ValueError, match="answered_per_missed must be >= 0"):
        keep_for_training(ids, hits, minimum=1, seed=0, answered_per_missed=-1)
    result = ScreenResult(ids, ["explicit", "interest", "interest", "explicit", "explicit"], hits, seconds=3.14)
    assert result.summary() == {"screened": 5, "missed": 2, "accuracy": 0.6,
                                "missed_by_type": {"explicit": 1, "interest": 1}, "seconds": 3.1}


def test_rft_trains_on_the_prompts_the_start_model_misses(stage_folders, model_dir, tmp_path, monkeypatch, caplog):
    """curriculum.screen: the greedy screening decides the training prompts (here a stand-in answers q0-q3 of
    the 8 training prompts right), screen.json goes with the model, and --resume reuses the screening instead
    of asking the model again."""
    import logging

    import rerec.eval.choice as choice
    from rerec.train.rft import RFTConfig, rft

    real = choice.evaluate_choice
    asked: list[list[str]] = []

    def answers_q0_to_q3(model, tokenizer, rows, view, **kwargs):
        asked.append([r["query_id"] for r in rows])
        result = real(model, tokenizer, rows, view, **kwargs)  # the real generator runs; only the verdict is set
        return {**result, "hits": [r["query_id"] in {"q0", "q1", "q2", "q3"} for r in rows]}

    monkeypatch.setattr(choice, "evaluate_choice", answers_q0_to_q3)
    cfg = RFTConfig(profile="tiny", steps=2, batch_size=2, num_generations=2, max_new_tokens=8, use_lora=True,
                    lora_r=4, n_candidates=4, max_history=0, save_steps=1,
                    curriculum=CurriculumConfig(min_active=1, screen=8))
    out = tmp_path / "rft"
    metrics = rft(stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir, out, cfg)
    assert sorted(asked[0]) == [f"q{i}" for i in range(8)]
    assert metrics["n_train_prompts"] == 4 and metrics["screen_screened"] == 8 and metrics["screen_missed"] == 4
    assert metrics["screen_accuracy"] == 0.5 and metrics["screen_trained"] == 4
    assert sorted(json.loads((out / "curriculum.json").read_text())["prompt_ids"]) == ["q4", "q5", "q6", "q7"]
    saved = json.loads((out / "screen.json").read_text())
    assert dict(zip(saved["prompt_ids"], saved["hits"], strict=True)) == {f"q{i}": i < 4 for i in range(8)}

    # a resumed run trains on the screening it saved; the model is not asked again
    work = tmp_path / "again.rft-work"
    (work / "checkpoints").mkdir(parents=True)
    (work / "screen.json").write_text((out / "screen.json").read_text())
    asked.clear()
    with caplog.at_level(logging.INFO, logger="rerec.train.rft"):
        metrics = rft(stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir,
                      tmp_path / "again", cfg, resume=True)
    assert asked == [] and metrics["n_train_prompts"] == 4 and metrics["screen_missed"] == 4
    assert any(r.getMessage().startswith("screening (saved by the run being resumed): the start model missed 4 of 8")
               for r in caplog.records)


def test_screening_with_the_real_generator_and_too_few_misses_for_a_step(stage_folders, model_dir, tmp_path):
    """The tiny random model answers little right; whatever it answers, a step's worth of prompts is trained."""
    from rerec.train.rft import RFTConfig, rft

    cfg = RFTConfig(profile="tiny", steps=1, batch_size=4, num_generations=2, max_new_tokens=8, use_lora=True,
                    lora_r=4, n_candidates=4, max_history=0, save_steps=1,
                    curriculum=CurriculumConfig(min_active=1, screen=4, screen_answered=1.0))
    metrics = rft(stage_folders / "data", stage_folders / "graphs", stage_folders / "reward", model_dir,
                  tmp_path / "rft", cfg)
    assert metrics["screen_screened"] == 4 and metrics["n_train_prompts"] == 4 and metrics["steps"] == 1
    assert len(json.loads((tmp_path / "rft" / "screen.json").read_text())["hits"]) == 4


def test_rft_paraphrase_rewords_the_training_prompts_as_prepare_data_would(tmp_path):
    """RFTConfig.paraphrase: training prompts drawn from a folder prepared without paraphrases carry, query for
    query, the words a folder prepared with --paraphrase (same share, same data seed 3) has, on the real
    MovieLens-100k; 0 leaves them as prepared; a share outside [0, 1] is refused."""
    from rerec.data.prepare import PrepareConfig, prepare_data
    from rerec.errors import ConfigError
    from rerec.train.inputs import data_seed, load_view_and_queries
    from rerec.train.rft import RFTConfig, training_rows

    small = {"n_explicit": 40, "n_implicit": 30, "n_misinformed": 20, "n_interest": 20, "n_candidates": 8, "seed": 3}
    prepare_data(None, tmp_path / "plain", PrepareConfig(**small), progress=False)
    prepare_data(None, tmp_path / "para", PrepareConfig(**small, paraphrase=0.5), progress=False)
    assert data_seed(tmp_path / "plain") == 3 and data_seed(tmp_path) == 0  # no manifest: 0
    view, queries = load_view_and_queries(tmp_path / "plain", None)
    _, para = load_view_and_queries(tmp_path / "para", None)
    worded = dict(zip(para["query_id"], para["text"], strict=True))
    cfg = RFTConfig(profile="tiny", paraphrase=0.5).resolved()
    rows = training_rows(view, queries, cfg, data_seed(tmp_path / "plain"))
    assert rows and all(r["text"] == worded[r["query_id"]] for r in rows)
    as_prepared = dict(zip(queries["query_id"], queries["text"], strict=True))
    assert 0.3 * len(rows) < sum(r["text"] != as_prepared[r["query_id"]] for r in rows) < 0.7 * len(rows)
    plain = training_rows(view, queries, RFTConfig(profile="tiny").resolved(), 3)
    assert all(r["text"] == as_prepared[r["query_id"]] for r in plain)
    with pytest.raises(ConfigError, match=r"paraphrase is a share .* got 1.5"):
        RFTConfig(profile="tiny", paraphrase=1.5).resolved()
