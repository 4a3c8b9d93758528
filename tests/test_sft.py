"""SFT warm-up: loss falls on a repeated batch, and the stage writes a loadable model folder."""

import contextlib
import json
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from test_prompt import small_view
from test_traces import queries

from rerec.data.schema import Catalog
from rerec.errors import ConfigError
from rerec.models.loading import load_model, load_tokenizer
from rerec.models.tiny import build_tiny_model
from rerec.prompt import build_messages, render_prompt
from rerec.train.sft import (
    SFTWarmupConfig,
    answer_only_trainer_class,
    balance_examples,
    decision_token_ids,
    eval_interval,
    last_evaluation,
    popularity_accuracy,
    sft_examples,
    sft_warmup,
    train,
    training_mix,
    weighted_token_loss,
)
from rerec.train.traces import synthesize_trace

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 2}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("small_model")
    build_tiny_model(tokenizer, seed=0, **SMALL).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("answer_only", [False, True])
def test_sft_steps_lower_the_loss_on_a_repeated_batch(tokenizer, tmp_path, answer_only):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    view = small_view()
    rows = [{"prompt": render_prompt(tokenizer, build_messages(q, view)),
             "completion": synthesize_trace(q, view).text} for q in queries()]
    model = build_tiny_model(tokenizer, seed=0, **SMALL)
    args = SFTConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=len(rows), learning_rate=3e-3,
                     lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to="none",
                     use_cpu=True, completion_only_loss=True, disable_tqdm=True, seed=0)
    trainer = (answer_only_trainer_class() if answer_only else SFTTrainer)(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3
    assert losses[2] < losses[0], losses


def test_answer_only_loss_equals_full_logits_completion_loss(tokenizer):
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, seed=1, **SMALL)
    ids = torch.randint(0, len(tokenizer), (2, 12))
    labels = ids.clone()
    labels[:, :7] = -100  # prompt
    labels[1, 10:] = -100  # padding of the shorter row
    trainer = answer_only_trainer_class().__new__(answer_only_trainer_class())
    trainer.accelerator = SimpleNamespace(autocast=contextlib.nullcontext)  # float32, as without mixed precision
    loss = trainer.compute_loss(model, {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)})
    logits = model(input_ids=ids).logits[:, :-1]
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-5)


def test_weighted_token_loss_counts_the_weighted_tokens_that_many_times():
    losses, labels = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([5, 7, 9])
    assert weighted_token_loss(losses, labels, [7], 3.0).item() == pytest.approx((1 + 3 * 2 + 3) / 5)
    assert weighted_token_loss(losses, labels, [7, 9], 2.0).item() == pytest.approx((1 + 4 + 6) / 5)
    assert weighted_token_loss(losses, labels, [7], 1.0).item() == pytest.approx(2.0)
    assert weighted_token_loss(losses, labels, [], 4.0).item() == pytest.approx(2.0)


def test_decision_tokens_are_the_yes_no_fits_of_a_scan_row(tokenizer):
    ids = decision_token_ids(tokenizer)
    row = tokenizer.encode(": comedy yes, 1990s no - fits.", add_special_tokens=False)
    assert [tokenizer.decode([t]) for t in row if t in ids] == [" yes", " no", " fits"]


def test_answer_only_loss_weights_the_decision_tokens(tokenizer):
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, seed=1, **SMALL)
    ids = torch.randint(0, len(tokenizer), (1, 10))
    ids[0, 6] = 4242
    labels = ids.clone()
    labels[:, :4] = -100
    cls = answer_only_trainer_class([4242], 5.0)
    trainer = cls.__new__(cls)
    trainer.accelerator = SimpleNamespace(autocast=contextlib.nullcontext)
    loss = trainer.compute_loss(model, {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)})
    logits = model(input_ids=ids).logits[0, 3:-1]
    token_losses = F.cross_entropy(logits, ids[0, 4:], reduction="none")
    w = torch.ones(6)
    w[2] = 5.0  # label position 6 is the third label token
    assert torch.allclose(loss, (w * token_losses).sum() / w.sum(), atol=1e-5)


