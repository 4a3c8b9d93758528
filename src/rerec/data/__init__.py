"""Data layer: load and validate a dataset folder, generate RecBench+-style queries and splits."""
