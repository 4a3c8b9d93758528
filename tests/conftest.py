"""Shared test setup. Unit tests run with tracking off and one torch thread (2 shared cores)."""

import os

os.environ.setdefault("REREC_TRACKING", "off")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