def test_decision_weight_is_checked():
    with pytest.raises(ConfigError, match="decision_weight"):
        SFTWarmupConfig(profile="tiny", decision_weight=0).resolved()
    with pytest.raises(ConfigError, match="answer_logits_only"):
        SFTWarmupConfig(profile="tiny", decision_weight=3, answer_logits_only=False).resolved()


@pytest.mark.parametrize("bf16", [True, False])
def test_answer_only_loss_computes_in_the_trainers_precision(tokenizer, tmp_path, bf16):
    """The answer-only loss calls the decoder directly, past the autocast accelerate puts around forward: it
    must open the trainer's autocast itself, or bf16=True trains in float32."""
    from datasets import Dataset
    from trl import SFTConfig

    view = small_view()
    rows = [{"prompt": render_prompt(tokenizer, build_messages(q, view)),
             "completion": synthesize_trace(q, view).text} for q in queries()][:2]
    model = build_tiny_model(tokenizer, seed=0, **SMALL)
    args = SFTConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to="none",
                     save_strategy="no", use_cpu=True, bf16=bf16, completion_only_loss=True, disable_tqdm=True)
    trainer = answer_only_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                          processing_class=tokenizer)
    seen = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    trainer.train()
    assert seen and set(seen) == {torch.bfloat16 if bf16 else torch.float32}
    assert next(model.parameters()).dtype == torch.float32  # master weights stay float32


def test_stage_trainer_trains_without_gradient_checkpointing(tokenizer, tmp_path):
    """TRL's SFTConfig turns gradient checkpointing on by default: every layer's forward would run twice per
    step (bench/sft_step.py) to save memory a small model does not need."""
    from transformers import TrainerCallback

    from rerec.models.precision import resolve_precision
    from rerec.train.sft import build_trainer

    view = small_view()
    rows = [{"prompt": render_prompt(tokenizer, build_messages(q, view)),
             "completion": synthesize_trace(q, view).text} for q in queries()]
    model = build_tiny_model(tokenizer, seed=0, **SMALL)
    cfg = SFTWarmupConfig(profile="tiny", steps=1, batch_size=2).resolved()
    trainer = build_trainer(model, tokenizer, rows, rows[:2], cfg, resolve_precision("fp32"), tmp_path,
                            TrainerCallback())
    trainer.train()
    assert trainer.args.gradient_checkpointing is False
    assert not trainer.model.is_gradient_checkpointing


def test_last_evaluation_is_the_one_logged_at_that_step():
    history = [{"loss": 1.0, "step": 50}, {"eval_loss": 0.5, "step": 50}, {"loss": 0.4, "step": 100},
               {"eval_loss": 0.3, "step": 100}, {"train_loss": 0.6, "step": 100}]
    assert last_evaluation(history, 100) == {"eval_loss": 0.3, "step": 100}
    assert last_evaluation(history, 50) == {"eval_loss": 0.5, "step": 50}
    assert last_evaluation(history, 75) is None
    assert last_evaluation([], 10) is None


class CountingTrainer:
    """Stands in for the SFT trainer in :func:`train`: trains to ``steps``, with ``log_history`` as the
    trainer would have logged it, and counts the final evaluations it is asked for."""

    def __init__(self, steps: int, log_history: list[dict]):
        self.steps, self.evaluations = steps, 0
        self.state = SimpleNamespace(log_history=log_history)

    def train(self):
        return SimpleNamespace(global_step=self.steps, training_loss=0.5)

    def evaluate(self):
        self.evaluations += 1
        return {"eval_loss": 0.25}


def test_train_evaluates_at_the_end_only_when_the_last_step_was_not_evaluated():
    # 150 steps evaluated every 50: the step-150 evaluation is the final one, nothing is repeated
    done = CountingTrainer(150, [{"eval_loss": 0.3, "step": 100}, {"eval_loss": 0.2, "step": 150}])
    assert train(done)["eval_loss"] == 0.2 and done.evaluations == 0
    # stopped by the time budget at step 137: evaluated once more
    cut = CountingTrainer(137, [{"eval_loss": 0.3, "step": 100}])
    assert train(cut)["eval_loss"] == 0.25 and cut.evaluations == 1


