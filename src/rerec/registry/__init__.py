"""The MLflow model registry: ``rerec register`` logs a trained model and runs the promotion gate
(:mod:`.register`); ``rerec champion`` reviews the gate's decision and promotes or rolls back by hand
(:mod:`.champion`)."""
