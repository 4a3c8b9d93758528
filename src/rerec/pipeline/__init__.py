"""Running the stages as a pipeline: the typed pipeline parameters and the run presets they start from
(:mod:`.params`, :mod:`.presets`), the MLflow parent run of a pipeline run (:mod:`.parent_run`), ``rerec run``
on this machine (:mod:`.run`), the recurring run on Kubeflow (:mod:`.schedule`), multi-node RFT as a Trainer
``TrainJob`` (:mod:`.trainjob`) and the RFT checkpoint volumes (:mod:`.volumes`, :mod:`.checkpoints`)."""
