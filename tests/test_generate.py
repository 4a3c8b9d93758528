"""The generation path (rerec.eval.generate) and its lean decoder (rerec.eval.decoder): logits equal to the
model's own forward pass, greedy tokens equal to transformers' generate, continuous batching that does not
change what a row generates, the sampler by hand-computed cases."""

import pytest
import torch

from rerec.eval.decoder import LeanDecoder, unsupported_reason
from rerec.eval.generate import generate_completions, pick_tokens
from rerec.models.loading import load_tokenizer

torch.set_num_threads(1)

PROMPTS = ["<|im_start|>user\nRecommend a comedy<|im_end|>\n<|im_start|>assistant\n",
           "Heat (1995) - crime, thriller", "a", "Films of the 90s: Fargo, Casino, Seven and",
           "<|im_start|>user\nWhich of these is a musical?<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


def llama(tokenizer, seed=0, init=0.02, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      initializer_range=init, **{**shape, **overrides})
    return LlamaForCausalLM(cfg).eval()


def qwen2(tokenizer, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # q/k/v biases are zero at initialisation: make them count
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


def with_lora(model):
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():  # peft starts B at zero (no change): give the adapter an effect
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return wrapped.eval()


@pytest.mark.parametrize("kind, block", [("llama_gqa", 128), ("qwen2_bias", 128), ("llama_lora", 128),
                                         ("llama_gqa", 5)])
def test_lean_logits_equal_the_model_forward(tokenizer, kind, block, monkeypatch):
    """Prefill three prompts of different lengths into three slots, then decode three steps where every row
    sits at its own position: each step's logits equal the model's logits for the whole sequence. Block 5:
    the prompts' causal attention in several blocks of queries."""
    import rerec.eval.decoder

    monkeypatch.setattr(rerec.eval.decoder, "PREFILL_BLOCK", block)
    model = {"llama_gqa": lambda: llama(tokenizer), "qwen2_bias": lambda: qwen2(tokenizer),
             "llama_lora": lambda: with_lora(llama(tokenizer))}[kind]()
    decoder = LeanDecoder(model, dtype=torch.float32)
    seqs = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS[:3]]
    cache = decoder.new_cache(3, 64)

    def reference(ids):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0, -1].float()

    for slot, ids in enumerate(seqs):
        torch.testing.assert_close(decoder.prefill(cache, slot, torch.tensor(ids)), reference(ids), atol=2e-5, rtol=1e-4)
    for step in range(3):
        tokens = [(17 * step + 5 * slot + 3) % 500 for slot in range(3)]
        logits = decoder.step(cache, torch.tensor(tokens), 3)
        for slot in range(3):
            seqs[slot].append(tokens[slot])
            torch.testing.assert_close(logits[slot], reference(seqs[slot]), atol=2e-5, rtol=1e-4)
    assert cache.lengths == [len(s) for s in seqs]


@pytest.mark.parametrize("block", [128, 3])
def test_a_prompt_continuing_a_cached_prefix_gets_the_same_logits(tokenizer, block, monkeypatch):
    import rerec.eval.decoder

    monkeypatch.setattr(rerec.eval.decoder, "PREFILL_BLOCK", block)
    model = qwen2(tokenizer)
    decoder = LeanDecoder(model, dtype=torch.float32)
    shared = tokenizer.encode(PROMPTS[0], add_special_tokens=False)
    ids = torch.tensor(shared + tokenizer.encode("Fargo or Heat?", add_special_tokens=False))
    cache = decoder.new_cache(2, 64)
    full = decoder.prefill(cache, 0, ids)
    decoder.prefill(cache, 1, torch.tensor(shared + [7, 8, 9]))  # the same beginning, then other tokens
    cache.copy_prefix(1, 0, len(shared))
    torch.testing.assert_close(decoder.prefill(cache, 0, ids, start=len(shared)), full, atol=2e-5, rtol=1e-4)
    steps = [decoder.step(cache, torch.tensor([5, 6]), 2) for _ in range(2)]
    with torch.no_grad():
        ref = model(input_ids=torch.cat([ids, torch.tensor([5, 5])])[None]).logits[0, -1]
    torch.testing.assert_close(steps[1][0], ref, atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="at least one"):
        decoder.prefill(cache, 0, ids, start=len(ids))


