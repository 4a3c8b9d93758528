"""Device and precision policy (rerec.models.precision): the pure choice by cases, the inputs it reads from
the machine, and the stages passing the choice to their trainers."""

import pytest
import torch

from rerec.errors import ConfigError, RerecError
from rerec.models import precision as P
from rerec.models.precision import (
    Precision,
    choose_precision,
    cpu_flags,
    requested_precision,
    resolve_precision,
)
from rerec.reward.scorer import RewardConfig
from rerec.train.curriculum import CurriculumConfig

AVX2 = {"fpu", "sse2", "avx", "avx2", "fma"}
ZEN4 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "amx_tile", "amx_bf16"}
GRAVITON3 = {"fp", "asimd", "sve", "bf16", "i8mm"}
GPU_BF16 = {"use_cpu": False, "bf16": True, "fp16": False}
GPU_FP32 = {"use_cpu": False, "bf16": False, "fp16": False}
CPU_BF16 = {"use_cpu": True, "bf16": True, "fp16": False}
CPU_FP32 = {"use_cpu": True, "bf16": False, "fp16": False}


@pytest.mark.parametrize("cuda, cuda_bf16, flags, requested, device, dtype, kwargs", [
    (True, True, set(), "auto", "cuda", "bfloat16", GPU_BF16),  # A100/H100/H200
    (True, False, set(), "auto", "cuda", "float32", GPU_FP32),  # V100/T4: no bf16, fp32 rather than fp16
    (True, True, AVX2, "fp32", "cuda", "float32", GPU_FP32),
    (True, False, ZEN4, "auto", "cuda", "float32", GPU_FP32),  # the CPU's bf16 does not matter on a GPU
    (False, False, ZEN4, "auto", "cpu", "bfloat16", CPU_BF16),
    (False, False, SAPPHIRE_RAPIDS, "auto", "cpu", "bfloat16", CPU_BF16),
    (False, False, GRAVITON3, "auto", "cpu", "bfloat16", CPU_BF16),
    (False, False, AVX2, "auto", "cpu", "float32", CPU_FP32),  # emulated bf16 is slower than fp32 there
    (False, False, set(), "auto", "cpu", "float32", CPU_FP32),  # flags unreadable
    (False, False, ZEN4, "fp32", "cpu", "float32", CPU_FP32),
    (False, False, AVX2, "bf16", "cpu", "bfloat16", CPU_BF16),  # an explicit request wins, slow or not
    (False, True, AVX2, "auto", "cpu", "float32", CPU_FP32),  # no CUDA device: its bf16 flag is meaningless
])
def test_policy_by_cases(cuda, cuda_bf16, flags, requested, device, dtype, kwargs):
    chosen = choose_precision(cuda, cuda_bf16, flags, requested)
    assert (chosen.device, chosen.dtype) == (device, dtype)
    assert chosen.trainer_kwargs() == kwargs
    assert chosen.torch_dtype == (torch.bfloat16 if dtype == "bfloat16" else torch.float32)
    assert chosen.params()["precision_used"] == ("bf16" if dtype == "bfloat16" else "fp32")
    assert chosen.params()["device"] == device


def test_reasons_say_why():
    assert "avx512_bf16" in choose_precision(False, False, ZEN4).reason
    assert "lacks native bf16" in choose_precision(False, False, AVX2).reason
    assert "emulates" in choose_precision(False, False, AVX2, "bf16").reason
    assert choose_precision(True, True, (), "fp32").reason == "fp32 requested"


def test_require_gpu_without_cuda_is_a_clear_error():
    with pytest.raises(RerecError, match="REREC_REQUIRE_GPU=1 but no CUDA device") as err:
        choose_precision(False, False, ZEN4, require_gpu=True)
    assert "Fix:" in str(err.value)
    assert choose_precision(True, True, (), require_gpu=True).device == "cuda"


def test_bad_precision_names_are_refused():
    with pytest.raises(ConfigError, match="auto, bf16, fp32"):
        choose_precision(False, False, (), "half")


def test_the_config_value_wins_over_the_environment():
    assert requested_precision("fp32", {"REREC_PRECISION": "bf16"}) == "fp32"
    assert requested_precision("auto", {"REREC_PRECISION": "bf16"}) == "bf16"
    assert requested_precision(None, {"REREC_PRECISION": " FP32 "}) == "fp32"
    assert requested_precision("auto", {}) == "auto"
    assert requested_precision(None, {"REREC_PRECISION": ""}) == "auto"
    with pytest.raises(ConfigError, match="REREC_PRECISION='float16'"):
        requested_precision("auto", {"REREC_PRECISION": "float16"})
    with pytest.raises(ConfigError, match="precision='bfloat'"):
        requested_precision("bfloat", {})


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert "bf16" in cpu_flags(arm)
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.fixture
def fresh_choice(monkeypatch):
    monkeypatch.setattr(P, "_chosen", None)
    monkeypatch.delenv("REREC_PRECISION", raising=False)
    monkeypatch.delenv("REREC_REQUIRE_GPU", raising=False)


