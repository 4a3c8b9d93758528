"""The model folder a training stage writes (``sft-warmup``, ``rft``) and later stages read.

Layout, written inside the stage's atomic output folder (:func:`rerec.io.atomic_dir`):

    config.json, *.safetensors, tokenizer files   the Hugging Face model, LoRA merged, and its tokenizer
    adapter/         the LoRA adapter before merging (only when trained with LoRA)
    metrics.json     the stage's metrics, its ``history`` and its ``config`` (the stage config as a dict)
    samples.jsonl    sample completions, one JSON object a line

``rft`` adds ``checkpoints/`` (its last checkpoint) and ``curriculum.json``. Readers:
:func:`rerec.models.loading.load_model` (the model), :func:`check_model_folder` (the register stage refuses
anything else), :func:`training_config` (serving takes the prompt settings the model was trained with).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rerec.errors import RerecError
from rerec.io import write_json

METRICS = "metrics.json"
ADAPTER = "adapter"
SAMPLES = "samples.jsonl"


def write_model_folder(folder: str | Path, model: Any, tokenizer: Any, *, lora: bool, metrics: Mapping,
                       samples: Iterable[Mapping] = ()) -> Any:
    """Write the trained ``model`` (a peft model when ``lora``), its ``tokenizer``, ``metrics`` and ``samples``
    into ``folder`` (the layout of the module doc). Returns the model written: merged when ``lora``."""
    folder = Path(folder)
    if lora:
        model.save_pretrained(folder / ADAPTER)
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # the padding side is not saved: load_model sets it (left) on loading
    write_json(folder / METRICS, dict(metrics))
    with open(folder / SAMPLES, "w", encoding="utf-8") as f:
        for sample in samples:
            f.write(json.dumps(sample) + "\n")
    return model


def read_metrics(folder: str | Path) -> dict:
    """``metrics.json`` of a model folder; ``{}`` when there is none (a model folder from elsewhere)."""
    path = Path(folder) / METRICS
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise RerecError(f"{path}: not valid JSON ({exc}). Fix: rerun the stage that wrote it.") from exc
    return value if isinstance(value, dict) else {}


def training_config(folder: str | Path) -> dict:
    """The config the model in ``folder`` was trained with (``metrics.json``'s ``config``); ``{}`` when unknown."""
    return read_metrics(folder).get("config") or {}


def check_model_folder(folder: str | Path) -> None:
    """Refuse a folder that is not a Hugging Face model with its weights (what a training stage writes)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise RerecError(f"{folder}: not a Hugging Face model folder (no config.json), so it was not "
                         "registered. Fix: pass the rft (or sft-warmup) stage's output folder.")
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if not weights:
        raise RerecError(f"{folder}: the model folder has no weights (*.safetensors), so it was not "
                         "registered. Fix: rerun the training stage; it writes the folder atomically.")
