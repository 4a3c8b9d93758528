"""``train``: start-run -> prepare-data -> build-graphs -> train-reward-gnn -> sft-warmup -> rft
[-> rft-plain-grpo] -> evaluate (test) and evaluate-val (with the champion) -> register, and finish-run at
the end whatever happened.

The parameters are typed and described (:class:`rerec.pipeline.params.TrainParams`); ``start-run`` turns
them into each stage's config and opens the MLflow parent run, so no stage config or run id is a pipeline
parameter. With ``plain_grpo_arm`` a second RFT arm (``ablation=plain_grpo``) trains from the same SFT
model for the same number of steps and the evaluations rank it beside ReRec as ``plain_grpo``.
"""

from kfp import dsl
from kfp.dsl import PipelineTask

import components as c
from components.image import CPU_IMAGE, GPU_IMAGE
from pipelines.options import (
    _GPU_POD,
    GPU_POD_BY_PRESET,
    ClusterOptions,
    cluster_step,
    with_checkpoint_settings,
    with_checkpoints,
)
from rerec.pipeline.params import TRAIN_PARAMS, train_params_of, typed_pipeline

JOB_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER


class Steps:
    """The pieces every stage needs: options, the start-run outputs and the run-time scheduling params."""

    def __init__(self, options: ClusterOptions, start: PipelineTask, node_selector, tolerations, sizes=None):
        self.options, self.start = options, start
        self.node_selector, self.tolerations = node_selector, tolerations
        self.sizes = sizes  # the size-gpu-steps task (None: the compiled resources)

    def config(self, stage: str):
        return self.start.outputs[stage]

    @property
    def tracking(self) -> dict:
        return {"mlflow_parent_run_id": self.start.outputs["parent_run_id"], "kfp_run_id": JOB_ID}

    def cpu(self, task: PipelineTask, kind: str) -> PipelineTask:
        return cluster_step(task, self.options, kind)

    def gpu(self, task: PipelineTask, kind: str, gpus: int, retries: int = 0) -> PipelineTask:
        return cluster_step(task, self.options, kind, gpus=gpus, node_selector=self.node_selector,
                            tolerations=self.tolerations, retries=retries, sizes=self.sizes)


def start_and_data(s_options: ClusterOptions, pipeline: str, params: dict, node_selector, tolerations):
    """start-run, prepare-data, build-graphs and train-reward-gnn; returns (steps, prep, graphs, reward)."""
    start = c.start_run(pipeline=pipeline, kfp_run_id=JOB_ID, **train_params_of(params)).set_display_name("start-run")
    start.set_caching_options(False)  # one MLflow parent run per pipeline run
    steps = Steps(s_options, start, node_selector, tolerations, sizes=size_gpu_steps(s_options, params["preset"]))
    steps.cpu(start, "small")
    prep = c.prepare_data(data_uri=params["data_uri"], config_json=steps.config("prepare"), **steps.tracking)
    prep.set_caching_options(False)  # the data behind a fixed URI changes between runs
    steps.cpu(prep, "data")
    graphs = steps.cpu(c.build_graphs(data=prep.outputs["data"], config_json=steps.config("graph"), **steps.tracking),
                       "data")
    reward = steps.cpu(c.train_reward_gnn(data=prep.outputs["data"], graphs=graphs.outputs["graphs"],
                                          config_json=steps.config("reward"), **steps.tracking), "reward")
    return steps, prep, graphs, reward


def size_gpu_steps(options: ClusterOptions, preset) -> PipelineTask | None:
    """The size-gpu-steps task (the GPU steps' CPU and memory for the run's preset), or None."""
    if not (options.kubernetes and options.size_gpu_steps_by_preset):
        return None
    table = {name: [r.cpu, r.memory, r.cpu_limit, r.memory_limit] for name, r in GPU_POD_BY_PRESET.items()}
    task = c.size_gpu_steps(preset=preset, table=table, fallback=[_GPU_POD.cpu, _GPU_POD.memory, _GPU_POD.cpu_limit,
                                                                  _GPU_POD.memory_limit])
    return cluster_step(task.set_display_name("size-gpu-steps"), options, "small")


def checkpoint_volume(steps: Steps, arm: str) -> PipelineTask | None:
    """The run's checkpoint volume for one RFT arm (rerec.pipeline.volumes), or None without volumes."""
    options = steps.options
    if not (options.kubernetes and options.checkpoint_volumes):
        return None
    task = c.checkpoint_volume(image=CPU_IMAGE, arm=arm, mount_path=options.checkpoint_mount,
                               node_selector=steps.node_selector, tolerations=steps.tolerations, kfp_run_id=JOB_ID)
    task.set_display_name("checkpoint-volume" if arm == "rft" else f"checkpoint-volume-{arm.replace('_', '-')}")
    task.set_caching_options(False)  # the claim of an earlier run may be gone
    return cluster_step(with_checkpoint_settings(task, options), options, "small")


