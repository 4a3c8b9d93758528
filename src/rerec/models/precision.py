"""Device and numeric precision: chosen once per process, the same for SFT, RFT, evaluation and serving.

:func:`choose_precision` is the policy, a pure function of what the machine offers:

- a CUDA device when one is visible, else the CPU; with ``REREC_REQUIRE_GPU=1`` and no CUDA device the
  stage stops with a :class:`~rerec.errors.RerecError` instead of training on the CPU;
- bfloat16 where the processor computes it natively: a CUDA device that reports bf16 support, or a CPU
  with the ``avx512_bf16`` or ``amx_bf16`` instructions (x86) or ``bf16`` (Arm); float32 elsewhere.
  A CPU without them (AVX2 only, say) runs bf16 through a slow emulation, so there float32 is faster;
- an explicit request (``bf16`` or ``fp32``) wins over detection: a stage's ``precision`` config
  field first, then the environment variable ``REREC_PRECISION``.

What bfloat16 means where: trainers run under autocast (weights and optimiser state stay float32,
``bf16=True`` in ``SFTConfig``/``GRPOConfig``); generation and evaluation run on bfloat16 weights
(:func:`rerec.models.loading.load_model` for inference, :func:`rerec.eval.generate.generate_completions`).

:func:`resolve_precision` reads the machine and the environment, applies the policy, logs the choice and
remembers it, so code that runs later in the stage (the generator) uses the stage's choice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerec.errors import ConfigError, RerecError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
ENV_PRECISION = "REREC_PRECISION"
ENV_REQUIRE_GPU = "REREC_REQUIRE_GPU"
# CPU feature flags (/proc/cpuinfo) of native bfloat16 arithmetic
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclass(frozen=True)
class Precision:
    """Where and in what the models compute: ``device`` "cuda" or "cpu", ``dtype`` "bfloat16" or "float32"."""

    device: str
    dtype: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"

    @property
    def torch_dtype(self) -> Any:
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32

    def trainer_kwargs(self) -> dict[str, bool]:
        """``use_cpu``/``bf16``/``fp16`` keyword arguments of ``SFTConfig``/``GRPOConfig`` (bf16 = autocast)."""
        return {"use_cpu": self.device == "cpu", "bf16": self.bf16, "fp16": False}

    def params(self) -> dict[str, str]:
        """MLflow params of a stage run."""
        return {"precision_used": "bf16" if self.bf16 else "fp32", "device": self.device,
                "precision_reason": self.reason}


def _flag_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def requested_precision(config_value: str | None, env: dict[str, str] | os._Environ) -> str:
    """The request that applies: a config value other than ``auto``, else ``REREC_PRECISION``, else ``auto``."""
    for source, value in ((f"precision={config_value!r}", config_value),
                          (f"{ENV_PRECISION}={env.get(ENV_PRECISION)!r}", env.get(ENV_PRECISION))):
        if value is None or value == "":
            continue
        value = str(value).strip().lower()
        if value not in PRECISIONS:
            raise ConfigError(f"{source} is not a precision. Fix: use one of {', '.join(PRECISIONS)} "
                              f"(auto: bf16 where the processor has it, else fp32).")
        if value != "auto":
            return value
    return "auto"


def choose_precision(cuda_available: bool, cuda_bf16: bool, cpu_flags: Iterable[str], requested: str = "auto",
                     require_gpu: bool = False) -> Precision:
    """The device/precision policy (module docstring) as a pure function.

    Args:
        cuda_available: a CUDA device is visible.
        cuda_bf16: that device computes bfloat16 natively (``torch.cuda.is_bf16_supported()``).
        cpu_flags: the CPU's feature flags (``/proc/cpuinfo``), used when there is no CUDA device.
        requested: ``auto``, ``bf16`` or ``fp32``.
        require_gpu: ``REREC_REQUIRE_GPU`` is set: no CUDA device is an error.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}. Fix: pass auto, bf16 or fp32.")
    if require_gpu and not cuda_available:
        raise RerecError(f"{ENV_REQUIRE_GPU}=1 but no CUDA device is visible, so this stage would train on the CPU. "
                         "Fix: run it on a GPU node (the CUDA image, a node with an nvidia.com/gpu resource and its "
                         f"driver), or unset {ENV_REQUIRE_GPU} to run it on the CPU.")
    if cuda_available:
        device, native, where = "cuda", bool(cuda_bf16), "the CUDA device"
    else:
        flags = set(cpu_flags) & NATIVE_BF16_CPU_FLAGS
        device, native = "cpu", bool(flags)
        where = f"the CPU ({', '.join(sorted(flags))})" if flags else "the CPU (no native bf16 instructions)"
    if requested == "fp32":
        return Precision(device, "float32", "fp32 requested")
    if requested == "bf16":
        return Precision(device, "bfloat16", "bf16 requested" + ("" if native else f"; {where} emulates it (slow)"))
    if native:
        return Precision(device, "bfloat16", f"auto: {where} computes bf16 natively")
    return Precision(device, "float32", f"auto: {where} lacks native bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty where the file cannot be read."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


_chosen: Precision | None = None


def resolve_precision(config_value: str | None = None) -> Precision:
    """Apply :func:`choose_precision` to this machine and environment, log the choice and remember it.

    A stage calls it once at its start with its config's ``precision``; a later call without a value (the
    generator, a model loaded for inference) returns the stage's choice. Without any earlier call it
    resolves the environment's request.
    """
    global _chosen
    if config_value is None and _chosen is not None:
        return _chosen
    import torch

    cuda = torch.cuda.is_available()
    chosen = choose_precision(
        cuda_available=cuda, cuda_bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        cpu_flags=() if cuda else cpu_flags(), requested=requested_precision(config_value, os.environ),
        require_gpu=_flag_true(os.environ.get(ENV_REQUIRE_GPU)))
    if chosen != _chosen:
        log.info("precision: %s on %s (%s)", chosen.params()["precision_used"], chosen.device, chosen.reason)
    _chosen = chosen
    return chosen