@pytest.mark.parametrize(("steps", "evaluations", "interval"), [
    (150, 4, 50),    # 37.5 -> at least 50 apart: steps 50, 100, 150
    (300, 4, 75),    # 75, 150, 225, 300
    (300, 1, 300),   # only the final step
    (301, 2, 151),   # 151 and the final evaluation train() adds at 301
    (10, 4, 50),     # a short run: only train()'s final evaluation
])
def test_eval_interval_spaces_the_validation_passes(steps, evaluations, interval):
    assert eval_interval(steps, evaluations) == interval


def test_evaluations_and_frozen_layers_are_checked():
    with pytest.raises(ConfigError, match="evaluations"):
        SFTWarmupConfig(profile="tiny", evaluations=0).resolved()
    with pytest.raises(ConfigError, match="freeze_layers"):
        SFTWarmupConfig(profile="tiny", freeze_layers=-1).resolved()
    with pytest.raises(ConfigError, match="freeze_layers=2 applies to full fine-tuning"):
        SFTWarmupConfig(profile="smollm2", use_lora=True, freeze_layers=2).resolved()


def test_training_examples_are_rendered_prompts_with_trace_completions(tokenizer):
    view = small_view()
    cfg = SFTWarmupConfig(profile="tiny", n_candidates=3, min_candidates=2, max_history=0).resolved()
    examples = sft_examples(queries(), view, tokenizer, cfg)
    assert len(examples) == 4
    for ex, q in zip(examples, queries(), strict=True):
        assert ex["prompt"].endswith("<|im_start|>assistant\n")
        n_shown = sum(line[:2].rstrip(".").isdigit() for line in ex["prompt"].split("Candidates:\n")[1].splitlines())
        assert 2 <= n_shown <= 3
        assert ex["completion"].endswith("\\boxed{" + view.title(q["positives"][0]) + "}")


def test_balance_examples_repeats_the_rarer_groups_up_to_the_commonest():
    examples = [{"type": t, "i": i} for i, t in enumerate("aaaabbc")]
    out = balance_examples(examples, ["type"], seed=0)
    assert out[:4] == examples[:4] and out[4:6] == examples[4:6]  # each group's originals first, in order
    assert {t: sum(e["type"] == t for e in out) for t in "abc"} == {"a": 4, "b": 4, "c": 4} and len(out) == 12
    assert all(e in examples for e in out)  # repeats, nothing new
    assert balance_examples(examples, ["type"], seed=0) == out and balance_examples([], ["type"]) == []
    # two levels: within a type, the groups of the second key are made equal first, then the types
    nested = [{"type": "a", "k": k} for k in (1, 1, 1, 2)] + [{"type": "b", "k": 1}]
    two = balance_examples(nested, ["type", "k"], seed=0)
    count = {(t, k): sum(e["type"] == t and e["k"] == k for e in two) for t in "ab" for k in (1, 2)}
    assert count == {("a", 1): 3, ("a", 2): 3, ("b", 1): 6, ("b", 2): 0}


def test_examples_say_whether_their_trace_rules_something_out(tokenizer):
    view = small_view()
    cfg = SFTWarmupConfig(profile="tiny", n_candidates=3, min_candidates=3, max_history=0,
                          trace_styles="scan").resolved()
    explicit, implicit, misinformed, interest = queries()
    first_fits = {**explicit, "candidates": ["2", "3", "5", "4", "6"]}  # the positive listed first
    examples = sft_examples([explicit, first_fits, misinformed, interest], view, tokenizer, cfg)
    assert [ex["rejects"] for ex in examples] == [True, False, True, False]
    assert " - no." in examples[0]["completion"] and " - no." not in examples[1]["completion"]
    assert examples[2]["completion"].startswith("Note: the request is wrong about Heat")


