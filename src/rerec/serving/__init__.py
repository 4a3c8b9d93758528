"""Serving a trained model: the recommender that answers requests as evaluation ranks queries
(:mod:`.recommender`), the registered MLflow pyfunc around it (:mod:`.pyfunc`), ``rerec recommend``
(:mod:`.recommend`) and the KServe roll-out to the registry's champion (:mod:`.rollout`).

Models registered before this package existed carry a ``pyfunc.py`` that imports these names from
``rerec.serving``; loaded in a process where this rerec is already imported (``rerec recommend --model
models:/...``), that code runs against this package, so the names stay importable here.
"""

from rerec.serving.recommender import (
    GENERATION_PARAMS,
    REQUEST_COLUMNS,
    RESPONSE_COLUMNS,
    CatalogIndex,
    Recommender,
    ServingSettings,
    read_catalog_view,
)

__all__ = ["GENERATION_PARAMS", "REQUEST_COLUMNS", "RESPONSE_COLUMNS", "CatalogIndex", "Recommender",
           "ServingSettings", "read_catalog_view"]
