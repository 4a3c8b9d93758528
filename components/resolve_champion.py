"""resolve-champion: download the registry's ``champion`` model folder (the retrain pipeline's start, and
the model every new challenger is compared with)."""

from kfp import dsl
from kfp.dsl import Model, Output

from components.image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def resolve_champion(
    model: Output[Model],
    model_name: str = "rerec-recommender",
    alias: str = "champion",
    required: bool = True,
    config_json: str = "",
    kfp_run_id: str = "",
) -> str:
    """Returns the champion's version. ``required=False`` (the train pipeline): with no champion yet the
    output folder stays empty, metadata ``model_version`` is empty, and the version returned is ``""``.
    ``config_json`` (the register config) may name the model instead of ``model_name``."""
    import json
    from pathlib import Path

    from rerec.pipeline.component_glue import use_pipeline_run
    from rerec.registry.register import NoSuchAlias, download_alias

    use_pipeline_run("", "", kfp_run_id)
    name = json.loads(config_json or "{}").get("model_name") or model_name
    model.metadata["model_name"] = name
    try:
        version = download_alias(name, alias, Path(model.path))
    except NoSuchAlias:  # not reaching the registry is an error even here
        if required:
            raise
        Path(model.path).mkdir(parents=True, exist_ok=True)
        version = ""
        print(f"no '{alias}' version of {name} yet: the challenger is compared with no champion")
    model.metadata["model_version"] = version
    return version