def test_training_mix_balances_rejecting_traces_within_each_type():
    examples = ([{"type": "explicit", "rejects": r} for r in (False, False, False, True)]
                + [{"type": "interest", "rejects": False}])
    both = training_mix(examples, SFTWarmupConfig(profile="tiny", balance_rejections=True))
    count = {(t, r): sum(e["type"] == t and e["rejects"] == r for e in both) for t in ("explicit", "interest")
             for r in (False, True)}
    assert count == {("explicit", False): 3, ("explicit", True): 3, ("interest", False): 6, ("interest", True): 0}
    plain = SFTWarmupConfig(profile="tiny")
    assert [e["type"] for e in training_mix(examples, plain)].count("interest") == 4  # types only, the default
    assert training_mix(examples, SFTWarmupConfig(profile="tiny", balance_types=False)) == examples


def test_examples_say_their_query_type(tokenizer):
    cfg = SFTWarmupConfig(profile="tiny", n_candidates=3).resolved()
    assert [ex["type"] for ex in sft_examples(queries(), small_view(), tokenizer, cfg)] == [q["type"] for q in queries()]


@pytest.mark.parametrize("decades", [False, True])
@pytest.mark.parametrize("style", ["table", "scan"])
def test_table_traces_copy_the_candidate_lines_the_prompt_shows(tokenizer, style, decades):
    view = small_view()
    view.decades = decades  # decade evidence: the rows copy the decade with the line
    cfg = SFTWarmupConfig(profile="tiny", n_candidates=3, max_history=0, trace_styles=style).resolved()
    for ex in sft_examples(queries()[:3], view, tokenizer, cfg):  # queries with conditions the graph decides
        shown = [line for line in ex["prompt"].split("Candidates:\n")[1].split("<|im_end|>")[0].splitlines()]
        rows = [line for line in ex["completion"].splitlines() if line[:1].isdigit()]
        assert [r.split(": ")[0] for r in rows] == shown[:len(rows)], (ex["prompt"], ex["completion"])
        assert rows and (style == "scan" or len(rows) == len(shown))
        dated = [line for line in shown if re.search(r"\(\d{4}\) - ", line)]
        assert dated and all(bool(re.search(r"\((?P<d>\d{3})\d\) - (?P=d)0s; ", line)) == decades for line in dated)


def test_the_stage_configs_take_decade_evidence_from_the_profile():
    from unittest.mock import patch

    from rerec.eval.evaluate import EvalConfig
    from rerec.models.profiles import PROFILES, get_profile
    from rerec.train.rft import RFTConfig

    on = get_profile("smollm2").replace(name="decades", decade_evidence=True)
    with patch.dict(PROFILES, {"decades": on}):
        for config in (SFTWarmupConfig, RFTConfig, EvalConfig):
            assert config(profile="decades").resolved().decade_evidence is True
            assert config(profile="smollm2").resolved().decade_evidence is False  # measured, not adopted
            assert config(profile="decades", decade_evidence=False).resolved().decade_evidence is False
            assert config(profile="smollm2", decade_evidence=True).resolved().decade_evidence is True


def test_no_fit_examples_are_mixed_into_training_only(tokenizer):
    view = small_view()
    cfg = SFTWarmupConfig(profile="tiny", n_candidates=5, min_candidates=5, max_history=0, trace_styles="scan",
                          no_fit_rate=0.99).resolved()
    train = sft_examples(queries()[:2], view, tokenizer, cfg)
    assert all("None fits every condition" in ex["completion"] for ex in train)  # both have a closest
    assert train[0]["completion"].endswith("\\boxed{" + view.title("4") + "}")
    assert "Raising Arizona" not in train[0]["prompt"]  # the match is not shown
    held_out = sft_examples(queries()[:2], view, tokenizer, cfg, augment=False)
    assert not any("None fits" in ex["completion"] for ex in held_out)
    assert SFTWarmupConfig(profile="smollm2").resolved().no_fit_rate == 0.0  # off: it hurt at CPU budgets


