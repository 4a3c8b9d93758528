"""Check: a registered model answers as the evaluation scored it, on a model that answers.

Loads ``--model`` (a registry URI, e.g. ``models:/rerec-recommender@challenger``) with
``mlflow.pyfunc.load_model`` and the Hugging Face folder inside it with the evaluation's loader, takes
``--n`` val queries of ``--data`` (shrunk to the model's ``n_candidates`` as evaluation shrinks them),
ranks them with :class:`rerec.eval.generate.LLMRanker` built from the registered settings and with the
served model (requests by item id, :func:`rerec.serving.recommender.request_of_query`), both in one call at the same
batch size, and counts the queries whose completion and ``matched`` ranking agree. A model registered with
taste evidence is evaluated with the taste index built from ``--graphs`` and ``--reward`` (the run's
build-graphs and train-reward-gnn folders), as the evaluate stage builds it. Writes every query
(both completions, rankings, the positives) with the command, commit, machine and seed to ``--out`` and
prints one JSON line.

    MLFLOW_TRACKING_URI=... .venv/bin/python experiments/serve_agreement.py \\
        --model models:/rerec-recommender@challenger --data runs/demo/data \\
        --out experiments/results/serve_agreement_sft10_smollm2_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--graphs", type=Path, default=None, help="build-graphs folder (taste evidence)")
    parser.add_argument("--reward", type=Path, default=None, help="train-reward-gnn folder (taste evidence)")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import mlflow.pyfunc
    import pandas as pd
    import torch

    from rerec.data.load import load_catalog
    from rerec.eval.evaluate import query_records
    from rerec.eval.generate import LLMRanker
    from rerec.models.loading import load_model
    from rerec.prompt import CatalogView, shrink_candidates
    from rerec.serving.recommender import request_of_query
    from rerec.tracking import git_commit

    served = mlflow.pyfunc.load_model(args.model)
    recommender = served.unwrap_python_model().recommender
    s = recommender.settings
    catalog = load_catalog(args.data)
    view = CatalogView.from_catalog(catalog)
    view.decades = bool(s.decade_evidence)
    if s.taste_evidence:
        from rerec.taste import attach_taste

        attach_taste(view, args.graphs, args.reward)
    val = catalog.queries[catalog.queries["split"] == "val"]
    rows = query_records(val.sample(n=min(args.n, len(val)), random_state=args.seed))
    queries = [shrink_candidates(q, s.n_candidates, view, seed=0) if s.n_candidates else q for q in rows]

    model, tokenizer = load_model(str(Path(recommender.model.name_or_path)))
    ranker = LLMRanker("evaluated", model, tokenizer, view, mode=s.context_mode, max_history=s.max_history,
                       max_new_tokens=s.max_new_tokens, batch_size=len(queries), max_prompt_tokens=s.max_prompt_tokens)
    evaluated = ranker.rank_all(queries)
    out = served.predict(pd.DataFrame([request_of_query(q) for q in queries]),
                         params={"batch_size": len(queries)}).to_dict("records")
    records = []
    for query, answer, row in zip(queries, evaluated, out, strict=True):
        records.append({"query_id": query["query_id"], "type": query["type"], "positives": query["positives"],
                        "candidates": query["candidates"], "evaluated_completion": answer.completion,
                        "served_completion": row["completion"], "evaluated_ranked": answer.ranked,
                        "served_matched": list(row["matched"]), "served_answer": list(row["answer"]),
                        "agree": answer.completion == row["completion"] and list(answer.ranked) == list(row["matched"])})
    line = {"check": "serve_agreement", "model": args.model, "queries": len(records),
            "agree": sum(r["agree"] for r in records),
            "with_an_answer": sum(bool(r["served_answer"]) for r in records),
            "top1_hits": sum(bool(r["served_answer"]) and r["served_answer"][0] in r["positives"] for r in records)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "served (pyfunc from the registry) vs evaluated (LLMRanker, same folder and settings) on the same "
                "val queries, one call each at the same batch size",
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "seed": args.seed,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_1_5_15_min": os.getloadavg()},
        "settings": s.to_dict(), "summary": line, "records": records}, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(line))


if __name__ == "__main__":
    main()
