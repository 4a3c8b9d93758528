"""size-gpu-steps: the CPU and memory of the GPU steps' pods for the run's preset, looked up at run time in
the table compiled in from ``pipelines.options.GPU_POD_BY_PRESET`` (KFP fills a step's requests and limits
from an upstream output). A preset not in the table gets ``fallback``."""

from typing import NamedTuple

from kfp import dsl

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def size_gpu_steps(preset: str, table: dict, fallback: list) -> NamedTuple("GpuPod", [  # spelled out: the source must hold it
        ("cpu", str), ("memory", str), ("cpu_limit", str), ("memory_limit", str)]):
    row = table.get(preset) or fallback
    print(f"preset {preset}: GPU steps request {row[0]} CPU / {row[1]}, limits {row[2]} CPU / {row[3]}")
    return tuple(str(v) for v in row)
