"""The logic of the experiments under ``experiments/`` (arm resolution, pooling runs over seeds), kept in the
library so that it is tested; the experiment scripts are thin command lines around it."""
