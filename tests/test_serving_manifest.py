"""The KServe example manifest (docs/serving.md), checked structurally (no cluster, no KServe CRD here):
the fields KServe's v1beta1 InferenceService knows, the registered model and image the project uses,
ports that agree, and the pod hardening manifests/base applies."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "examples" / "kserve-inferenceservice.yaml"

# serving.kserve.io/v1beta1 PredictorSpec: its own fields plus the PodSpec fields it embeds (those used here).
PREDICTOR_FIELDS = {"minReplicas", "maxReplicas", "timeout", "containers", "volumes", "securityContext",
                    "serviceAccountName", "automountServiceAccountToken", "nodeSelector", "tolerations",
                    "scaleTarget", "scaleMetric", "containerConcurrency", "canaryTrafficPercent", "model"}
CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "envFrom", "ports", "readinessProbe",
                    "livenessProbe", "securityContext", "resources", "volumeMounts"}


def _args(container):
    return dict(a.removeprefix("--").split("=", 1) for a in container["args"])


def test_kserve_example_is_a_well_formed_inference_service():
    from components.image import DEFAULT_CPU_IMAGE
    from rerec.registry.register import RegisterConfig

    (doc,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == "rerec"
    predictor = doc["spec"]["predictor"]
    assert set(doc["spec"]) == {"predictor"} and set(predictor) <= PREDICTOR_FIELDS
    (container,) = predictor["containers"]
    assert set(container) <= CONTAINER_FIELDS and container["name"] == "kserve-container"
    assert container["image"] == DEFAULT_CPU_IMAGE
    assert container["command"] == ["mlflow", "models", "serve"]
    args = _args(container)
    assert args["model-uri"] == f"models:/{RegisterConfig().model_name}@champion"
    assert args["env-manager"] == "local" and int(args["timeout"]) <= predictor["timeout"]
    port = int(args["port"])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": port}


def test_kserve_example_pod_is_hardened_and_reads_the_tracking_secret():
    (doc,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    predictor = doc["spec"]["predictor"]
    (container,) = predictor["containers"]
    pod = predictor["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "limits" in container["resources"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] in {v["name"] for v in predictor["volumes"]}
    secrets = {d["metadata"]["name"] for d in yaml.safe_load_all((ROOT / "manifests/secrets/template.yaml").read_text())
               if d}
    assert {s["secretRef"]["name"] for s in container["envFrom"]} <= secrets
    assert "MLFLOW_TRACKING_URI" in (ROOT / "manifests/secrets/template.yaml").read_text()
