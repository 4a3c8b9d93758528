"""The ``tiny`` model: a Llama of a few million parameters with SmolLM2's tokenizer, randomly initialised.

It exists so that tests and CPU ablations can run hundreds of cheap steps (``docs/design.md``, "Model
profiles"). Sharing SmolLM2's tokenizer keeps prompts, traces and the answer parser identical across
profiles. The initial weights are seeded and cached under ``cache_dir()/models/`` so that every stage
and every test starts from the same model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rerec.io import atomic_dir
from rerec.paths import cache_dir

# 4 layers x 256 wide: big enough to learn the answer format, small enough for hundreds of CPU steps.
TINY_SHAPE = {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 2048}


def tiny_config(tokenizer: Any, **overrides: Any) -> Any:
    """A ``LlamaConfig`` sized by :data:`TINY_SHAPE` (overridable) for ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig

    shape = {**TINY_SHAPE, **overrides}
    return LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, **shape)


def build_tiny_model(tokenizer: Any, seed: int = 0, **overrides: Any) -> Any:
    """A freshly initialised tiny ``LlamaForCausalLM`` (float32)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(tokenizer, **overrides))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_model_dir(smollm2_tokenizer: Callable[[], Any], seed: int = 0, **overrides: Any) -> Path:
    """The cached folder of the seeded tiny model, created on first use with the tokenizer
    ``smollm2_tokenizer()`` returns (SmolLM2's; :func:`rerec.models.loading.resolve_model_dir` passes its
    loader, so that this module needs nothing from the loader and a cached model loads no tokenizer)."""
    shape = {**TINY_SHAPE, **overrides}
    key = hashlib.sha256(json.dumps({"shape": shape, "seed": seed}, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"tiny-{key}"
    if (target / "config.json").is_file():
        return target
    tokenizer = smollm2_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed, **overrides)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
