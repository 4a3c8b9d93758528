"""The DAGs: ``train`` (the whole pipeline) and ``retrain`` (scheduled), built for a set of
:class:`pipelines.options.ClusterOptions` and compiled to IR YAML by ``python -m pipelines.compile``."""
