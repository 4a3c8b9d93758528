"""One thin KFP v2 component per stage. Each receives its stage config as JSON (made by ``start-run`` from
the typed pipeline parameters), calls the stage function in ``src/rerec`` and writes into its output
artifact's ``.path``; the stage's numbers go to a KFP Metrics artifact and to a nested MLflow run under
the pipeline's parent run.

Images: :data:`components.image.CPU_IMAGE` and, for the GPU steps, :data:`components.image.GPU_IMAGE`,
read when the component modules are imported (``REREC_CPU_IMAGE=... REREC_GPU_IMAGE=... python -m
pipelines.compile`` compiles for other images).
"""

from components.build_graphs import build_graphs
from components.checkpoint_volume import checkpoint_volume, release_checkpoint_volume
from components.evaluate import evaluate
from components.finish_run import finish_run
from components.prepare_data import prepare_data
from components.register import register
from components.resolve_champion import resolve_champion
from components.rft import rft
from components.rft_trainjob import rft_trainjob
from components.sft_warmup import sft_warmup
from components.size_gpu_steps import size_gpu_steps
from components.start_run import start_run
from components.train_reward_gnn import train_reward_gnn

__all__ = [
    "build_graphs", "checkpoint_volume", "evaluate", "finish_run", "prepare_data", "register",
    "release_checkpoint_volume", "resolve_champion", "rft", "rft_trainjob", "sft_warmup", "size_gpu_steps",
    "start_run", "train_reward_gnn",
]
