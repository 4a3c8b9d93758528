"""A lean incremental decoder for Llama-family causal LMs (Llama, Qwen2, Mistral without a sliding window).

:class:`LeanDecoder` takes a snapshot of a Hugging Face model's weights in one dtype (LoRA adapters
merged in, q/k/v and gate/up projections fused into one matrix each) and runs the transformer itself:

- a preallocated KV cache, keys stored transposed ``(layers, slots, kv_heads, head_dim, max_len)`` and
  values ``(layers, slots, kv_heads, max_len, head_dim)``, so both attention products read the cache in
  place; each row starts at position 0 (no left padding, so positions are plain offsets);
- :meth:`prefill` encodes one prompt into one cache slot (one matrix product per projection over
  the whole prompt, causal attention) and returns the logits of its last position only; a prompt whose
  beginning another slot already holds (the shared system prompt, GRPO's repeated prompts) copies those
  keys and values and computes only the rest;
- :meth:`step` decodes one token for each of the first ``n`` slots, each at its own position, with
  attention over its own prefix (a boolean mask where rows differ in length).

Equations (per layer, ``x`` the residual stream (n, hidden)):
``h = RMSNorm(x)``, ``q, k, v = h W_qkv^T (+ b_qkv)``, RoPE on q, k at each row's position,
``x += softmax(q K^T * scaling) V W_o^T`` (grouped-query: ``num_heads / num_kv_heads`` query heads
share a key/value head), ``h = RMSNorm(x)``, ``x += (silu(h W_g^T) * h W_u^T) W_d^T``;
logits ``= RMSNorm(x) W_lm^T``, returned in float32.

The numbers are those of transformers' eager/SDPA implementation up to floating-point rounding (the
tests compare logits with the model's own forward pass). Models of another architecture use
:func:`rerec.eval.generate.generate_completions`' Hugging Face path; :func:`unsupported_reason` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
PREFILL_BLOCK = 128  # prompt positions per block of causal attention on a CPU


def _base_model(model: Any) -> Any:
    """The transformers ``*ForCausalLM`` inside a peft wrapper (or the model itself)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, "module", model)


def unsupported_reason(model: Any) -> str | None:
    """Why :class:`LeanDecoder` cannot run ``model`` (None: it can)."""
    base = _base_model(model)
    cfg = getattr(base, "config", None)
    model_type = getattr(cfg, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} (only silu)"
    if getattr(cfg, "mlp_bias", False):
        return "MLP biases"
    if getattr(cfg, "pretraining_tp", 1) not in (1, None):
        return "pretraining_tp > 1"
    if getattr(cfg, "use_sliding_window", False) or (model_type == "mistral" and getattr(cfg, "sliding_window", None)):
        return "sliding-window attention"
    rotary = getattr(getattr(base, "model", None), "rotary_emb", None)
    if rotary is None or not hasattr(rotary, "inv_freq"):
        return "no rotary embedding module with inv_freq"
    if getattr(rotary, "rope_type", "default") not in STATIC_ROPE_TYPES:
        return f"rope_type {rotary.rope_type!r} changes with the sequence length"
    return None


def effective_weight(module: Any) -> torch.Tensor:
    """A linear layer's weight as its forward pass applies it: a peft LoRA layer's active, unmerged
    adapters added (``W + scaling * B A``); a plain ``nn.Linear``'s weight otherwise. (out, in)."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight.detach()
    weight = base.weight.detach()
    if getattr(module, "disable_adapters", False) or getattr(module, "merged", False):
        return weight
    for name in getattr(module, "active_adapters", []):
        if name in getattr(module, "lora_A", {}):
            weight = weight + module.get_delta_weight(name).detach().to(weight.dtype)
    return weight


def _bias(module: Any) -> torch.Tensor | None:
    base = getattr(module, "base_layer", module)
    return None if base.bias is None else base.bias.detach()


class Linear:
    """``y = x W^T + b`` for x (n, in). On a CPU the weight is reordered once into oneDNN's blocked layout
    (``torch.ops.mkldnn._reorder_linear_weight``), so a product with few rows (a decode step) no longer
    reorders the whole matrix on every call; elsewhere, or where that op is missing, ``F.linear``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, prepack: bool = True) -> None:
        self.weight, self.bias, self.packed = weight, bias, None
        self.out_features = weight.shape[0]
        if prepack and weight.device.type == "cpu" and torch.backends.mkldnn.is_available():
            try:
                packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
                probe = torch.ops.mkldnn._linear_pointwise(torch.zeros(1, weight.shape[1], dtype=weight.dtype), packed,
                                                           bias, "none", [], "")
            except (RuntimeError, AttributeError):
                packed, probe = None, None
            if packed is not None and probe.shape == (1, weight.shape[0]):
                self.packed = packed
                self.weight = None  # the blocked copy replaces it

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


