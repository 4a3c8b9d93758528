"""The registered model recommends as it was evaluated: registered in a real `mlflow server` (moto S3
artifact store), loaded as ``models:/<name>@challenger`` in process and served over HTTP by `mlflow
models serve`, it must return, on the same shown queries of real MovieLens data, the completions and
the ranking that the evaluation's ranker (:class:`rerec.eval.generate.LLMRanker`, built as the
evaluate stage builds it) produces for the same model folder.

The model is a small random Llama with SmolLM2's tokenizer: its greedy completions are arbitrary text,
so equal completions on every query mean the served prompts were the evaluated prompts token for token
(the catalog, the item names, the history and evidence lines, the taste ranks of the user and of the
items the request says the user liked, the system prompt and the settings all have to travel with the
model). The model was trained and evaluated with taste evidence, so it carries its taste index. Both sides generate the same queries in one call with the same batch
size, so the batches are the same and float32 rounding cannot differ between them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import free_port

from rerec.registry.register import RegisterConfig, register

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 2}
N_QUERIES, BATCH = 6, 3


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A prepared MovieLens-100k folder (few queries), its graphs and a briefly trained LightGCN, a small
    model folder with a training config (taste evidence on), and an evaluation report whose config is
    what the evaluate stage would record."""
    from rerec.data.prepare import PrepareConfig, prepare_data
    from rerec.eval.evaluate import EvalConfig
    from rerec.graphs.build import build_graphs
    from rerec.models.loading import load_tokenizer
    from rerec.models.tiny import build_tiny_model
    from rerec.reward.lightgcn import LightGCNConfig, train_reward_gnn

    root = tmp_path_factory.mktemp("serving")
    prepare_data(None, root / "data", PrepareConfig(seed=0, n_explicit=12, n_implicit=8, n_misinformed=8,
                                                    n_interest=8), progress=False)
    build_graphs(root / "data", root / "graphs")
    train_reward_gnn(root / "graphs", root / "reward", LightGCNConfig(embedding_dim=8, num_layers=1, epochs=1,
                                                                      eval_every=1))
    tokenizer = load_tokenizer("smollm2")
    model_dir = root / "model"
    build_tiny_model(tokenizer, seed=0, **SMALL).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / "metrics.json").write_text(json.dumps({"config": {
        "profile": "tiny", "context_mode": "evidence", "max_history": 3, "max_new_tokens": 96,
        "taste_evidence": True}}))
    config = EvalConfig(split="val", profile="tiny", max_history=3, max_new_tokens=12, batch_size=BATCH,
                        taste_evidence=True).resolved()
    (root / "report").mkdir()
    report = root / "report" / "report.json"  # the register run uploads the report's folder
    report.write_text(json.dumps({"split": "val", "config": asdict(config), "metrics": {
        "rft/all/acc_at_1": 0.5, "rft/retention/mmlu_ratio": 1.0}}))
    return {"data": root / "data", "graphs": root / "graphs", "reward": root / "reward", "model": model_dir,
            "report": report, "config": config}


@pytest.fixture(scope="module")
def evaluated(folders):
    """The shown val queries (shrunk as evaluation shrinks them) and the evaluation's answers: every query
    type, with taste ranks from the user and, for interest queries, from the items the request liked."""
    from rerec.data.load import load_catalog
    from rerec.eval.evaluate import _records
    from rerec.eval.generate import LLMRanker
    from rerec.models.loading import load_model
    from rerec.prompt import CatalogView, shrink_candidates
    from rerec.taste import attach_taste

    config = folders["config"]
    catalog = load_catalog(folders["data"])
    view = CatalogView.from_catalog(catalog)
    assert config.taste_evidence
    attach_taste(view, folders["graphs"], folders["reward"])  # as the evaluate stage does
    split = catalog.queries[catalog.queries["split"] != "train"].reset_index(drop=True)  # val and test
    queries = [shrink_candidates(q, config.n_candidates, view, seed=config.seed) for q in _records(split)]
    queries = queries[:N_QUERIES]
    assert len(queries) == N_QUERIES and any(q.get("history") for q in queries)
    assert {q["type"] for q in queries} == {"explicit", "implicit", "misinformed", "interest"}
    torch.set_num_threads(1)
    model, tokenizer = load_model(str(folders["model"]))
    ranker = LLMRanker("rft", model, tokenizer, view, mode=config.context_mode, max_history=config.max_history,
                       max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                       max_prompt_tokens=config.max_prompt_tokens or None)
    return queries, ranker.rank_all(queries)


