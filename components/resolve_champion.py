"""resolve-champion: download the registry's ``champion`` model folder, the retrain pipeline's start."""

from kfp import dsl
from kfp.dsl import Model, Output

from components.image import REREC_IMAGE


@dsl.component(base_image=REREC_IMAGE, install_kfp_package=False)
def resolve_champion(
    model: Output[Model],
    model_name: str = "rerec-recommender",
    alias: str = "champion",
    mlflow_tracking_uri: str = "",
) -> None:
    from pathlib import Path

    from rerec.registry import download_alias
    from rerec.tracking import use_pipeline_run

    use_pipeline_run(mlflow_tracking_uri, "", "")
    version = download_alias(model_name, alias, Path(model.path))
    model.metadata["model_name"] = model_name
    model.metadata["model_version"] = version