def rft_task(steps: Steps, data, graphs, reward, base_model, *, arm: str = "rft", config_stage: str = "rft",
             same_budget_as=None) -> PipelineTask:
    """RFT in one pod (one process per GPU), or as a multi-node Kubeflow Trainer TrainJob when
    ``options.rft_nodes > 1``, on a checkpoint volume of the run and arm. Retried steps resume from it;
    after the step succeeded the volume is deleted (a failed run's volume stays for a retry, and the nightly
    prune deletes it after a week)."""
    options = steps.options
    extra = {"same_budget_as": same_budget_as} if same_budget_as is not None else {}
    volume = checkpoint_volume(steps, arm)
    if options.rft_nodes > 1:
        if volume is None:
            raise ValueError("multi-node RFT needs the checkpoint volume (ClusterOptions.checkpoint_volumes)")
        task = c.rft_trainjob(data=data, graphs=graphs, reward=reward, base_model=base_model, arm=arm,
                              image=GPU_IMAGE, num_nodes=options.rft_nodes, gpus_per_node=options.gpus_per_node,
                              pvc=volume.output, shared_dir=options.checkpoint_mount,
                              node_selector=steps.node_selector, tolerations=steps.tolerations,
                              s3_secret=options.s3_secret, mlflow_secret=options.mlflow_secret,
                              timeout_s=options.timeout_for("rft"), trainer_api=options.trainer_api,
                              config_json=steps.config(config_stage), **extra, **steps.tracking)
        cluster_step(with_checkpoints(task, options, volume), options, "trainjob", retries=options.rft_retries)
    else:
        task = c.rft(data=data, graphs=graphs, reward=reward, base_model=base_model, arm=arm,
                     config_json=steps.config(config_stage), **extra, **steps.tracking)
        steps.gpu(with_checkpoints(task, options, volume), "rft", options.rft_gpus, retries=options.rft_retries)
    name = "rft" if arm == "rft" else f"rft-{arm.replace('_', '-')}"
    if volume is not None:
        release = c.release_checkpoint_volume(pvc=volume.output).after(task)
        release.set_display_name(f"release-checkpoint-volume{name[3:]}").set_caching_options(False)
        cluster_step(release, options, "small")
    return task.set_display_name(name)


def evaluate_and_register(steps: Steps, data, graphs, reward, rft_model, champion: PipelineTask, *,
                          sft_model=None, plain_grpo_model=None) -> PipelineTask:
    """The test report (every trained model side by side) and the validation evaluation that the gate reads:
    the challenger beside the registry's current champion (and the zero-shot base, for retention) on the same
    queries; the SFT model and the plain-GRPO arm, which the gate does not read, are left out of it. Returns the
    register task."""
    models = {"sft_model": sft_model, "plain_grpo_model": plain_grpo_model}
    models = {k: v for k, v in models.items() if v is not None}
    options = steps.options
    test = c.evaluate(data=data, graphs=graphs, reward=reward, rft_model=rft_model, **models,
                      config_json=steps.config("eval"), **steps.tracking)
    steps.gpu(test.set_display_name("evaluate-test"), "evaluate", options.eval_gpus)
    val = c.evaluate(data=data, graphs=graphs, reward=reward, rft_model=rft_model,
                     champion_model=champion.outputs["model"], config_json=steps.config("gate_eval"), **steps.tracking)
    steps.gpu(val.set_display_name("evaluate-val"), "evaluate", options.eval_gpus)
    register = c.register(model=rft_model, report=val.outputs["report"], data=data, graphs=graphs, reward=reward,
                          champion_version=champion.outputs["Output"], config_json=steps.config("register"),
                          **steps.tracking)
    register.set_display_name("register").set_caching_options(False)  # each run registers its own version
    return steps.cpu(register, "register")


def resolve_champion(steps: Steps, model_name, required: bool) -> PipelineTask:
    task = c.resolve_champion(model_name=model_name, alias="champion", required=required,
                              config_json=steps.config("register"), kfp_run_id=JOB_ID)
    task.set_caching_options(False)  # the alias moves between runs
    return steps.cpu(task, "small")


def make_train_pipeline(options: ClusterOptions = ClusterOptions()):  # noqa: B008 - frozen dataclass
    # the typed parameters (names, types, defaults, descriptions) come from rerec.pipeline.params
    @typed_pipeline("ReRec: data, graphs, reward GNN, SFT, RFT (optionally beside a plain-GRPO arm), evaluation "
                    "against the champion, registry.", TRAIN_PARAMS)
    def train(params: dict):
        finish = cluster_step(c.finish_run(kfp_run_id=JOB_ID), options, "small")
        with dsl.ExitHandler(finish, name="rerec-train"):
            steps, prep, graphs, reward = start_and_data(options, "train", params, params["gpu_node_selector"],
                                                         params["gpu_tolerations"])
            data, graph, gnn = prep.outputs["data"], graphs.outputs["graphs"], reward.outputs["reward"]
            sft = c.sft_warmup(data=data, graphs=graph, reward=gnn, config_json=steps.config("sft"), **steps.tracking)
            steps.gpu(sft, "sft", options.sft_gpus)
            rft = rft_task(steps, data, graph, gnn, sft.outputs["model"])
            champion = resolve_champion(steps, params["model_name"], required=False)
            with dsl.If(params["plain_grpo_arm"] == True, name="with-plain-grpo-arm"):  # noqa: E712 - a KFP condition
                arm = rft_task(steps, data, graph, gnn, sft.outputs["model"], arm="plain_grpo",
                               config_stage="plain_grpo", same_budget_as=rft.outputs["model"])
                evaluate_and_register(steps, data, graph, gnn, rft.outputs["model"], champion,
                                      sft_model=sft.outputs["model"], plain_grpo_model=arm.outputs["model"])
            with dsl.Else(name="rerec-only"):
                evaluate_and_register(steps, data, graph, gnn, rft.outputs["model"], champion,
                                      sft_model=sft.outputs["model"])

    return dsl.pipeline(name="rerec-train")(train)
