"""RFT on several processes: the launch commands (fast) and, slow, the real thing on the CPU: two processes
under ``torchrun`` (gloo) train the tiny model, rank 0 alone writes the output and the MLflow run, and a
job whose whole process group is SIGKILLed (a pod eviction) resumes from its last complete checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rerec.train.distributed import parse_args, stage_args, torchrun_command

TESTS = Path(__file__).resolve().parent
CONFIG = {"profile": "tiny", "steps": 6, "batch_size": 2, "num_generations": 2, "max_new_tokens": 8,
          "use_lora": True, "lora_r": 4, "n_candidates": 4, "max_history": 0, "save_steps": 1, "min_active": 1}


def test_stage_args_round_trip_through_the_entry_point_parser():
    args = stage_args(Path("d"), Path("g"), None, "m", Path("o"), '{"steps": 3}', resume=True)
    parsed = parse_args(args)
    assert (parsed.data, parsed.graphs, parsed.reward, parsed.model, parsed.out) == (
        Path("d"), Path("g"), None, "m", Path("o"))
    assert json.loads(parsed.config_json) == {"steps": 3} and parsed.resume is True
    assert "--resume" not in stage_args(Path("d"), None, None, None, Path("o"), "", resume=False)


def test_torchrun_command_one_pod_and_trainer_nodes():
    one_pod = torchrun_command(4, ["--out", "o"])
    assert one_pod == ["torchrun", "--standalone", "--nproc-per-node=4", "-m", "rerec.train.distributed", "--out", "o"]
    # on a Trainer node the rendezvous comes from PET_* variables: no --standalone, no node count
    nodes = torchrun_command("auto", [], standalone=False)
    assert "--standalone" not in nodes and not any(a.startswith("--nnodes") for a in nodes)


def test_rft_step_launches_one_process_per_gpu_and_reuses_a_finished_attempt(tmp_path, monkeypatch):
    """The pipeline step with two GPUs: torchrun with two processes, resuming on the volume; the model rank 0
    wrote is copied out and the run's folder removed. A retry after training finished trains nothing."""
    import subprocess as sp

    from rerec.train.distributed import run_rft_step

    launched = []

    def fake_run(command, check=False):
        launched.append(command)
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"steps": 5, "world_size": 2}))
        return sp.CompletedProcess(command, 0)

    monkeypatch.setattr(sp, "run", fake_run)
    d = tmp_path
    metrics = run_rft_step(d / "data", d / "graphs", d / "reward", d / "sft", d / "artifact", '{"steps": 5}',
                           volume=d / "pvc", kfp_run_id="run-9", arm="rft", nproc=2)
    (command,) = launched
    assert command[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=2" in command and command[-1] == "--resume"
    assert command[command.index("--out") + 1] == str(d / "pvc" / "run-9" / "rft" / "model")
    assert metrics["world_size"] == 2 and (d / "artifact" / "metrics.json").is_file()
    assert not (d / "pvc" / "run-9").exists()

    # an attempt that finished training and died while copying out: the retry takes its model
    finished = d / "pvc" / "run-10" / "rft" / "model"
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text(json.dumps({"steps": 5}))
    assert run_rft_step(d / "data", d / "graphs", d / "reward", d / "sft", d / "artifact2", "{}",
                        volume=d / "pvc", kfp_run_id="run-10", nproc=2) == {"steps": 5}
    assert len(launched) == 1 and (d / "artifact2" / "metrics.json").is_file()


def _launch(workdir: Path, out: Path, resume: bool, env: dict, log: Path) -> subprocess.Popen:
    args = stage_args(workdir / "data", workdir / "graphs", workdir / "reward", workdir / "model", out,
                      json.dumps(CONFIG), resume)
    command = [sys.executable, "-m", "torch.distributed.run", *torchrun_command(2, args)[1:]]
    with open(log, "w") as f:  # a file, not a pipe nobody reads while the job runs
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)


def _kill_job(job: subprocess.Popen) -> None:
    """SIGKILL the torchrun agent and its workers at once, as a pod eviction kills the whole container
    (torchrun starts each worker in a session of its own, so killing the agent's group would spare them)."""
    import psutil

    agent = psutil.Process(job.pid)
    processes = [agent, *agent.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    psutil.wait_procs(processes, timeout=60)


@pytest.mark.slow
def test_two_processes_train_write_once_and_resume_after_sigkill(tmp_path):
    sys.path.insert(0, str(TESTS))
    from test_rft import build_model_dir, build_stage_folders

    (tmp_path / "model").mkdir()
    build_model_dir(tmp_path / "model")
    build_stage_folders(tmp_path)
    env = {**os.environ, "REREC_TRACKING": "on", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MLFLOW_EXPERIMENT_NAME": "distributed", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("REREC_PARENT_RUN_ID", None)
    out = tmp_path / "out"
    checkpoints = tmp_path / "out.rft-work" / "checkpoints"

    started = time.monotonic()
    job = _launch(tmp_path, out, resume=False, env=env, log=tmp_path / "killed.log")
    from rerec.train.resume import latest_checkpoint

    deadline = time.monotonic() + 600
    while latest_checkpoint(checkpoints) is None or latest_checkpoint(checkpoints).name == "checkpoint-1":
        assert job.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
        assert time.monotonic() < deadline, "no second checkpoint within 10 minutes"
        time.sleep(0.2)
    _kill_job(job)
    killed_at = latest_checkpoint(checkpoints)
    assert job.returncode == -signal.SIGKILL and not out.exists()

    resumed = _launch(tmp_path, out, resume=True, env=env, log=tmp_path / "resumed.log")
    resumed.wait(timeout=600)
    log = (tmp_path / "resumed.log").read_text()
    seconds = time.monotonic() - started
    assert resumed.returncode == 0, log[-4000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == CONFIG["steps"]
    step = lambda path: int(Path(path).name.rsplit("-", 1)[1])  # noqa: E731
    assert metrics["resumed_from"] is not None and step(metrics["resumed_from"]) >= step(killed_at)
    # both ranks saved their RNG state into every checkpoint; one output folder, written once, by rank 0
    last = out / "checkpoints" / f"checkpoint-{CONFIG['steps']}"
    assert {p.name for p in last.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert (out / "config.json").is_file() and (out / "adapter").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))) == ["out"]
    # one rank printed the summary; one MLflow run per launch (the killed one never finished)
    assert sum(line.startswith("{") and '"world_size": 2' in line for line in log.splitlines()) == 1
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["distributed"], output_format="list")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "RUNNING"], [r.info for r in runs]
    finished = next(r for r in runs if r.info.status == "FINISHED")
    assert finished.data.metrics["world_size"] == 2 and finished.data.params["steps"] == str(CONFIG["steps"])
    print(f"two-process RFT: {CONFIG['steps']} steps, killed after {killed_at.name}, resumed, {seconds:.0f} s in all")