def test_resolve_reads_this_machine_and_remembers_the_stage_choice(fresh_choice, monkeypatch):
    cuda = torch.cuda.is_available()
    auto = resolve_precision("auto")
    assert auto.device == ("cuda" if cuda else "cpu")
    if not cuda:
        assert auto.bf16 == bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
    assert resolve_precision("fp32").dtype == "float32"
    assert resolve_precision().dtype == "float32"  # later callers (the generator) get the stage's choice
    monkeypatch.setenv("REREC_PRECISION", "bf16")
    assert resolve_precision("auto").dtype == "bfloat16"


def test_require_gpu_from_the_environment(fresh_choice, monkeypatch):
    monkeypatch.setenv("REREC_REQUIRE_GPU", "1")
    if torch.cuda.is_available():
        assert resolve_precision("auto").device == "cuda"
    else:
        with pytest.raises(RerecError, match="no CUDA device"):
            resolve_precision("auto")


class _Stop(Exception):
    """Raised by the recording trainer config once the stage has built it."""


def _record_config(monkeypatch, name: str) -> dict:
    import trl

    seen: dict = {}

    def record(**kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(trl, name, record)
    return seen


@pytest.mark.parametrize("chosen", [Precision("cuda", "bfloat16", "test"), Precision("cpu", "float32", "test")])
def test_sft_passes_the_choice_to_its_trainer(tmp_path, monkeypatch, chosen):
    """The stage builds SFTConfig from the chosen precision, not from a literal (use_cpu=True once sent SFT
    on an H200 to the host CPU)."""
    from test_sft import SMALL, write_data_folder

    from rerec.models.loading import load_tokenizer
    from rerec.models.tiny import build_tiny_model
    from rerec.train import sft

    tok = load_tokenizer("smollm2")
    build_tiny_model(tok, seed=0, **SMALL).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    write_data_folder(tmp_path / "data")
    monkeypatch.setattr(sft, "resolve_precision", lambda value=None: chosen)
    seen = _record_config(monkeypatch, "SFTConfig")
    cfg = sft.SFTWarmupConfig(profile="tiny", model=str(tmp_path / "m"), use_lora=False, steps=1, batch_size=2,
                              n_eval=1, eval_before=False, max_new_tokens=4, n_candidates=3)
    with pytest.raises(_Stop):
        sft.sft_warmup(tmp_path / "data", None, tmp_path / "out", cfg)
    assert {k: seen[k] for k in ("use_cpu", "bf16", "fp16")} == chosen.trainer_kwargs()


@pytest.mark.parametrize("chosen, engine, vllm_installed, trl_rollouts", [
    (Precision("cuda", "bfloat16", "test"), "vllm", True, {"use_vllm": True, "vllm_mode": "colocate"}),
    (Precision("cuda", "bfloat16", "test"), "vllm", False, {"use_vllm": False}),  # fallback, logged
    (Precision("cpu", "float32", "test"), "vllm", True, {"use_vllm": False}),
    (Precision("cpu", "bfloat16", "test"), "rerec", True, {"use_vllm": False}),
])
def test_rft_passes_the_choice_to_its_trainer(tmp_path, monkeypatch, chosen, engine, vllm_installed, trl_rollouts):
    from test_sft import SMALL, write_data_folder

    from rerec.models.loading import load_tokenizer
    from rerec.models.tiny import build_tiny_model
    from rerec.train import rft

    tok = load_tokenizer("smollm2")
    build_tiny_model(tok, seed=0, **SMALL).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    write_data_folder(tmp_path / "data")
    monkeypatch.setattr(rft, "resolve_precision", lambda value=None: chosen)
    monkeypatch.setattr(rft, "vllm_available", lambda: vllm_installed)
    seen = _record_config(monkeypatch, "GRPOConfig")
    cfg = rft.RFTConfig(profile="tiny", use_lora=False, steps=1, batch_size=2, num_generations=2,
                        max_new_tokens=4, reward=RewardConfig(use_qas=False, use_pas=False),
                        curriculum=CurriculumConfig(enabled=False),
                        rollout_engine=engine)
    with pytest.raises(_Stop):
        rft.rft(tmp_path / "data", None, None, tmp_path / "m", tmp_path / "out", cfg)
    assert {k: seen[k] for k in ("use_cpu", "bf16", "fp16")} == chosen.trainer_kwargs()
    assert {k: seen[k] for k in trl_rollouts} == trl_rollouts


def test_models_load_for_inference_in_the_chosen_precision(fresh_choice, tmp_path):
    from rerec.models.loading import load_model, load_tokenizer
    from rerec.models.tiny import build_tiny_model

    tok = load_tokenizer("smollm2")
    build_tiny_model(tok, seed=0, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=2).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    resolve_precision("bf16")
    assert next(load_model(str(tmp_path))[0].parameters()).dtype == torch.bfloat16
    assert next(load_model(str(tmp_path), trainable=True)[0].parameters()).dtype == torch.float32  # master weights
    resolve_precision("fp32")
    assert next(load_model(str(tmp_path))[0].parameters()).dtype == torch.float32
