"""The compiled pipelines against the KFP backends that the two latest Kubeflow platform releases ship
(docs/cluster.md): Kubeflow 1.11 (KFP 2.15.0) and 26.03 (KFP 2.16.0).

A KFP backend parses an uploaded pipeline's spec and each executor's Kubernetes config with the protos it
was built from, and refuses a field it does not know (``protojson``, unknown fields rejected). These
tests do the same with the descriptors of ``kfp-pipeline-spec`` / ``kfp-kubernetes`` of each backend
version (``tests/schemas/kfp/<version>/``, extracted from the published wheels by
``tests/schemas/kfp/vendor.py``, which records their sha256), in a descriptor pool of their own beside the
installed, newer kfp."""

import hashlib
import json
from functools import cache
from pathlib import Path

import pytest
import yaml
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    json_format,
    message_factory,
    struct_pb2,
)
from google.rpc import status_pb2

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "tests" / "schemas" / "kfp"
#: KFP backend of each supported Kubeflow platform release (kubeflow/manifests, README of the tag)
BACKENDS = {"kubeflow-1.11.0": "2.15.0", "kubeflow-26.03": "2.16.0"}
OLDEST = min(BACKENDS.values(), key=lambda v: tuple(map(int, v.split("."))))
PIPELINE_FILES = ["train.yaml", "retrain.yaml", "train_multinode.yaml"]


@cache
def messages(version: str) -> tuple[type, type, type]:
    """(PipelineSpec, PlatformSpec, KubernetesExecutorConfig) classes of a backend version's protos."""
    folder = PROTOS / version
    provenance = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    pool = descriptor_pool.DescriptorPool()
    for dep in (duration_pb2, struct_pb2, status_pb2):  # the well-known imports of pipeline_spec.proto
        for f in (*_dependencies(dep.DESCRIPTOR), dep.DESCRIPTOR):
            try:
                pool.FindFileByName(f.name)
            except KeyError:
                proto = descriptor_pb2.FileDescriptorProto()
                f.CopyToProto(proto)
                pool.Add(proto)
    for name in ("pipeline_spec.desc", "kubernetes_executor_config.desc"):
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == provenance["files"][name]["sha256"], f"{folder / name} changed"
        pool.AddSerializedFile(data)

    def cls(full_name: str) -> type:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))

    return (cls("ml_pipelines.PipelineSpec"), cls("ml_pipelines.PlatformSpec"),
            cls("kfp_kubernetes.KubernetesExecutorConfig"))


def _dependencies(file_descriptor):
    for dep in file_descriptor.dependencies:
        yield from _dependencies(dep)
        yield dep


def _documents(name: str) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all((ROOT / "pipelines" / name).read_text()))
    assert len(docs) == 2, f"{name}: expected the pipeline spec and the platform spec"
    return docs[0], docs[1]


def unknown_fields(version: str, name: str) -> list[str]:
    """Every part of a compiled pipeline that the backend of ``version`` would refuse, with the reason."""
    spec_cls, platform_cls, executor_cls = messages(version)
    spec, platform = _documents(name)
    problems = []
    for what, doc, cls in (("pipeline spec", spec, spec_cls), ("platform spec", platform, platform_cls)):
        try:
            json_format.ParseDict(doc, cls(), ignore_unknown_fields=False)
        except json_format.ParseError as exc:
            problems.append(f"{what}: {exc}")
    for label, config in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        try:
            json_format.ParseDict(config, executor_cls(), ignore_unknown_fields=False)
        except json_format.ParseError as exc:
            problems.append(f"{label}: {str(exc).splitlines()[0]}")
    return problems


@pytest.mark.parametrize("version", sorted(set(BACKENDS.values())))
@pytest.mark.parametrize("name", PIPELINE_FILES)
def test_every_backend_accepts_the_compiled_pipeline(version, name):
    problems = unknown_fields(version, name)
    assert not problems, f"KFP {version} would refuse pipelines/{name}:\n" + "\n".join(problems[:10])


def test_the_check_refuses_what_an_older_backend_does_not_know(tmp_path):
    """The check itself: a field that KFP 2.15's executor config lacks (securityContext, added in 2.16) is
    reported, and an executor config that 2.16 knows passes there."""
    _, _, old = messages("2.15.0")
    _, _, new = messages("2.16.0")
    config = {"securityContext": {"runAsUser": "10001"}, "activeDeadlineSeconds": "60"}
    with pytest.raises(json_format.ParseError, match="securityContext"):
        json_format.ParseDict(config, old(), ignore_unknown_fields=False)
    json_format.ParseDict(config, new(), ignore_unknown_fields=False)


def test_the_oldest_backend_is_the_one_docs_cluster_md_names():
    text = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    assert f"KFP {OLDEST}" in text or f"Kubeflow Pipelines {OLDEST}" in text, text[:200]
    for platform, version in BACKENDS.items():
        assert platform.split("-", 1)[1] in text and version in text, (platform, version)
