"""One thin KFP v2 component per stage. Each parses its stage config from a JSON string, calls the
stage function in ``src/rerec`` and writes into its output artifact's ``.path``; the stage's numbers go
to a KFP Metrics artifact and to a nested MLflow run under the pipeline's parent run.

The image is ``REREC_IMAGE`` (default :data:`components.image.REREC_IMAGE`), read when the
component modules are imported, so ``REREC_IMAGE=registry/rerec:tag python -m pipelines.compile``
compiles for another image.
"""

from components.build_graphs import build_graphs
from components.evaluate import evaluate
from components.prepare_data import prepare_data
from components.register import register
from components.resolve_champion import resolve_champion
from components.rft import rft
from components.rft_trainjob import rft_trainjob
from components.sft_warmup import sft_warmup
from components.train_reward_gnn import train_reward_gnn

__all__ = [
    "build_graphs", "evaluate", "prepare_data", "register", "resolve_champion", "rft", "rft_trainjob",
    "sft_warmup", "train_reward_gnn",
]