@pytest.mark.parametrize("bad", [{"no_fit_rate": 1.0}, {"no_fit_rate": 0.1, "trace_styles": "scan,checklist"}])
def test_no_fit_rate_is_checked(bad):
    with pytest.raises(ConfigError, match="no_fit_rate"):
        SFTWarmupConfig(profile="tiny", **{"trace_styles": "scan", **bad}).resolved()


def test_profile_sft_lora_choice_is_overridable():
    assert SFTWarmupConfig(profile="smollm2").resolved().use_lora is False  # the profile's sft_use_lora
    assert SFTWarmupConfig(profile="smollm2", use_lora=True).resolved().use_lora is True
    assert SFTWarmupConfig(profile="paper").resolved().use_lora is True  # falls back to use_lora


@pytest.mark.parametrize("styles", ["", "poem", "table,poem"])
def test_unknown_trace_styles_are_refused(styles):
    with pytest.raises(ConfigError, match="trace_styles"):
        SFTWarmupConfig(profile="tiny", trace_styles=styles).resolved()


def test_popularity_baseline_picks_most_interacted_candidate():
    view = small_view()  # Heat (3) has the most interactions
    rows = [{"candidates": ["2", "3"], "positives": ["3"]}, {"candidates": ["2", "4"], "positives": ["2"]}]
    assert popularity_accuracy(rows, view) == 0.5


def write_data_folder(folder):
    from rerec.data.load import save_catalog

    view = small_view()
    items = pd.DataFrame({"item_id": list(view.titles), "title": list(view.titles.values()),
                          "year": pd.array([view.years[i] for i in view.titles], dtype="Int64"),
                          "genres": [view.genres[i] for i in view.titles]})
    attrs = pd.DataFrame([(i, r, e) for i, rel in view.attributes.items() for r, ents in rel.items() for e in ents],
                         columns=["item_id", "relation", "entity"])
    inter = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u1"], "item_id": ["3", "3", "3", "4"]})
    rows = []
    for rep in range(3):
        for q in queries():
            # a history item may not also be a candidate (prepare-data refuses such a query)
            history = [h for h in q.get("history", []) if h not in q["candidates"]]
            rows.append({**q, "history": history, "query_id": f"{q['query_id']}-{rep}", "user_id": "u1",
                         "split": "val" if rep == 0 else "train"})
    save_catalog(Catalog(items=items, interactions=inter, item_attributes=attrs, queries=pd.DataFrame(rows)), folder)


@pytest.mark.slow  # trainer set-up, two generations and saving: over a minute on the shared 2-core CPU
@pytest.mark.parametrize("use_lora", [True, False])
def test_stage_writes_model_folder_metrics_and_adapter(tmp_path, small_model_dir, use_lora):
    data = tmp_path / "data"
    write_data_folder(data)
    cfg = SFTWarmupConfig(profile="tiny", model=str(small_model_dir), use_lora=use_lora, lora_r=4, steps=2,
                          batch_size=4, lr=1e-3, n_eval=4, max_new_tokens=6, n_candidates=3, eval_batch_size=4)
    metrics = sft_warmup(data, None, tmp_path / "out", cfg)
    out = tmp_path / "out"
    assert metrics["steps"] == 2 and metrics["n_eval_queries"] == 4
    assert metrics["stopped_by_time_budget"] == 0  # no time budget: every planned step ran
    for key in ("parse_rate_before", "acc_at_1_after", "popularity_acc_at_1", "eval_loss", "train_s", "peak_memory_mb",
                "decision_answer_acc_before", "decision_answer_acc"):  # teacher-forced, rerec.eval.decisions
        assert key in metrics
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps"] == 2 and saved["config"]["use_lora"] is use_lora
    assert (out / "adapter" / "adapter_config.json").is_file() == use_lora
    assert not (out / "_trainer").exists()
    model, tok = load_model(str(out))
    assert not hasattr(model, "peft_config")  # merged: a plain transformers model
    assert tok.chat_template and tok.pad_token is not None
    assert len((out / "samples.jsonl").read_text().splitlines()) == 4