@pytest.fixture(scope="module")
def registered(folders, mlflow_server, tmp_path_factory):
    """The model registered the way `rerec register` does, with its catalog; yields the model name."""
    import mlflow

    name = "served-model"
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "REREC_TRACKING": "on", "MLFLOW_EXPERIMENT_NAME": "test-serving"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    mlflow.set_tracking_uri(mlflow_server)
    try:
        result = register(folders["model"], folders["report"], RegisterConfig(model_name=name),
                          data_dir=folders["data"], graphs_dir=folders["graphs"], reward_dir=folders["reward"])
        yield name, result
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _requests(queries):
    from rerec.serving.recommender import request_of_query

    return [request_of_query(q) for q in queries]


def _assert_same_as_evaluation(rows, queries, answers):
    assert len(rows) == len(queries)
    for row, query, answer in zip(rows, queries, answers, strict=True):
        assert answer.completion is not None
        assert row["completion"] == answer.completion, query["query_id"]
        assert list(row["matched"]) == list(answer.ranked) and bool(row["parsed"]) == answer.parsed
        chosen = [i for i in dict.fromkeys(answer.ranked) if i is not None]
        assert list(row["answer"]) == chosen
        assert list(row["ranked"]) == chosen + [c for c in query["candidates"] if c not in chosen]
        assert list(row["warnings"]) == []  # a known user: every field was used


def test_registered_model_carries_catalog_settings_signature_and_example(registered, folders):
    import mlflow

    name, result = registered
    assert result["version"] == "1"
    info = mlflow.models.get_model_info(f"models:/{name}@challenger")
    flavor = info.flavors["python_function"]
    assert set(flavor["artifacts"]) == {"hf_model", "catalog", "taste"}
    assert flavor["config"] == {"context_mode": "evidence", "max_history": 3, "max_prompt_tokens": 256, "max_new_tokens": 12,
                                 "batch_size": BATCH, "n_candidates": 4,  # as evaluated (256, 4: the tiny profile)
                                 "taste_evidence": True, "decade_evidence": False}
    inputs = {c["name"]: c for c in info.signature.inputs.to_dict()}
    assert inputs["candidates"]["type"] == "array" and inputs["candidates"]["items"]["type"] == "string"
    assert inputs["request"]["required"] and not inputs["history"]["required"]
    assert not inputs["user_id"]["required"] and inputs["liked"]["items"]["type"] == "string"
    params = {p.name: p.default for p in info.signature.params}
    assert params == {"max_new_tokens": 12, "batch_size": BATCH, "max_prompt_tokens": 256}
    assert info.saved_input_example_info is not None
    assert flavor.get("code")  # the rerec package travels with the model


