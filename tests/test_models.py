"""Model loading and profiles: the embedded SmolLM2 (cached conversion), the tiny model, folders, errors."""

import time

import pytest

from rerec.errors import ConfigError, RerecError
from rerec.models.loading import (
    LoraSpec,
    freeze_bottom_layers,
    load_model,
    load_tokenizer,
    resolve_model_dir,
    smollm2_dir,
)
from rerec.models.profiles import PROFILES, get_profile
from rerec.models.tiny import build_tiny_model, count_parameters, tiny_model_dir


def test_profiles_cover_the_design_and_fit_a_cpu():
    assert set(PROFILES) == {"tiny", "smollm2", "paper"}
    tiny, smol, paper = PROFILES["tiny"], PROFILES["smollm2"], PROFILES["paper"]
    assert tiny.model == "tiny" and not tiny.use_lora  # trained from scratch: full fine-tuning
    # SFT and RFT fine-tune every weight (LoRA RFT did not move the model; docs/results.md)
    assert smol.model == "smollm2" and not smol.use_lora and smol.sft_use_lora is False
    assert (smol.rft_batch_size, smol.num_generations, smol.rft_lr, smol.rft_steps) == (4, 4, 1e-5, 16)
    assert paper.num_generations == 5 and paper.rft_lr == 5e-6 and paper.max_new_tokens == 768
    for cpu in (tiny, smol):
        assert cpu.context_mode == "evidence" and cpu.n_candidates <= 10
    # completions sized for their trace styles: prose fits 96 tokens, a scan of up to 4 rows about 150 (95th pct.)
    assert tiny.max_new_tokens <= 128 and "table" not in tiny.trace_styles
    assert smol.max_new_tokens <= 256 and smol.trace_styles == "scan"
    with pytest.raises(ConfigError, match="tiny, smollm2, paper"):
        get_profile("huge")


def test_missing_folder_or_offline_hub_id_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RerecError, match="neither a built-in model"):
        resolve_model_dir(str(tmp_path / "nowhere"))
    with pytest.raises(RerecError, match="hub is offline"):
        resolve_model_dir("Qwen/Qwen2.5-3B-Instruct")
    with pytest.raises(RerecError, match="no config.json"):
        resolve_model_dir(str(tmp_path))


def test_unloadable_model_folder_is_one_clear_error(tmp_path):
    """transformers' ValueError/OSError/SafetensorError for a broken folder become one RerecError naming it."""
    import shutil

    cases = {"empty_config": "{}", "config_not_json": "{not json"}
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(resolve_model_dir("tiny"), no_weights)
    for weights in no_weights.glob("*.safetensors"):
        weights.unlink()
    truncated = tmp_path / "truncated_weights"
    shutil.copytree(resolve_model_dir("tiny"), truncated)
    for weights in truncated.glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    for folder, reason in [(tmp_path / "empty_config", "model_type"), (tmp_path / "config_not_json", "JSON"),
                           (no_weights, "model.safetensors"), (truncated, "")]:
        with pytest.raises(RerecError) as info:
            load_model(str(folder))
        message = str(info.value)
        assert message.startswith(f"Model folder {folder} cannot be loaded by transformers: ")
        assert reason in message and "Fix: pass a folder written by save_pretrained" in message


def test_tokenizer_has_chat_template_and_pad_token():
    tok = load_tokenizer("smollm2")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok.pad_token is not None and tok.padding_side == "left"
    assert len(tok) == 49152


def test_tiny_model_is_small_seeded_and_cached():
    tok = load_tokenizer("smollm2")
    a, b = build_tiny_model(tok, seed=0), build_tiny_model(tok, seed=0)
    assert 5_000_000 < count_parameters(a) < 20_000_000
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters(), strict=True))
    folder = resolve_model_dir("tiny")
    assert resolve_model_dir("tiny") == folder and (folder / "config.json").is_file()
    model, tok2 = load_model("tiny")
    assert model.config.vocab_size == len(tok2) and model.config.hidden_size == 256
    # a cached tiny model is found without loading a tokenizer (the loader is only called to build it)
    assert tiny_model_dir(lambda: pytest.fail("loaded a tokenizer for a cached model")) == folder


def test_lora_wraps_only_adapters_as_trainable():
    model, _ = load_model("tiny", lora=LoraSpec(r=4, alpha=8), trainable=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert model.training


def test_frozen_bottom_layers_get_no_gradient_and_the_top_ones_train():
    tok = load_tokenizer("smollm2")
    model = build_tiny_model(tok, seed=0, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                             num_attention_heads=2, num_key_value_heads=2)
    total = count_parameters(model)
    assert freeze_bottom_layers(model, 0) == total  # 0 changes nothing
    left = freeze_bottom_layers(model, 2)
    top = sum(p.numel() for p in model.model.layers[2].parameters()) + model.model.norm.weight.numel()
    assert left == top  # the tied vocabulary head is frozen with the embeddings
    ids = tok("Toy Story (1995) - animation", return_tensors="pt")["input_ids"]
    model(input_ids=ids, labels=ids).loss.backward()
    assert model.model.embed_tokens.weight.grad is None
    assert all(p.grad is None for p in model.model.layers[:2].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.layers[2].parameters())
    with pytest.raises(RerecError, match="between 0 and 2"):
        freeze_bottom_layers(model, 3)  # nothing would be left to train


@pytest.mark.slow  # the first call converts the GGUF (about 35 s); later calls read the cache
def test_embedded_smollm2_converts_once_loads_fast_and_generates():
    import torch

    folder = smollm2_dir()
    assert (folder / "model.safetensors").is_file() and smollm2_dir() == folder
    start = time.perf_counter()
    model, tok = load_model("smollm2")
    assert time.perf_counter() - start < 30  # ~0.7 s on an idle core; generous on a shared CPU
    assert model.config.num_hidden_layers == 30 and not model.training
    assert tok.chat_template
    batch = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                    add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text
