"""rerec: ReRec (ACL 2026, arXiv 2604.07851) as Kubeflow pipeline components tracked in MLflow."""

__version__ = "0.1.0"
