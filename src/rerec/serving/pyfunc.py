"""The registered model: an MLflow pyfunc around :class:`rerec.serving.recommender.Recommender`.

    model = mlflow.pyfunc.load_model("models:/rerec-recommender@champion")
    model.predict(pd.DataFrame([{"request": "a 90s crime movie", "candidates": ["Heat (1995)", "50", "Fargo"],
                                 "history": ["Toy Story"]}]), params={"max_new_tokens": 224})
    # -> one row per request: answer, ranked, titles, answer_items, matched, parsed, reasoning, completion

The same request over HTTP (``mlflow models serve -m models:/rerec-recommender@champion``)::

    POST /invocations  {"dataframe_records": [{"request": ..., "candidates": [...]}], "params": {...}}

What :func:`rerec.registry.register.register` logs ("models from code": this file is the model's code, and the
``rerec`` package travels with it in ``code/``, so what serves is the code that was registered):

- artifact ``hf_model``: the Hugging Face model folder, loaded as evaluation loads it;
- artifact ``catalog``: ``catalog.json``, the compact catalog view (:func:`rerec.serving.recommender.catalog_view_dict`:
  titles, years, genres, the people relations evidence shows) that requests are resolved against and
  prompts are rendered from;
- artifact ``taste`` (models trained with taste evidence): ``taste.npz``, the :class:`rerec.taste.TasteIndex`
  built from the run's training graph and LightGCN as evaluation builds it, attached to the catalog view;
- ``model_config``: the :class:`rerec.serving.recommender.ServingSettings` (context mode, history, taste evidence,
  prompt and completion limits, batch size), as the model was evaluated;
- the signature (:func:`model_signature`: the request columns, the response columns, the generation
  ``params``) and an input example built from the catalog (:func:`input_example`).

Bad requests (unknown or ambiguous items, an empty candidate list, a prompt over the limit, unknown
fields or params) raise an ``MlflowException`` with ``INVALID_PARAMETER_VALUE`` carrying rerec's message,
so HTTP clients get status 400 and a message that says what to fix.

Unknown fields and params never reach :meth:`RecommenderModel.predict`: MLflow 3.17's schema enforcement
(``mlflow.models.utils._enforce_schema`` and ``_enforce_params_schema``, run by ``PyFuncModel.predict``
before the model's own predict, in process and under ``mlflow models serve``) drops request columns the
signature does not name and params it does not declare, and only logs a warning ("Found extra inputs
... These inputs will be ignored", "Unrecognized params ... are ignored for inference"). So that they are
refused, not silently ignored, :class:`DroppedInputs` listens to that logger and files what was dropped on
MLflow's prediction context of the call (a fresh one per ``predict``), and ``predict`` refuses the request.
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

import mlflow.models
import mlflow.pyfunc

HF_ARTIFACT = "hf_model"
CATALOG_ARTIFACT = "catalog"
TASTE_ARTIFACT = "taste"
#: the logger of MLflow's schema enforcement, whose warnings say what it dropped
ENFORCEMENT_LOGGER = "mlflow.models.utils"
_DROPPED_ATTR = "_rerec_dropped"
_DROPPED_PATTERNS = (
    ("field", re.compile(r"^Found extra inputs in the model input that are not defined in the model signature: "
                         r"`(\[.*\])`")),
    ("param", re.compile(r"^Unrecognized params (\[.*\]) are ignored")),
)


class DroppedInputs(logging.Handler):
    """Records, on the MLflow prediction context of the current call, the request columns and params that
    MLflow's schema enforcement drops (it says so only in a warning of :data:`ENFORCEMENT_LOGGER`)."""

    def emit(self, record: logging.LogRecord) -> None:
        from mlflow.pyfunc.context import get_prediction_context

        message = record.getMessage()
        for kind, pattern in _DROPPED_PATTERNS:
            match = pattern.match(message)
            if match is None:
                continue
            try:
                names = [str(n) for n in ast.literal_eval(match.group(1))]
            except (ValueError, SyntaxError):
                names = [match.group(1)]
            context = get_prediction_context()
            if context is not None:
                dropped = getattr(context, _DROPPED_ATTR, None) or {}
                dropped.setdefault(kind, []).extend(names)
                setattr(context, _DROPPED_ATTR, dropped)

    @classmethod
    def install(cls) -> None:
        """Attach one handler to :data:`ENFORCEMENT_LOGGER`, which must let warnings through."""
        logger = logging.getLogger(ENFORCEMENT_LOGGER)
        if not any(isinstance(h, cls) for h in logger.handlers):
            logger.addHandler(cls(level=logging.WARNING))
        if not logger.isEnabledFor(logging.WARNING):
            logger.setLevel(logging.WARNING)

    @staticmethod
    def take() -> dict[str, list[str]]:
        """What was dropped in the current call (``{"field": [...], "param": [...]}``), cleared after."""
        from mlflow.pyfunc.context import get_prediction_context

        context = get_prediction_context()
        dropped = getattr(context, _DROPPED_ATTR, None) if context is not None else None
        if dropped:
            setattr(context, _DROPPED_ATTR, None)
        return dropped or {}


def dropped_error(dropped: dict[str, list[str]]) -> Any:
    """The :class:`rerec.errors.InputError` for the columns and params MLflow dropped (None: none), worded
    as :func:`rerec.serving.recommender.to_query` and :meth:`rerec.serving.recommender.Recommender.recommend` word theirs."""
    from rerec.errors import InputError
    from rerec.serving.recommender import GENERATION_PARAMS, REQUEST_COLUMNS

    fields, params = sorted(set(dropped.get("field", []))), sorted(set(dropped.get("param", [])))
    if fields:
        return InputError(f"unknown field(s) {', '.join(map(repr, fields))}",
                          fix=f"send only {', '.join(REQUEST_COLUMNS)}")
    if params:
        return InputError(f"unknown param(s) {', '.join(map(repr, params))}", fix=f"use {', '.join(GENERATION_PARAMS)}")
    return None


