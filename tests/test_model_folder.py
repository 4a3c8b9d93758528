"""rerec.models.folder: the one writer of a trained model folder (sft-warmup, rft) and what its readers get."""

import json

import pytest
import torch

from rerec.errors import RerecError
from rerec.models.folder import check_model_folder, read_metrics, training_config, write_model_folder
from rerec.models.loading import LoraSpec, load_model


@pytest.mark.parametrize("lora", [False, True])
def test_written_folder_loads_back_with_its_metrics_and_samples(tmp_path, lora):
    model, tokenizer = load_model("tiny", lora=LoraSpec(r=4, alpha=8) if lora else None, trainable=True)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # a trained adapter, so that merging it changes the weights
            param.data.normal_(0.0, 0.05)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = model(ids).logits
    metrics = {"steps": 3, "history": [{"loss": 1.0}], "config": {"profile": "tiny", "context_mode": "evidence"}}
    samples = [{"query_id": "q1", "completion": "\\boxed{Fargo}"}, {"query_id": "q2", "completion": "no box"}]
    written = write_model_folder(tmp_path, model, tokenizer, lora=lora, metrics=metrics, samples=samples)

    assert (tmp_path / "adapter" / "adapter_config.json").is_file() == lora
    check_model_folder(tmp_path)
    assert read_metrics(tmp_path) == metrics
    assert training_config(tmp_path) == {"profile": "tiny", "context_mode": "evidence"}
    lines = (tmp_path / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == samples
    assert (tmp_path / "tokenizer.json").is_file()
    # the folder is the model as trained, LoRA merged into the weights
    loaded, _ = load_model(tmp_path, dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, before, atol=1e-5)
        assert torch.allclose(written(ids).logits, before, atol=1e-5)


def test_readers_refuse_what_no_stage_wrote(tmp_path):
    assert read_metrics(tmp_path) == {} and training_config(tmp_path) == {}
    with pytest.raises(RerecError, match="no config.json"):
        check_model_folder(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RerecError, match="no weights"):
        check_model_folder(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(RerecError, match="not valid JSON"):
        training_config(tmp_path)
