"""Benchmark: requests per second and latency of the served recommender, in process and over HTTP.

The model is the embedded SmolLM2 served as registration logs it (:func:`rerec.serving.pyfunc.model_kwargs`:
the pyfunc, its catalog and the ``smollm2`` profile's settings: evidence prompts, 4 candidates, 224
new tokens at most), saved to a local folder. Requests are real: test queries generated from the
embedded MovieLens-100k (seeded), shrunk to 4 candidates as evaluation shrinks them, sent by item id
with their history and mentioned items (:func:`rerec.serving.recommender.request_of_query`).

Measured side by side in one run, each after one short warm-up call, the two modes taking turns call by
call (so that both see the same load on a shared machine):

- ``pyfunc``: ``mlflow.pyfunc.load_model(folder).predict`` in this process;
- ``http``: ``mlflow models serve --env-manager local`` on loopback, one worker, JSON
  ``dataframe_records`` posted to ``/invocations``;

each at batch 1 (one request a call, :data:`N_SINGLE` calls) and batch 16 (16 requests a call, the
generator's batch 16, :data:`N_BATCHED` calls), with ``max_new_tokens`` :data:`MAX_NEW_TOKENS` (the
profile's 224 takes minutes a batch on a shared 2-core CPU). Latency is per call (p50, p95 over calls);
requests per second is requests answered over the wall time of that sequence. The zero-shot SmolLM2
rarely closes an answer, so completions run to the limit: times for answers of that length.

Writes every call (latency, new tokens per request, parsed or not) with the command, commit, machine
and seed to ``bench/results/serve_smollm2_cpu.json`` and prints one JSON line.

    .venv/bin/python bench/serve.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

SEED = 0
BATCH = 16
N_SINGLE = 6  # calls of one request
N_BATCHED = 2  # calls of BATCH requests
MAX_NEW_TOKENS = 64  # per answer; the profile allows 224, which a shared 2-core CPU cannot measure in minutes
PARAMS = {"batch_size": BATCH, "max_new_tokens": MAX_NEW_TOKENS}
RESULTS = Path(__file__).resolve().parent / "results" / "serve_smollm2_cpu.json"


def movielens_requests(root: Path, n: int) -> tuple[list[dict], Path]:
    """``n`` requests from seeded test queries of the embedded MovieLens-100k, as evaluation shows them."""
    from rerec.data.load import load_catalog
    from rerec.data.prepare import PrepareConfig, prepare_data
    from rerec.eval.evaluate import query_records
    from rerec.models.profiles import get_profile
    from rerec.prompt import CatalogView, shrink_candidates
    from rerec.serving.recommender import request_of_query

    data = root / "data"
    prepare_data(None, data, PrepareConfig(seed=SEED, n_explicit=100, n_implicit=80, n_misinformed=80,
                                           n_interest=80), progress=False)
    catalog = load_catalog(data)
    view = CatalogView.from_catalog(catalog)
    test = catalog.queries[catalog.queries["split"] != "train"]
    if len(test) < n:
        raise RuntimeError(f"only {len(test)} val/test queries, {n} needed: generate more")
    rows = query_records(test.sample(n=n, random_state=SEED))
    k = get_profile("smollm2").n_candidates
    return [request_of_query(shrink_candidates(q, k, view, seed=SEED)) for q in rows], data


def save_model(root: Path, data: Path) -> tuple[Path, dict]:
    import mlflow.pyfunc

    from rerec.models.loading import smollm2_dir
    from rerec.models.profiles import get_profile
    from rerec.registry.register import pip_requirements
    from rerec.serving.pyfunc import model_kwargs
    from rerec.serving.recommender import catalog_view_of_data, resolve_settings, write_catalog_view

    p = get_profile("smollm2")
    settings, _ = resolve_settings(None, None, {"context_mode": p.context_mode, "max_history": p.max_history,
                                                "max_prompt_tokens": p.max_prompt_tokens,
                                                "max_new_tokens": p.max_new_tokens, "batch_size": BATCH})
    view = catalog_view_of_data(data)
    catalog = write_catalog_view(view, root / "catalog.json")
    folder = root / "model"
    mlflow.pyfunc.save_model(path=str(folder), pip_requirements=pip_requirements(),
                             **model_kwargs(smollm2_dir(), catalog, settings, view))
    return folder, settings.to_dict()


def run_calls(call, batches: list[list[dict]], tokenizer, mode: str, batch: int) -> list[dict]:
    records = []
    for requests in batches:
        start = time.perf_counter()
        rows = call(requests)
        seconds = time.perf_counter() - start
        records.append({"mode": mode, "batch": batch, "latency_s": round(seconds, 3), "n_requests": len(rows),
                        "new_tokens": [len(tokenizer.encode(r["completion"], add_special_tokens=False)) for r in rows],
                        "parsed": [bool(r["parsed"]) for r in rows]})
        print(f"{mode} batch {batch}: {seconds:.1f} s", file=sys.stderr)
    return records


def summary(records: list[dict]) -> dict:
    latencies = np.array([r["latency_s"] for r in records])
    n = sum(r["n_requests"] for r in records)
    return {"calls": len(records), "requests": n, "requests_per_s": round(n / latencies.sum(), 4),
            "p50_s": round(float(np.percentile(latencies, 50)), 2), "p95_s": round(float(np.percentile(latencies, 95)), 2),
            "mean_new_tokens": round(float(np.mean([t for r in records for t in r["new_tokens"]])), 1)}


def plan(requests: list[dict]) -> dict[int, list[list[dict]]]:
    single = [[r] for r in requests[:N_SINGLE]]
    batched = [requests[N_SINGLE + i * BATCH: N_SINGLE + (i + 1) * BATCH] for i in range(N_BATCHED)]
    return {1: single, BATCH: batched}


def start_server(folder: Path, log_path: Path) -> tuple[subprocess.Popen, str, object]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)
    # a batch of 16 answers on a CPU takes minutes; the scoring server cuts requests at 60 s by default
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "1800"}
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(folder), "--env-manager",
                             "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(Path(log_path).read_text(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(base + "/ping", timeout=2) as r:
                if r.status == 200:
                    return proc, base, log
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("mlflow models serve did not answer /ping within 300 s")


def post(base: str, requests: list[dict], params: dict | None = None) -> list[dict]:
    body = json.dumps({"dataframe_records": requests, "params": params or PARAMS}).encode()
    req = urllib.request.Request(base + "/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=1800) as r:
        return json.loads(r.read())["predictions"]


def main() -> None:
    import mlflow.pyfunc
    import pandas as pd
    import torch

    from rerec.models.loading import load_tokenizer
    from rerec.tracking import git_commit

    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rerec-bench-serve-") as tmp:
        root = Path(tmp)
        requests, data = movielens_requests(root, N_SINGLE + N_BATCHED * BATCH)
        folder, settings = save_model(root, data)
        tokenizer = load_tokenizer("smollm2")
        calls = plan(requests)
        warm = {"max_new_tokens": 4, "batch_size": BATCH}
        records: list[dict] = []

        model = mlflow.pyfunc.load_model(str(folder))
        model.predict(pd.DataFrame(requests[:1]), params=warm)

        def in_process(batch: list[dict]) -> list[dict]:
            return model.predict(pd.DataFrame(batch), params=PARAMS).to_dict("records")

        proc, base, log = start_server(folder, root / "serve.log")
        try:
            post(base, requests[:1], warm)
            modes = {"pyfunc": in_process, "http": lambda b: post(base, b)}
            for size, batches in calls.items():
                for i, batch in enumerate(batches):  # the two modes call by call, in turn first
                    for mode in (("pyfunc", "http") if i % 2 == 0 else ("http", "pyfunc")):
                        records += run_calls(modes[mode], [batch], tokenizer, mode, size)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
            log.close()

    result = {mode: {f"batch_{size}": summary([r for r in records if r["mode"] == mode and r["batch"] == size])
                     for size in calls} for mode in ("pyfunc", "http")}
    for mode in ("pyfunc", "http"):
        result[mode][f"batch_{BATCH}_over_batch_1_requests_per_s"] = round(
            result[mode][f"batch_{BATCH}"]["requests_per_s"] / result[mode]["batch_1"]["requests_per_s"], 2)
    result["http_over_pyfunc_p50_batch_1"] = round(result["http"]["batch_1"]["p50_s"] / result["pyfunc"]["batch_1"]["p50_s"], 3)
    line = {"bench": "serve", "model": "smollm2", "max_new_tokens": MAX_NEW_TOKENS, **result}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "what": "bench/serve.py: the pyfunc recommender (smollm2 profile settings) in process and over HTTP "
                "(mlflow models serve, one worker) at batch 1 and 16, real MovieLens-100k test requests",
        "command": ".venv/bin/python bench/serve.py", "commit": git_commit(), "started": started, "seed": SEED,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "load_average_1_5_15_min_before": load_before,
                    "load_average_1_5_15_min_after": os.getloadavg(),
                    "note": "the machine's CPUs are shared with other jobs: the load average says how much"},
        "settings": settings, "params": PARAMS, "summary": line, "records": records,
    }, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(line))


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