def model_signature(settings: Any) -> Any:
    """The request/response schema and the generation params (defaults: ``settings``)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

    strings = Array(DataType.string)
    inputs = Schema([
        ColSpec(DataType.string, "request"),
        ColSpec(strings, "candidates"),
        ColSpec(strings, "history", required=False),
        ColSpec(strings, "mentions", required=False),
        ColSpec(strings, "liked", required=False),
        ColSpec(DataType.string, "user_id", required=False),
    ])
    outputs = Schema([
        ColSpec(strings, "answer"), ColSpec(strings, "ranked"), ColSpec(strings, "titles"),
        ColSpec(strings, "answer_items"), ColSpec(strings, "matched"), ColSpec(DataType.boolean, "parsed"),
        ColSpec(DataType.string, "reasoning"), ColSpec(DataType.string, "completion"), ColSpec(strings, "warnings"),
    ])
    params = ParamSchema([
        ParamSpec("max_new_tokens", DataType.long, int(settings.max_new_tokens)),
        ParamSpec("batch_size", DataType.long, int(settings.batch_size)),
        ParamSpec("max_prompt_tokens", DataType.long, int(settings.max_prompt_tokens)),
    ])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(view: Any) -> Any:
    """One request over the catalog's first items whose titles name them alone: a candidate by title
    with its year, one by item id, one by title alone, and a history item by id."""
    import pandas as pd

    from rerec.reward.matching import Candidate
    from rerec.serving.recommender import CatalogIndex

    index = CatalogIndex(view)
    unique = [i for i in view.titles if index.lookup(view.titles[i])[0] == [i]][:4]
    if len(unique) < 2:
        unique = list(view.titles)[:2]
    first, second, *rest = unique
    candidates = [Candidate(first, view.titles[first], view.years.get(first)).label, second]
    candidates += [view.titles[rest[0]]] if rest else []
    history = [rest[1]] if len(rest) > 1 else []
    return pd.DataFrame([{"request": "something to watch tonight", "candidates": candidates, "history": history}])


def model_kwargs(model_dir: Any, catalog_file: Any, settings: Any, view: Any = None,
                 taste_file: Any = None) -> dict[str, Any]:
    """What :func:`mlflow.pyfunc.log_model` / ``save_model`` get for a recommender: this file as the
    model's code and the rerec package beside it, the model folder, the catalog file and the taste index
    file (None: none) as artifacts, the settings as ``model_config``, the signature, and an input example
    from ``view``."""
    from pathlib import Path

    import rerec

    artifacts = {HF_ARTIFACT: str(model_dir)}
    if catalog_file is not None:
        artifacts[CATALOG_ARTIFACT] = str(catalog_file)
    if taste_file is not None:
        artifacts[TASTE_ARTIFACT] = str(taste_file)
    return {"python_model": __file__, "artifacts": artifacts, "code_paths": [str(Path(rerec.__file__).parent)],
            "model_config": settings.to_dict(), "signature": model_signature(settings),
            "input_example": input_example(view) if view is not None else None}


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Loads the model folder, the catalog, its taste index and the settings; answers requests (module doc)."""

    def load_context(self, context: Any) -> None:
        from mlflow.exceptions import MlflowException

        from rerec.serving.recommender import Recommender, ServingSettings, read_catalog_view

        catalog = (context.artifacts or {}).get(CATALOG_ARTIFACT)
        if not catalog:
            raise MlflowException("This model version was registered without its catalog, so it cannot resolve "
                                  "or show items. Fix: register it again with 'rerec register --data <prepared "
                                  "data folder>' (the train pipeline passes its data).")
        settings = ServingSettings.from_dict(context.model_config or {})
        view = read_catalog_view(catalog)
        taste = (context.artifacts or {}).get(TASTE_ARTIFACT)
        if settings.taste_evidence:
            if not taste:
                raise MlflowException("This model version was trained and evaluated with taste evidence but registered "
                                      "without its taste index, so it cannot build the prompts it was evaluated on. "
                                      "Fix: register it again with 'rerec register --graphs DIR --reward DIR' (the "
                                      "train pipeline passes them).")
            from rerec.taste import TasteIndex

            view.taste = TasteIndex.load(taste)
        DroppedInputs.install()
        self.recommender = Recommender.load(context.artifacts[HF_ARTIFACT], view, settings)

    def predict(self, context, model_input, params=None):  # no type hints: the signature is given explicitly
        import pandas as pd
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from rerec.errors import RerecError
        from rerec.serving.recommender import GENERATION_PARAMS, RESPONSE_COLUMNS

        # MLflow fills every param of the signature (its default when the request has none).
        given = {k: v for k, v in (params or {}).items() if k in GENERATION_PARAMS or v is not None}
        try:
            dropped = dropped_error(DroppedInputs.take())  # what MLflow's schema check took out of this request
            if dropped is not None:
                raise dropped
            rows = self.recommender.recommend(model_input, given)
        except RerecError as exc:
            raise MlflowException(f"rerec: {exc}", error_code=INVALID_PARAMETER_VALUE) from exc
        return pd.DataFrame(rows, columns=list(RESPONSE_COLUMNS))


# Logged "from code" (``python_model=<this file>``): MLflow runs this file and serves the model set here.
mlflow.models.set_model(RecommenderModel())