def test_the_snapshot_leaves_the_model_alone(tokenizer):
    model = with_lora(llama(tokenizer))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    LeanDecoder(model, dtype=torch.bfloat16)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)


def test_lean_greedy_tokens_equal_transformers_generate(tokenizer):
    """float32, a model with peaked logits (no near-ties): same tokens, and an EOS met mid-way ends the row in
    both (the EOS is kept, as TRL's rollouts expect)."""
    model = llama(tokenizer, init=0.5)
    hf = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=5, engine="hf",
                              dtype=torch.float32, progress=False)
    eos = hf.token_ids[1][4]  # a token row 1 generates: it must now end there
    kwargs = dict(max_new_tokens=12, dtype=torch.float32, eos_token_ids=[tokenizer.eos_token_id, eos], progress=False)
    hf = generate_completions(model, tokenizer, PROMPTS, batch_size=5, engine="hf", **kwargs)
    lean = generate_completions(model, tokenizer, PROMPTS, batch_size=2, engine="lean", **kwargs)
    assert lean.engine == "lean" and hf.engine == "hf"
    assert lean.token_ids == hf.token_ids
    assert lean.token_ids[1][-1] == eos and len(lean.token_ids[1]) <= 5
    assert any(len(t) == 12 for t in lean.token_ids)
    assert lean.completions == hf.completions
    assert lean.n_new_tokens == sum(map(len, hf.token_ids))


def test_continuous_batching_does_not_change_what_a_row_generates(tokenizer):
    model = llama(tokenizer, init=0.5)
    kwargs = dict(max_new_tokens=10, dtype=torch.float32, engine="lean", progress=False,
                  eos_token_ids=[tokenizer.eos_token_id, 300, 301, 302])  # a few rows end early
    outs = [generate_completions(model, tokenizer, PROMPTS, batch_size=b, **kwargs).token_ids for b in (1, 2, 5, 8)]
    assert outs[0] == outs[1] == outs[2] == outs[3]
    for switch in ("sort_by_length", "continuous_batching", "prepack_weights", "share_prefixes"):
        assert generate_completions(model, tokenizer, PROMPTS, batch_size=2, **{switch: False}, **kwargs).token_ids \
            == outs[0]


def test_repeated_prompts_are_prefilled_once(tokenizer, monkeypatch):
    model = llama(tokenizer, init=0.5)
    calls = []
    original = LeanDecoder.prefill
    monkeypatch.setattr(LeanDecoder, "prefill", lambda self, cache, slot, ids, start=0: calls.append(len(ids)) or
                        original(self, cache, slot, ids, start))
    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[3], PROMPTS[0]]
    kwargs = dict(max_new_tokens=8, dtype=torch.float32, engine="lean", progress=False)
    shared = generate_completions(model, tokenizer, prompts, batch_size=4, **kwargs)
    assert calls == sorted(len(tokenizer.encode(PROMPTS[i], add_special_tokens=False)) for i in (0, 3))
    alone = generate_completions(model, tokenizer, [PROMPTS[0], PROMPTS[3]], batch_size=1, **kwargs)
    assert shared.token_ids == [alone.token_ids[0]] * 2 + [alone.token_ids[1], alone.token_ids[0]]


def test_prompts_sharing_a_system_prompt_compute_only_the_rest(tokenizer, monkeypatch):
    model = llama(tokenizer, init=0.5)
    starts = []
    original = LeanDecoder.prefill
    monkeypatch.setattr(LeanDecoder, "prefill", lambda self, cache, slot, ids, start=0: starts.append(start) or
                        original(self, cache, slot, ids, start))
    system = "<|im_start|>system\nYou recommend one movie from a numbered list of candidates.<|im_end|>\n"
    prompts = [system + p for p in PROMPTS]
    n_system = len(tokenizer.encode(system, add_special_tokens=False))
    kwargs = dict(max_new_tokens=6, dtype=torch.float32, engine="lean", progress=False)
    together = generate_completions(model, tokenizer, prompts, batch_size=5, **kwargs)
    assert starts[0] == 0 and all(s >= n_system for s in starts[1:])
    alone = generate_completions(model, tokenizer, prompts, batch_size=1, **kwargs)
    assert together.token_ids == alone.token_ids


