"""Rolling the KServe predictor to a new champion without a manual restart (rerec.serving.rollout and
manifests/examples/kserve-rollout.yaml): the patch pins the served version, is idempotent, follows the
alias back on a rollback, and the CronJob and its RBAC validate; against in-memory stand-ins for the
Kubernetes custom-objects API and the MLflow registry (no cluster here)."""

import copy
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml

from rerec.errors import RerecError
from rerec.serving.rollout import ANNOTATION, main, rollout_patch, served_uri, sync

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "examples" / "kserve-inferenceservice.yaml"
ROLLOUT = ROOT / "manifests" / "examples" / "kserve-rollout.yaml"


def _isvc() -> dict:
    (doc,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    return doc


def _merge(target, patch):
    """RFC 7386 JSON merge patch (what the API server applies for a dict body)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        out[key] = _merge(out.get(key), value) if value is not None else None
        if value is None:
            out.pop(key)
    return out


class FakeKServe:
    def __init__(self, isvc):
        self.isvc, self.patches = isvc, []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural, name) == ("serving.kserve.io", "v1beta1", "inferenceservices", "rerec-recommender")
        return copy.deepcopy(self.isvc)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.patches.append(body)
        self.isvc = _merge(self.isvc, body)


class FakeRegistry:
    def __init__(self, version):
        self.version = version

    def get_model_version_by_alias(self, name, alias):
        if self.version is None:
            raise RuntimeError("Registered model alias champion not found.")
        return SimpleNamespace(version=self.version)


def test_a_new_champion_is_rolled_out_once_and_a_rollback_follows():
    kserve = FakeKServe(_isvc())
    assert served_uri(kserve.isvc) == "models:/rerec-recommender@champion"
    assert sync(kserve, FakeRegistry("7"), "rerec", "rerec-recommender", "rerec-recommender", log=lambda m: None) == "7"
    assert served_uri(kserve.isvc) == "models:/rerec-recommender/7"
    predictor = kserve.isvc["spec"]["predictor"]
    assert predictor["annotations"][ANNOTATION] == "7"  # a changed pod template: KServe rolls the predictor
    (container,) = predictor["containers"]
    assert container["image"] == _isvc()["spec"]["predictor"]["containers"][0]["image"]  # nothing else changed
    assert [a for a in container["args"] if not a.startswith("--model-uri")] == [
        a for a in _isvc()["spec"]["predictor"]["containers"][0]["args"] if not a.startswith("--model-uri")]
    # unchanged champion: nothing is patched
    assert sync(kserve, FakeRegistry("7"), "rerec", "rerec-recommender", "rerec-recommender", log=lambda m: None) is None
    assert len(kserve.patches) == 1
    # rerec champion rollback moved the alias back
    assert sync(kserve, FakeRegistry("6"), "rerec", "rerec-recommender", "rerec-recommender", log=lambda m: None) == "6"
    assert served_uri(kserve.isvc) == "models:/rerec-recommender/6" and len(kserve.patches) == 2


def test_no_champion_yet_changes_nothing():
    kserve = FakeKServe(_isvc())
    assert sync(kserve, FakeRegistry(None), "rerec", "rerec-recommender", "rerec-recommender", log=lambda m: None) is None
    assert kserve.patches == []


def test_a_predictor_without_the_model_uri_is_refused():
    isvc = _isvc()
    isvc["spec"]["predictor"]["containers"][0]["args"] = ["--port=8080"]
    with pytest.raises(RerecError, match="no kserve-container container with --model-uri"):
        rollout_patch(isvc, "rerec-recommender", "3")


def test_the_rollout_cronjob_and_its_rbac_validate():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(ROLLOUT.read_text()) if d}
    for obj in docs.values():
        kubernetes_validate.validate(obj, "1.31", strict=True)
    cron = docs[("CronJob", "rerec-serving-rollout")]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python3", "-m", "rerec.serving.rollout"]
    with pytest.raises(SystemExit) as exit_:
        main([*container["args"], "--help"])  # the arguments parse
    assert exit_.value.code == 0
    assert pod["serviceAccountName"] == "rerec-serving-rollout" and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {s["secretRef"]["name"] for s in container["envFrom"]} == {"rerec-mlflow"}
    (rule,) = docs[("Role", "rerec-serving-rollout")]["rules"]
    assert rule == {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                    "resourceNames": [_isvc()["metadata"]["name"]], "verbs": ["get", "patch"]}
    assert "--inference-service=" + _isvc()["metadata"]["name"] in container["args"]
