"""RFT checkpoint volumes (rerec.pipeline.volumes): one claim per run and arm, prepared by a Job with fsGroup so that
the steps' uid 10001 can write to a fresh volume, idempotent for retried steps, deleted after success and
pruned after a week; against in-memory stand-ins for the Kubernetes API (no cluster here). The in-image
check of the permissions themselves is tests/test_image_cluster.py."""

import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rerec.errors import RerecError
from rerec.pipeline.volumes import (
    PREPARED,
    VolumeSpec,
    delete_checkpoint_volume,
    ensure_checkpoint_volume,
    main,
    prepare_job_manifest,
    probe,
    prune,
    pvc_manifest,
    volume_name,
)


class ApiError(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


class FakeCore:
    def __init__(self, claims=None):
        self.claims, self.calls = dict(claims or {}), []

    def read_namespaced_persistent_volume_claim(self, name, namespace):
        self.calls.append(("read", name))
        if name not in self.claims:
            raise ApiError(404)
        return self.claims[name]

    def create_namespaced_persistent_volume_claim(self, namespace, body):
        self.calls.append(("create", body["metadata"]["name"]))
        self.claims[body["metadata"]["name"]] = body

    def patch_namespaced_persistent_volume_claim(self, name, namespace, body):
        self.calls.append(("patch", name))
        self.claims[name]["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])

    def delete_namespaced_persistent_volume_claim(self, name, namespace):
        self.calls.append(("delete", name))
        if self.claims.pop(name, None) is None:
            raise ApiError(404)

    def list_namespaced_persistent_volume_claim(self, namespace, label_selector):
        key, value = label_selector.split("=")
        return {"items": [c for c in self.claims.values() if c["metadata"]["labels"].get(key) == value]}


class FakeBatch:
    def __init__(self, states):
        self.jobs, self.states, self.calls = {}, list(states), []

    def create_namespaced_job(self, namespace, body):
        self.calls.append(("create", body["metadata"]["name"]))
        if body["metadata"]["name"] in self.jobs:
            raise ApiError(409)
        self.jobs[body["metadata"]["name"]] = body

    def read_namespaced_job_status(self, name, namespace):
        state = self.states.pop(0) if self.states else None
        return {"status": {"conditions": [{"type": state, "status": "True"}] if state else None}}

    def delete_namespaced_job(self, name, namespace, propagation_policy=None):
        self.calls.append(("delete", name))
        self.jobs.pop(name, None)


def vspec(**kw):
    return VolumeSpec(**{"name": volume_name("run-1"), "image": "img:cpu", "kfp_run_id": "run-1",
                         "storage_class": "fast", "node_selector": {"gpu": "yes"}, **kw})


def ensure(core, batch, **kw):
    clock = iter(range(0, 100_000, 10))
    return ensure_checkpoint_volume(core, batch, "rerec", vspec(), poll_s=0, clock=lambda: next(clock),
                                    sleep=lambda s: None, log=lambda m: None, **kw)


def test_names_are_per_run_and_arm_and_stable():
    assert volume_name("run-1") == volume_name("run-1") != volume_name("run-1", "plain_grpo") != volume_name("run-2")
    assert len(volume_name("x" * 300, "plain_grpo")) <= 63 and volume_name("r").startswith("rerec-ckpt-rft-")


def test_the_preparing_job_gives_the_volume_to_the_steps_user():
    job = prepare_job_manifest(vspec())
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == 10001 and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["python3", "-m", "rerec.pipeline.volumes", "probe", "/mnt/checkpoints"]
    assert pod["volumes"][0] == {"name": "checkpoints", "persistentVolumeClaim": {"claimName": volume_name("run-1")}}
    assert pod["nodeSelector"] == {"gpu": "yes"}  # bound in the GPU nodes' zone
    assert job["spec"]["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    claim = pvc_manifest(vspec())
    assert claim["spec"]["storageClassName"] == "fast" and claim["metadata"]["labels"]["rerec.io/kfp-run"] == "run-1"


def test_created_prepared_then_reused_by_a_retry():
    core, batch = FakeCore(), FakeBatch([None, None, "Complete"])
    assert ensure(core, batch) == volume_name("run-1")
    claim = core.claims[volume_name("run-1")]
    assert claim["metadata"]["annotations"] == {PREPARED: "true"}
    assert [c[0] for c in batch.calls] == ["create", "delete"] and not batch.jobs
    # a retried step: the claim is there and prepared, nothing is created or run again
    retry = FakeBatch([])
    assert ensure(core, retry) == volume_name("run-1")
    assert retry.calls == [] and [c[0] for c in core.calls].count("create") == 1


def test_a_retry_follows_the_preparing_job_of_an_earlier_attempt():
    core = FakeCore({volume_name("run-1"): pvc_manifest(vspec())})
    batch = FakeBatch(["Complete"])
    batch.jobs[prepare_job_manifest(vspec())["metadata"]["name"]] = {}
    ensure(core, batch)
    assert ("create", volume_name("run-1")) not in core.calls
    assert core.claims[volume_name("run-1")]["metadata"]["annotations"][PREPARED] == "true"


def test_a_volume_that_cannot_be_prepared_is_one_clear_error():
    with pytest.raises(RerecError, match="was not prepared.*describe job"):
        ensure(FakeCore(), FakeBatch(["Failed"]))
    with pytest.raises(RerecError, match="still pending after 60 s"):
        ensure(FakeCore(), FakeBatch([]), timeout_s=60)


def test_delete_and_prune():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    old, new = vspec(name="old"), vspec(name="new")
    core = FakeCore({"old": pvc_manifest(old), "new": pvc_manifest(new),
                     "other": {"metadata": {"name": "other", "labels": {}, "creationTimestamp": "2020-01-01T00:00:00Z"}}})
    core.claims["old"]["metadata"]["creationTimestamp"] = (now - timedelta(days=8)).isoformat()
    core.claims["new"]["metadata"]["creationTimestamp"] = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")

    class Custom:
        deleted = []

        def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector):
            return {"items": [{"metadata": {"name": "tj-old", "creationTimestamp": "2026-02-01T00:00:00Z"}},
                              {"metadata": {"name": "tj-new", "creationTimestamp": "2026-02-28T12:00:00Z"}}]}

        def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
            self.deleted.append(name)

    custom = Custom()
    gone = prune(core, custom, "rerec", older_than_days=7, now=now, log=lambda m: None)
    assert gone == ["persistentvolumeclaim/old", "trainjob/tj-old"]
    assert set(core.claims) == {"new", "other"} and custom.deleted == ["tj-old"]
    delete_checkpoint_volume(core, "rerec", "new")
    delete_checkpoint_volume(core, "rerec", "new")  # already gone: fine
    assert set(core.claims) == {"other"}


def _probe_as_10001(root) -> int:
    """probe(root) in a forked child running as uid/gid 10001: 0 when it can write there, 2 when refused."""
    pid = os.fork()
    if pid == 0:  # the child: no exec (the venv's interpreter may not be reachable for uid 10001)
        code = 1
        try:
            os.setgroups([])
            os.setgid(10001)
            os.setuid(10001)
            try:
                probe(Path(root))
                code = 0
            except RerecError as exc:
                code = 2 if "not writable for uid 10001" in str(exc) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to uid 10001 needs root; the 0555 case below runs instead")
def test_uid_10001_cannot_write_a_fresh_volume_root_and_can_after_fs_group():
    """What the kubelet does for fsGroup 10001 (group 10001, setgid, group-writable) is what the steps' user
    needs on a fresh volume's root (root-owned, 0755). tests/test_image_cluster.py checks it in the image."""
    parent = Path(tempfile.mkdtemp(prefix="rerec-volume-"))
    try:
        parent.chmod(0o755)
        fresh, prepared = parent / "fresh", parent / "prepared"
        fresh.mkdir(mode=0o755)
        prepared.mkdir()
        os.chown(prepared, 0, 10001)
        prepared.chmod(0o2775)
        assert _probe_as_10001(fresh) == 2
        assert _probe_as_10001(prepared) == 0
    finally:
        shutil.rmtree(parent)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; the test above checks this as uid 10001")
def test_probe_refuses_a_folder_it_cannot_write(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(RerecError, match="not writable.*fsGroup 10001"):
        probe(locked)


def test_probe_and_cli(tmp_path, capsys):
    probe(tmp_path)
    assert list(tmp_path.iterdir()) == []  # leaves nothing behind
    assert main(["probe", str(tmp_path)]) == 0
    assert main(["probe", str(tmp_path / "missing")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_settings_from_the_configmap_environment():
    env = {"CHECKPOINT_STORAGE_CLASS": "nfs", "CHECKPOINT_ACCESS_MODE": "ReadWriteMany", "CHECKPOINT_SIZE": "1Ti"}
    spec = VolumeSpec.from_env(env, name="x", image="i")
    assert (spec.storage_class, spec.access_mode, spec.size) == ("nfs", "ReadWriteMany", "1Ti")
    empty = VolumeSpec.from_env({"CHECKPOINT_STORAGE_CLASS": ""}, name="x", image="i")
    assert (empty.storage_class, empty.access_mode, empty.size) == ("", "ReadWriteOnce", "200Gi")
