"""recommend: ask a trained model for a recommendation from the command line, as it would be served.

    rerec recommend --model models:/rerec-recommender@champion \\
        --request "a 90s crime movie" --candidate "Heat" --candidate 50 --candidate "Fargo" --user 196
    rerec recommend --model models:/rerec-recommender@champion \\
        --request "a 90s crime movie" --candidate "Heat" --candidate 50 --candidate "Fargo" --history "Toy Story"
    rerec recommend --model runs/latest/rft --data runs/latest/data --graphs G --reward R --requests requests.json

--model is a registry URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/...``; the
tracking server comes from $MLFLOW_TRACKING_URI), a downloaded MLflow model folder (one with an
``MLmodel`` file), or a Hugging Face model folder such as the rft or sft-warmup output. A registered
model carries its catalog and settings; a plain folder takes its catalog from --data (the prepared
data folder it was trained on) and its settings from the folder's ``metrics.json`` training config,
the evaluation report given with --report, and the flags below, in that order; a folder trained with
taste evidence also needs --graphs and --reward, from which its taste index is built.

Candidates, history, mentions and liked items are item ids or titles ("Heat", "Heat (1995)", "50");
--mention names an item the request refers to ("Fargo" in "by the director of Fargo"), which evidence
mode checks the candidates against; --liked one the request says the person liked ("I loved Fargo").
--user is a user of the training graph, whose taste a model trained with taste evidence reads (without
it, the taste comes from --history). --requests reads a JSON file: a list of request objects
(``{"request": ..., "candidates": [...], "history": [...], "mentions": [...], "liked": [...],
"user_id": ...}``) or the body of an HTTP request to the served model (``{"dataframe_records": [...],
"params": {...}}``). What of a request the model does not use is printed as a warning.

Prints, per request, the ranked titles (the ones the model named first, then the others in the order
given, marked so), and the reasoning; --json prints the served response rows instead, one per line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from rerec.config import add_dataclass_arguments, dataclass_from_args
from rerec.errors import ConfigError, InputError, RerecError


def is_uri(text: str) -> bool:
    return "://" in text or text.startswith(("models:/", "runs:/"))


def load_recommender(model: str, data: Path | None = None, report: Path | None = None,
                     overrides: dict | None = None, graphs: Path | None = None,
                     reward: Path | None = None) -> tuple[Any, list[str]]:
    """A :class:`rerec.serving.recommender.Recommender` for ``model`` (see the module doc) and notes on its settings."""
    from rerec.serving.recommender import Recommender, catalog_view_of_data, resolve_settings

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = Path(model)
    if is_uri(model) or (path / "MLmodel").is_file():
        prompt_overrides = sorted(set(overrides) & {"context_mode", "max_history", "taste_evidence",
                                                 "decade_evidence"})
        if prompt_overrides:
            raise ConfigError(f"--{prompt_overrides[0].replace('_', '-')} cannot change a registered model: it is "
                              "served with the prompt settings it was registered (evaluated) with. Fix: drop the flag.")
        given = [flag for flag, value in (("--data", data), ("--graphs", graphs), ("--reward", reward))
                 if value is not None]
        if given:
            raise ConfigError(f"{given[0]} is for model folders; a registered model carries its own catalog and "
                              f"taste index. Fix: drop {given[0]}.")
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        try:
            with warnings.catch_warnings():  # MLflow asks for type hints on predict; the signature is explicit
                warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
                loaded = mlflow.pyfunc.load_model(model)
        except MlflowException as exc:
            raise RerecError(f"could not load {model}: {exc.message}. Fix: check the name and alias (e.g. "
                             "models:/rerec-recommender@champion) and that MLFLOW_TRACKING_URI points at the "
                             "registry.") from exc
        recommender = loaded.unwrap_python_model().recommender
        recommender.settings = dataclasses.replace(recommender.settings, **overrides)
        return recommender, [f"settings: {recommender.settings.to_dict()} (registered)"]
    if not path.exists() and model not in ("smollm2", "tiny"):
        raise ConfigError(f"--model {model}: no such folder, and not a registry URI. Fix: pass a model folder "
                          "(rft or sft-warmup output) or e.g. models:/rerec-recommender@champion.")
    if data is None:
        raise ConfigError(f"--model {model} is a model folder, which carries no catalog. Fix: pass --data with the "
                          "prepared data folder it was trained on (e.g. runs/latest/kfp/.../data).")
    report_json = {}
    if report is not None:
        try:
            report_json = json.loads(Path(report).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--report {report}: cannot read it as JSON ({exc}). Fix: pass the evaluate "
                              "stage's report.json.") from exc
    settings, notes = resolve_settings(path if path.exists() else None, report_json, overrides)
    view = catalog_view_of_data(data)
    if settings.taste_evidence:
        from rerec.taste import attach_taste

        if graphs is None or reward is None:
            raise ConfigError(f"--model {model} was trained with taste evidence, whose index is built from the run's "
                              "build-graphs and train-reward-gnn folders. Fix: pass --graphs and --reward.")
        attach_taste(view, graphs, reward)
    return Recommender.load(path if path.exists() else model, view, settings), notes


def read_requests(path: Path) -> tuple[list[dict], dict]:
    """Requests and params from a JSON file (module doc)."""
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("the requests file does not exist", file=str(path), fix="pass a JSON file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", file=str(path),
                         fix='write a list of requests, e.g. [{"request": "...", "candidates": ["Heat"]}]') from None
    params: dict = {}
    if isinstance(body, dict) and ("dataframe_records" in body or "inputs" in body):
        params = dict(body.get("params") or {})
        body = body.get("dataframe_records", body.get("inputs"))
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
        raise InputError("expected a list of request objects", file=str(path),
                         fix='write e.g. [{"request": "a 90s crime movie", "candidates": ["Heat", "50"]}]')
    return body, params


def format_response(request: dict, row: dict, recommender: Any) -> str:
    """The person-readable answer to one request."""
    from rerec.reward.matching import Candidate

    view, index = recommender.view, recommender.index
    lines = [f"Request: {request.get('request')}"]
    if request.get("user_id") is not None:
        lines.append(f"User: {request['user_id']}")
    history = [index.resolve(h, "history", 0) for h in request.get("history") or []]
    if history:
        lines.append("History: " + "; ".join(view.title(h) for h in history))
    lines.append("Ranked:")
    width = max(len(t) for t in row["titles"])
    for position, (item, title) in enumerate(zip(row["ranked"], row["titles"], strict=True), start=1):
        label = Candidate(item, title, view.years.get(item)).label
        mark = "answer" if item in row["answer"] else "not named by the model"
        lines.append(f"  {position}. {label.ljust(width + 7)} [{mark}, id {item}]")
    unmatched = [t for t, m in zip(row["answer_items"], row["matched"], strict=False) if m is None]
    if unmatched:
        lines.append("The answer also named, matching no candidate: " + "; ".join(map(repr, unmatched)))
    if not row["parsed"]:
        lines.append("The model gave no boxed answer; every candidate is in the order given.")
    elif not row["answer"]:
        lines.append("The answer named no candidate; every candidate is in the order given.")
    lines.append("Reasoning:")
    lines += ["  " + line for line in (row["reasoning"] or "(none)").splitlines()]
    lines += [f"Warning: {w}" for w in row.get("warnings") or []]
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    from rerec.serving.recommender import ServingOverrides

    parser.add_argument("--model", required=True,
                        help="Registry URI (models:/NAME@ALIAS), an MLflow model folder or a Hugging Face model folder.")
    parser.add_argument("--data", type=Path, default=None, help="Prepared data folder (for a model folder).")
    parser.add_argument("--report", type=Path, default=None,
                        help="report.json the folder's model was evaluated in (its prompt settings).")
    parser.add_argument("--graphs", type=Path, default=None,
                        help="build-graphs folder (for a model folder trained with taste evidence).")
    parser.add_argument("--reward", type=Path, default=None,
                        help="train-reward-gnn folder (for a model folder trained with taste evidence).")
    parser.add_argument("--request", default=None, help="What the person asks for.")
    parser.add_argument("--candidate", action="append", default=[], help="A candidate: item id or title (repeat).")
    parser.add_argument("--user", default=None,
                        help="The person's user id in the training data (their taste, for a model with taste evidence).")
    parser.add_argument("--history", action="append", default=[],
                        help="An item the person watched or liked: id or title (repeat).")
    parser.add_argument("--mention", action="append", default=[], help="An item the request refers to (repeat).")
    parser.add_argument("--liked", action="append", default=[],
                        help="An item the request says the person liked, e.g. Fargo in 'I loved Fargo' (repeat).")
    parser.add_argument("--requests", type=Path, default=None, help="JSON file of requests (instead of --request).")
    parser.add_argument("--json", action="store_true", help="Print the response rows as JSON lines.")
    parser.add_argument("--show-prompt", action="store_true", help="Also print the prompt the model was given.")
    add_dataclass_arguments(parser, ServingOverrides, group="settings (default: the model's own)")


def cli_main(args: argparse.Namespace) -> int:
    from rerec.serving.recommender import ServingOverrides

    if (args.request is None) == (args.requests is None):
        raise ConfigError("pass either --request with --candidate flags, or --requests FILE. "
                          'Fix: e.g. --request "a 90s crime movie" --candidate Heat --candidate 50.')
    if args.requests is not None:
        flags = [f for f, v in (("--candidate", args.candidate), ("--history", args.history), ("--mention", args.mention),
                                ("--liked", args.liked), ("--user", args.user)) if v]
        if flags:
            raise ConfigError(f"{flags[0]} goes with --request; with --requests each request carries its own fields. "
                              "Fix: put it in the requests file, or drop it.")
        requests, params = read_requests(args.requests)
    else:
        requests = [{"request": args.request, "candidates": args.candidate, "history": args.history,
                     "mentions": args.mention, "liked": args.liked}]
        if args.user is not None:
            requests[0]["user_id"] = args.user
        params = {}
    overrides = dataclasses.asdict(dataclass_from_args(ServingOverrides, args))
    recommender, notes = load_recommender(args.model, args.data, args.report, overrides, args.graphs, args.reward)
    for note in notes:
        print(note, file=sys.stderr)
    rows = recommender.recommend(requests, params)
    prompts = recommender.ranker().prompts(recommender.queries(requests)) if args.show_prompt else []
    for i, (request, row) in enumerate(zip(requests, rows, strict=True)):
        if args.json:
            print(json.dumps({**row, **({"prompt": prompts[i]} if prompts else {})}, ensure_ascii=False))
            continue
        print(("\n" if i else "") + (f"Prompt:\n{prompts[i]}\n" if prompts else "")
              + format_response(request, row, recommender))
    return 0