@dataclass
class _Layer:
    ln_attn: torch.Tensor  # (hidden,)
    qkv: Linear  # ((heads + 2 kv_heads) * head_dim, hidden)
    o: Linear  # (hidden, heads * head_dim)
    ln_mlp: torch.Tensor  # (hidden,)
    gate_up: Linear  # (2 * intermediate, hidden)
    down: Linear  # (hidden, intermediate)


class KVCache:
    """Keys and values of ``slots`` sequences up to ``max_len`` positions: keys (layers, slots, kv_heads,
    head_dim, max_len), values (layers, slots, kv_heads, max_len, head_dim); ``lengths[s]`` positions of
    slot ``s`` are filled."""

    def __init__(self, n_layers: int, slots: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        # zeros, not empty: positions past a row's length are masked to probability 0, and 0 * NaN garbage
        # would still be NaN
        self.k = torch.zeros((n_layers, slots, kv_heads, head_dim, max_len), dtype=dtype, device=device)
        self.v = torch.zeros((n_layers, slots, kv_heads, max_len, head_dim), dtype=dtype, device=device)
        self.lengths = [0] * slots
        self.max_len = max_len

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Slot ``dst`` becomes the first ``n`` positions of slot ``src``."""
        self.k[:, dst, :, :, :n] = self.k[:, src, :, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lengths[dst] = n

    def move(self, src: int, dst: int) -> None:
        """Copy slot ``src`` into slot ``dst`` (compaction when a sequence ends and none waits)."""
        self.copy_prefix(src, dst, self.lengths[src])


class LeanDecoder:
    """A weight snapshot of a Llama-family model in ``dtype`` on ``device`` (see the module docstring).

    Building it copies the weights once (and merges LoRA): for a policy that changes every RFT step,
    build a new one per step. The model itself is not modified. ``prepack=False`` keeps plain ``F.linear``
    (for measuring what the oneDNN layout buys).
    """

    def __init__(self, model: Any, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 prepack: bool = True) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"LeanDecoder cannot run this model: {reason}")
        base = _base_model(model)
        cfg = base.config
        inner = base.model
        if device is None:
            device = inner.embed_tokens.weight.device
        self.device = torch.device(device)
        self.dtype = dtype

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=self.device, dtype=dtype).contiguous()

        def linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
            return Linear(cast(weight), cast(bias), prepack=prepack)

        first = inner.layers[0].self_attn
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(first, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.scaling = float(getattr(first, "scaling", self.head_dim ** -0.5))
        self.eps = float(cfg.rms_norm_eps)
        self.hidden = cfg.hidden_size
        with torch.no_grad():
            self.embed = cast(effective_weight(inner.embed_tokens))
            self.norm = cast(inner.norm.weight.detach())
            lm_head = base.get_output_embeddings()
            self.lm_head = linear(effective_weight(lm_head))
            self.layers = []
            for layer in inner.layers:
                att, mlp = layer.self_attn, layer.mlp
                projections = (att.q_proj, att.k_proj, att.v_proj)
                biases = [_bias(p) for p in projections]
                b_qkv = None if all(b is None for b in biases) else torch.cat(
                    [b if b is not None else torch.zeros(effective_weight(p).shape[0], device=effective_weight(p).device)
                     for b, p in zip(biases, projections, strict=True)])
                self.layers.append(_Layer(
                    ln_attn=cast(layer.input_layernorm.weight.detach()),
                    qkv=linear(torch.cat([effective_weight(p) for p in projections]), b_qkv),
                    o=linear(effective_weight(att.o_proj)),
                    ln_mlp=cast(layer.post_attention_layernorm.weight.detach()),
                    gate_up=linear(torch.cat([effective_weight(mlp.gate_proj), effective_weight(mlp.up_proj)])),
                    down=linear(effective_weight(mlp.down_proj)),
                ))
            rotary = inner.rotary_emb
            self.inv_freq = rotary.inv_freq.detach().to(device=self.device, dtype=torch.float32)
            self.rope_scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.q_size = self.n_heads * self.head_dim
        self.kv_size = self.n_kv_heads * self.head_dim
        self.vocab_size = self.lm_head.out_features

    # -- building blocks ---------------------------------------------------------------------------
    def new_cache(self, slots: int, max_len: int) -> KVCache:
        return KVCache(len(self.layers), slots, self.n_kv_heads, max_len, self.head_dim, self.dtype, self.device)

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # as transformers' LlamaRMSNorm: normalise in float32, cast back, then scale
        return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (len(positions), head_dim) in the decoder's dtype."""
        freqs = positions.to(torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.rope_scaling).to(self.dtype), (emb.sin() * self.rope_scaling).to(self.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _qkv(self, layer: _Layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = layer.qkv(self._rms_norm(x, layer.ln_attn))
        return qkv.split((self.q_size, self.kv_size, self.kv_size), dim=-1)

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        gate, up = layer.gate_up(self._rms_norm(x, layer.ln_mlp)).chunk(2, dim=-1)
        return layer.down(F.silu(gate) * up)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self._rms_norm(x, self.norm)).float()

    def _prompt_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
        """Causal attention of the prompt positions ``start..n-1``: q (H, m, D) over all n keys and values
        k, v (Hkv, n, D) (the first ``start`` of them cached earlier); (H, m, D).

        On CUDA, PyTorch's fused SDPA. On a CPU, blocks of :data:`PREFILL_BLOCK` queries, each with two
        batched products over grouped heads and only the keys it can see, so the masked upper triangle is
        mostly never computed (PyTorch's CPU flash kernel is slower at these sizes). The softmax keeps the
        scores' dtype: PyTorch's CPU softmax accumulates bf16 in float32 and rounds once, as a float32
        softmax followed by a cast would."""
        m, n, group = q.shape[1], k.shape[1], self.n_heads // self.n_kv_heads
        if q.device.type == "cuda":
            # query r sits at position start + r and sees keys 0..start + r
            future = torch.arange(n, device=q.device)[None, :] > torch.arange(start, n, device=q.device)[:, None]
            return F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=None if start == 0 else ~future,
                                                  is_causal=start == 0, scale=self.scaling, enable_gqa=group > 1)[0]
        blocks = []
        for a in range(0, m, PREFILL_BLOCK):
            b = min(a + PREFILL_BLOCK, m)
            seen = start + b  # keys the block's last query sees
            future = torch.arange(seen, device=q.device)[None, :] > torch.arange(start + a, seen, device=q.device)[:, None]
            scores = torch.matmul((q[:, a:b] * self.scaling).reshape(self.n_kv_heads, group * (b - a), self.head_dim),
                                  k[:, :seen].transpose(-1, -2)).view(self.n_kv_heads, group, b - a, seen)
            probs = scores.masked_fill_(future, float("-inf")).softmax(dim=-1)
            blocks.append(torch.matmul(probs.view(self.n_kv_heads, group * (b - a), seen), v[:, :seen])
                          .view(self.n_heads, b - a, self.head_dim))
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)

    # -- prompt and step ---------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, cache: KVCache, slot: int, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Encode prompt ``ids`` (L,) into ``slot``; the logits after its last token (vocab,).

        ``start > 0``: the slot already holds the keys and values of ``ids[:start]`` (copied from a slot with
        the same prompt prefix, :meth:`KVCache.copy_prefix`); only the rest is computed."""
        n = ids.shape[0]
        if n > cache.max_len:
            raise ValueError(f"prompt of {n} tokens does not fit a cache of {cache.max_len} positions")
        if not 0 <= start < n:
            raise ValueError(f"start={start} must leave at least one of the prompt's {n} tokens to compute")
        m = n - start
        ids = ids.to(self.device)
        cos, sin = self._rope(torch.arange(start, n, device=self.device))
        cos, sin = cos[None], sin[None]  # (1, m, D): broadcast over heads
        x = self.embed[ids[start:]]  # (m, hidden)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x)
            q = self._rotate(q.view(m, self.n_heads, self.head_dim).transpose(0, 1), cos, sin)  # (H, m, D)
            k = self._rotate(k.view(m, self.n_kv_heads, self.head_dim).transpose(0, 1), cos, sin)  # (Hkv, m, D)
            v = v.view(m, self.n_kv_heads, self.head_dim).transpose(0, 1)
            cache.k[i, slot, :, :, start:n] = k.transpose(-1, -2)
            cache.v[i, slot, :, start:n] = v
            if start:
                k = cache.k[i, slot, :, :, :n].transpose(-1, -2)
                v = cache.v[i, slot, :, :n]
            out = self._prompt_attention(q, k, v, start)  # (H, m, D)
            x = x + layer.o(out.transpose(0, 1).reshape(m, self.q_size))
            x = x + self._mlp(layer, x)
        cache.lengths[slot] = n
        return self._logits(x[-1:])[0]

    @torch.no_grad()
    def step(self, cache: KVCache, tokens: torch.Tensor, n: int) -> torch.Tensor:
        """Append ``tokens`` (n,) to slots ``0..n-1`` (each at its own next position); logits (n, vocab)."""
        lengths = torch.tensor(cache.lengths[:n], device=self.device)
        width = int(max(cache.lengths[:n])) + 1
        if width > cache.max_len:
            raise ValueError("the KV cache is full")
        rows = torch.arange(n, device=self.device)
        cos, sin = self._rope(lengths)
        cos, sin = cos[:, None], sin[:, None]  # (n, 1, D)
        # (n, 1, 1, T): a row attends to its own prefix and the new token
        # attention spans the whole cache once the longest row fills half of it: the slots' blocks are then
        # contiguous and bmm reads them in place, where a shorter slice would be copied first
        span = cache.max_len if 2 * width > cache.max_len else width
        hidden = (torch.arange(span, device=self.device)[None, :] > lengths[:, None])[:, None, None, :]
        group = self.n_heads // self.n_kv_heads
        x = self.embed[tokens.to(self.device)]  # (n, hidden)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x)
            q = self._rotate(q.view(n, self.n_heads, self.head_dim), cos, sin)
            k = self._rotate(k.view(n, self.n_kv_heads, self.head_dim), cos, sin)
            cache.k[i, rows, :, :, lengths] = k
            cache.v[i, rows, :, lengths] = v.view(n, self.n_kv_heads, self.head_dim)
            keys = cache.k[i, :n, :, :, :span].reshape(n * self.n_kv_heads, self.head_dim, span)
            values = cache.v[i, :n, :, :span].reshape(n * self.n_kv_heads, span, self.head_dim)
            scores = torch.bmm((q * self.scaling).reshape(n * self.n_kv_heads, group, self.head_dim), keys)
            probs = scores.view(n, self.n_kv_heads, group, span).masked_fill_(hidden, float("-inf")).softmax(dim=-1)
            out = torch.bmm(probs.view(n * self.n_kv_heads, group, span), values).reshape(n, self.q_size)
            x = x + layer.o(out)
            x = x + self._mlp(layer, x)
        for s in range(n):
            cache.lengths[s] += 1
        return self._logits(x)