def test_pyfunc_from_the_registry_ranks_as_the_evaluation(registered, evaluated, tmp_path):
    import mlflow

    from rerec.registry.register import download_alias

    name, result = registered
    queries, answers = evaluated
    model = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    requests = _requests(queries)
    assert all(r["user_id"] for r in requests) and any(r["liked"] for r in requests)
    assert any(r["mentions"] and not r["liked"] for r in requests)  # "by the director of ...": not liked
    out = model.predict(pd.DataFrame(requests))
    assert list(out.columns) == ["answer", "ranked", "titles", "answer_items", "matched", "parsed", "reasoning",
                                 "completion", "warnings"]
    _assert_same_as_evaluation(out.to_dict("records"), queries, answers)
    example = model.input_example
    assert model.predict(example).shape[0] == 1  # the logged example is a valid request

    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="'Vertigo 2' is not in the model's catalog") as caught:
        model.predict(pd.DataFrame([{"request": "x", "candidates": ["Vertigo 2"]}]))
    assert caught.value.get_http_status_code() == 400

    # MLflow's schema check drops a column the signature does not name and a param it does not declare,
    # with a warning in the server's log only: the model refuses the request instead
    request = _requests(queries)[0]
    with pytest.raises(MlflowException, match=r"unknown field\(s\) 'user'\. Fix: send only request, ") as caught:
        model.predict(pd.DataFrame([{**request, "user": request["user_id"]}]))
    assert caught.value.get_http_status_code() == 400
    with pytest.raises(MlflowException, match=r"unknown param\(s\) 'temperature'\. Fix: use max_new_tokens"):
        model.predict(pd.DataFrame([request]), params={"temperature": 0.7, "max_new_tokens": 2})
    with pytest.raises(MlflowException, match="user_id 'nobody' is not a user of the model's training graph, and no "
                                              "history"):
        model.predict(pd.DataFrame([{**request, "user_id": "nobody", "history": []}]))
    anonymous = {k: v for k, v in request.items() if k != "user_id"}
    assert anonymous["history"]
    out = model.predict(pd.DataFrame([{**request, "user_id": "nobody"}, anonymous]), params={"max_new_tokens": 2})
    assert [list(w) for w in out["warnings"]] == [
        [f"user_id 'nobody' is not a user of the model's training graph: the taste ranks come from the "
         f"{len(request['history'])} history item(s) instead"], []]

    assert download_alias(name, "challenger", tmp_path / "hf") == result["version"]
    assert (tmp_path / "hf" / "config.json").is_file() and not (tmp_path / "hf" / "catalog.json").exists()


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_mlflow_models_serve_over_http_ranks_as_the_evaluation(registered, evaluated, mlflow_server, tmp_path):
    name, _ = registered
    queries, answers = evaluated
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the server runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "OMP_NUM_THREADS": "1",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m",
                             f"models:/{name}@challenger", "--env-manager", "local", "-h", "127.0.0.1",
                             "-p", str(port), "--workers", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        status, body = _post(base + "/invocations", {"dataframe_records": _requests(queries),
                                                     "params": {"batch_size": BATCH}})
        assert status == 200, body
        _assert_same_as_evaluation(body["predictions"], queries, answers)

        status, body = _post(base + "/invocations", {"dataframe_records": [{"request": "x", "candidates": []}]})
        assert status == 400 and "the candidate list is empty" in body["message"], body
        status, body = _post(base + "/invocations", {"dataframe_records": [
            {"request": "x", "candidates": [str(i) for i in range(1, 40)]}]})
        assert status == 400 and "over the model's limit of 256" in body["message"], body
        request = _requests(queries)[0]
        status, body = _post(base + "/invocations", {"dataframe_records": [{**request, "user": "1"}]})
        assert status == 400 and "unknown field(s) 'user'" in body["message"], body
        status, body = _post(base + "/invocations", {"dataframe_records": [request], "params": {"temprature": 0}})
        assert status == 400 and "unknown param(s) 'temprature'" in body["message"], body
        anonymous = {k: v for k, v in request.items() if k != "user_id"}
        status, body = _post(base + "/invocations", {"dataframe_records": [anonymous, {**request, "user_id": "x"}],
                                                     "params": {"max_new_tokens": 2}})
        assert status == 200 and body["predictions"][0]["warnings"] == [], body
        assert "user_id 'x' is not a user" in body["predictions"][1]["warnings"][0], body
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_rerec_recommend_from_the_registry_and_from_a_folder(registered, evaluated, folders, capsys, tmp_path):
    from rerec.cli import main

    name, _ = registered
    queries, answers = evaluated
    request = _requests(queries)[0]
    args = ["--request", request["request"], *sum((["--candidate", c] for c in request["candidates"]), []),
            *sum((["--history", h] for h in request["history"]), []),
            *sum((["--mention", m] for m in request["mentions"]), []),
            *sum((["--liked", m] for m in request["liked"]), []), "--user", request["user_id"]]
    assert main(["recommend", "--model", f"models:/{name}@challenger", *args, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["completion"] == answers[0].completion and row["matched"] == answers[0].ranked

    body = tmp_path / "requests.json"
    body.write_text(json.dumps({"dataframe_records": _requests(queries[:2]), "params": {"batch_size": BATCH}}))
    assert main(["recommend", "--model", str(folders["model"]), "--data", str(folders["data"]),
                 "--report", str(folders["report"]), "--requests", str(body)]) == 2
    err = capsys.readouterr().err
    assert "trained with taste evidence" in err and "Fix: pass --graphs and --reward" in err
    assert main(["recommend", "--model", str(folders["model"]), "--data", str(folders["data"]),
                 "--graphs", str(folders["graphs"]), "--reward", str(folders["reward"]),
                 "--report", str(folders["report"]), "--requests", str(body)]) == 0
    out = capsys.readouterr()
    assert out.out.count("Request: ") == 2 and "Ranked:\n  1. " in out.out and "Reasoning:" in out.out
    assert "[not named by the model, id " in out.out  # the random model names nothing: all appended
    assert "max_new_tokens=12 (evaluation report)" in out.err

    assert main(["recommend", "--model", str(folders["model"]), *args]) == 2
    assert "carries no catalog. Fix: pass --data" in capsys.readouterr().err
    assert main(["recommend", "--model", f"models:/{name}@challenger", "--request", "x", "--candidate",
                 "Not A Film At All"]) == 2
    assert "'Not A Film At All' is not in the model's catalog" in capsys.readouterr().err
