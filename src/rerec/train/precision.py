"""Device and mixed precision for the HF/TRL trainers.

TRL 1.16's ``SFTConfig`` and ``GRPOConfig`` default to ``bf16=True`` on every device. On a CPU without
native bf16 (AVX2, like the machines rerec's CPU profiles are sized on) autocast runs every matmul in
emulated bf16: measured here, a 1024x576 @ 576x1536 matmul took 2.25 s under bf16 autocast against
0.041 s in float32 (55x). So bf16 is used only where the accelerator has it.
"""

from __future__ import annotations


def trainer_precision() -> dict[str, bool]:
    """``use_cpu``/``bf16``/``fp16`` keyword arguments for ``SFTConfig``/``GRPOConfig``: the CUDA device
    when there is one (bf16 where it supports it), else the CPU in float32."""
    import torch

    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    return {"use_cpu": not cuda, "bf16": bf16, "fp16": False}