def test_sampling_is_seeded(tokenizer):
    model = llama(tokenizer, init=0.1)
    kwargs = dict(max_new_tokens=12, batch_size=3, do_sample=True, temperature=1.0, dtype=torch.float32,
                  progress=False)
    a = generate_completions(model, tokenizer, PROMPTS, seed=1, **kwargs)
    b = generate_completions(model, tokenizer, PROMPTS, seed=1, **kwargs)
    c = generate_completions(model, tokenizer, PROMPTS, seed=2, **kwargs)
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_pick_tokens_by_hand():
    g = torch.Generator().manual_seed(0)
    assert pick_tokens(torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])).tolist() == [1, 2]
    assert pick_tokens(torch.tensor([[1.0, 3.0, 2.0]]), do_sample=True, temperature=0.0).tolist() == [1]
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).repeat(4000, 1)
    top2 = pick_tokens(logits.clone(), do_sample=True, top_k=2, generator=g)
    assert set(top2.tolist()) == {0, 1}
    # top_p=0.7: the mass before token 1 is 0.5 < 0.7 (kept), before token 2 it is 0.8 (dropped)
    nucleus = pick_tokens(logits.clone(), do_sample=True, top_p=0.7, generator=g)
    assert set(nucleus.tolist()) == {0, 1}
    assert abs(float((nucleus == 0).float().mean()) - 0.5 / 0.8) < 0.03
    plain = pick_tokens(logits.clone(), do_sample=True, generator=g)
    freq = torch.bincount(plain, minlength=3).float() / len(plain)
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.03, rtol=0)
    # temperature 0.5 squares the probabilities before renormalising: 25:9:4
    hot = pick_tokens(logits.clone(), do_sample=True, temperature=0.5, generator=g)
    freq = torch.bincount(hot, minlength=3).float() / len(hot)
    torch.testing.assert_close(freq, torch.tensor([25.0, 9.0, 4.0]) / 38, atol=0.03, rtol=0)
    assert pick_tokens(torch.tensor([[0.0, 9.0, 1.0]]), do_sample=True, top_p=0.01, generator=g).tolist() == [1]


def test_bfloat16_generation_and_its_report(tokenizer):
    model = llama(tokenizer, init=0.5)
    out = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2, dtype=torch.bfloat16,
                               progress=False)
    assert out.dtype == "bfloat16" and out.engine == "lean" and out.setup_s > 0
    assert next(model.parameters()).dtype == torch.float32  # the model is not cast
    assert all(len(t) <= 6 for t in out.token_ids) and out.n_generated == len(PROMPTS)


def test_other_architectures_use_transformers_generate(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                       eos_token_id=tokenizer.eos_token_id)).eval()
    assert "gpt2" in unsupported_reason(model)
    out = generate_completions(model, tokenizer, PROMPTS[:2], max_new_tokens=4, dtype=torch.float32, progress=False)
    assert out.engine == "hf" and all(len(t) <= 4 for t in out.token_ids)
    with pytest.raises(Exception, match="lean generation engine cannot run"):
        generate_completions(model, tokenizer, PROMPTS[:2], engine="lean", progress=False)


def test_token_id_prompts_and_a_spent_budget(tokenizer):
    model = llama(tokenizer, init=0.5)
    ids = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS[:2]]
    kwargs = dict(max_new_tokens=5, dtype=torch.float32, progress=False)
    assert (generate_completions(model, tokenizer, ids, **kwargs).token_ids
            == generate_completions(model, tokenizer, PROMPTS[:2], **kwargs).token_ids)
    spent = generate_completions(model, tokenizer, PROMPTS[:2], time_budget_s=0.0, **kwargs)
    assert spent.token_ids == [None, None] and spent.completions == [None, None] and spent.budget_exhausted
