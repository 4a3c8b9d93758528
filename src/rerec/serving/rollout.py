"""Roll a KServe ``InferenceService`` to the registry's champion without a manual restart.

The predictor of ``manifests/examples/kserve-inferenceservice.yaml`` runs ``mlflow models serve`` on one
model URI, read when the pod starts. :func:`sync` (``python -m rerec.serving.rollout``, the CronJob of
``manifests/examples/kserve-rollout.yaml``) reads which version the alias (``champion``) names in the MLflow
registry and, when the predictor serves another one, patches the predictor's ``--model-uri`` to that exact
version (``models:/NAME/VERSION``) and its annotation ``rerec.io/model-version``. A changed pod template is
a new rollout for KServe (a new Deployment revision in RawDeployment mode, a new Knative revision in
Serverless mode): the new pods load the model, become ready on ``/ping``, and only then replace the old
ones, so requests keep being answered. Each revision serves one known version, never "whatever the alias
said when the pod started"; a rollback of the alias (``rerec champion rollback``) rolls back the same way.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rerec.errors import RerecError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
CONTAINER = "kserve-container"
ANNOTATION = "rerec.io/model-version"
URI_FLAG = "--model-uri="


def served_uri(isvc: dict) -> str:
    """The model URI the predictor's ``kserve-container`` serves (its ``--model-uri=`` argument)."""
    for container in isvc["spec"]["predictor"].get("containers", []):
        if container.get("name") == CONTAINER:
            for arg in container.get("args", []):
                if arg.startswith(URI_FLAG):
                    return arg[len(URI_FLAG):]
    raise RerecError(f"InferenceService {isvc['metadata']['name']} has no {CONTAINER} container with {URI_FLAG}. "
                     "Fix: use manifests/examples/kserve-inferenceservice.yaml as the template.")


def rollout_patch(isvc: dict, model_name: str, version: str) -> dict | None:
    """The merge patch that makes ``isvc`` serve ``models:/model_name/version``, or None when it does."""
    want = f"models:/{model_name}/{version}"
    if served_uri(isvc) == want:
        return None
    predictor = isvc["spec"]["predictor"]
    containers = copy.deepcopy(predictor["containers"])
    for container in containers:
        if container.get("name") == CONTAINER:
            container["args"] = [f"{URI_FLAG}{want}" if a.startswith(URI_FLAG) else a for a in container["args"]]
    annotations = {**(predictor.get("annotations") or {}), ANNOTATION: str(version)}
    return {"metadata": {"annotations": {ANNOTATION: str(version)}},
            "spec": {"predictor": {"containers": containers, "annotations": annotations}}}


def sync(custom: Any, registry: Any, namespace: str, isvc_name: str, model_name: str, alias: str = "champion", *,
         log: Callable[[str], None] = print) -> str | None:
    """Point ``isvc_name`` at the version ``alias`` names; returns that version when it patched, else None.

    ``custom``: a ``kubernetes.client.CustomObjectsApi``; ``registry``: an ``mlflow.MlflowClient``."""
    try:
        version = str(registry.get_model_version_by_alias(model_name, alias).version)
    except Exception as exc:  # noqa: BLE001 - MlflowException: no such alias yet
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            log(f"{model_name}@{alias} does not exist yet: nothing to roll out")
            return None
        raise
    isvc = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, isvc_name)
    patch = rollout_patch(isvc, model_name, version)
    if patch is None:
        log(f"{isvc_name} serves {model_name}/{version} ({alias}) already")
        return None
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, isvc_name, patch)
    log(f"{isvc_name}: {served_uri(isvc)} -> models:/{model_name}/{version} ({alias}); KServe rolls the predictor")
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rerec.serving.rollout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inference-service", required=True, help="the InferenceService to keep on the alias")
    parser.add_argument("--model-name", default="rerec-recommender", help="registered model (default: %(default)s)")
    parser.add_argument("--alias", default="champion", help="alias to follow (default: %(default)s)")
    parser.add_argument("--namespace", default="", help="default: this pod's namespace")
    args = parser.parse_args(argv)
    try:
        import mlflow
        from kubernetes import client, config

        config.load_incluster_config()
        namespace = args.namespace or Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
        sync(client.CustomObjectsApi(), mlflow.MlflowClient(), namespace, args.inference_service, args.model_name,
             args.alias)
    except RerecError as exc:
        print(f"rerec.serving.rollout: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
