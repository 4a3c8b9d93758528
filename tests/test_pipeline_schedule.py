"""`rerec schedule` against a fake kfp.Client that records what it is asked (no cluster here)."""

import argparse
from types import SimpleNamespace as NS

import pytest

from rerec import schedule as sched
from rerec.errors import ConfigError


class FakeKFP:
    """Just enough of kfp.Client's v2 API, with state, so create/update/unchanged can be told apart."""

    def __init__(self):
        self.calls, self.versions, self.runs, self.pipeline_id = [], [], {}, None

    def _log(self, call, **kw):
        self.calls.append((call, kw))

    def get_experiment(self, experiment_name=None, **_):
        self._log("get_experiment", experiment_name=experiment_name)
        raise ValueError("no such experiment")

    def create_experiment(self, name, **_):
        self._log("create_experiment", name=name)
        return NS(experiment_id="exp-1")

    def get_pipeline_id(self, name):
        return self.pipeline_id

    def upload_pipeline(self, path, pipeline_name=None, description=None):
        self._log("upload_pipeline", path=path, pipeline_name=pipeline_name)
        self.pipeline_id = "pipe-1"
        return NS(pipeline_id="pipe-1")

    def list_pipeline_versions(self, pipeline_id, page_size=10, filter=None, **_):
        return NS(pipeline_versions=list(self.versions))

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id=None):
        self._log("upload_pipeline_version", name=pipeline_version_name)
        v = NS(display_name=pipeline_version_name, pipeline_version_id=f"ver-{len(self.versions) + 1}")
        self.versions.append(v)
        return v

    def list_recurring_runs(self, experiment_id=None, page_size=10, filter=None, **_):
        return NS(recurring_runs=list(self.runs.values()))

    def create_recurring_run(self, **kw):
        self._log("create_recurring_run", **kw)
        rid = f"rr-{len(self.calls)}"
        self.runs[rid] = NS(recurring_run_id=rid, display_name=kw["job_name"], max_concurrency=kw["max_concurrency"],
                            trigger=NS(cron_schedule=NS(cron=kw["cron_expression"])),
                            pipeline_version_reference=NS(pipeline_version_id=kw["version_id"]),
                            runtime_config=NS(parameters=kw["params"]))
        return self.runs[rid]

    def delete_recurring_run(self, rid):
        self._log("delete_recurring_run", rid=rid)
        del self.runs[rid]


def _args(**kw):
    base = dict(host=None, namespace=None, name="nightly", cron="0 0 3 * * *", experiment="rerec",
                package=sched.DEFAULT_PACKAGE, input_dir="s3://bucket/new", model_name="rerec-recommender",
                param=[], service_account="rerec-pipeline-runner")
    return argparse.Namespace(**{**base, **kw})


def test_create_then_unchanged_then_update(capsys):
    client = FakeKFP()
    assert sched.cli_main(_args(), client=client) == 0
    names = [c[0] for c in client.calls]
    assert names == ["get_experiment", "create_experiment", "upload_pipeline", "upload_pipeline_version",
                     "create_recurring_run"]
    create = client.calls[-1][1]
    assert create["max_concurrency"] == 1 and create["cron_expression"] == "0 0 3 * * *"
    assert create["no_catchup"] is True and create["version_id"] == "ver-1"
    assert create["params"] == {"input_dir": "s3://bucket/new", "model_name": "rerec-recommender"}
    assert create["service_account"] == "rerec-pipeline-runner"
    assert '"created"' in capsys.readouterr().out

    client.calls.clear()
    sched.cli_main(_args(), client=client)
    assert [c[0] for c in client.calls] == ["get_experiment", "create_experiment"]  # same version, same run
    assert '"unchanged"' in capsys.readouterr().out

    client.calls.clear()
    sched.cli_main(_args(cron="0 30 2 * * 1"), client=client)
    names = [c[0] for c in client.calls]
    assert names[-2:] == ["create_recurring_run", "delete_recurring_run"]  # new one first, then the old
    assert len(client.runs) == 1 and next(iter(client.runs.values())).trigger.cron_schedule.cron == "0 30 2 * * 1"


def test_bad_inputs_are_clear():
    with pytest.raises(ConfigError, match="6, seconds first"):
        sched.cli_main(_args(cron="0 3 * * *"), client=FakeKFP())
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        sched.cli_main(_args(param=["oops"]), client=FakeKFP())
    with pytest.raises(ConfigError, match="KFP_HOST"):
        sched.cli_main(_args())


def test_cli_prints_error_without_traceback(capsys, monkeypatch):
    from rerec.cli import main

    monkeypatch.delenv("KFP_HOST", raising=False)
    assert main(["schedule", "--input-dir", "s3://x/"]) == 2
    err = capsys.readouterr().err
    assert "KFP_HOST" in err and "Traceback" not in err
