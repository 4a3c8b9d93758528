"""The two project images the components run on, pinned by tag (the package version).

- :data:`CPU_IMAGE` (``ghcr.io/rerec/rerec:<version>-cpu``): data, graphs, the reward GNN, registry steps.
- :data:`GPU_IMAGE` (``ghcr.io/rerec/rerec:<version>-cuda``): sft-warmup, rft and evaluate, the steps that
  ask for a GPU (they also set ``REREC_REQUIRE_GPU=1``, so they stop with a clear error on a node without
  one instead of training on its CPU).

``REREC_CPU_IMAGE`` / ``REREC_GPU_IMAGE`` override them when the pipelines are compiled (a registry of
your own, or a digest: ``registry.example/rerec@sha256:...``); they are read when the component modules
are imported, so ``REREC_GPU_IMAGE=... python -m pipelines.compile`` is enough.
"""

import os

from rerec import __version__

REPOSITORY = "ghcr.io/rerec/rerec"
DEFAULT_CPU_IMAGE = f"{REPOSITORY}:{__version__}-cpu"
DEFAULT_GPU_IMAGE = f"{REPOSITORY}:{__version__}-cuda"
CPU_IMAGE = os.environ.get("REREC_CPU_IMAGE") or DEFAULT_CPU_IMAGE
GPU_IMAGE = os.environ.get("REREC_GPU_IMAGE") or DEFAULT_GPU_IMAGE
