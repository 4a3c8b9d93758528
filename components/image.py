"""The project image every component runs on. Pinned by tag; override with ``REREC_IMAGE``."""

import os

DEFAULT_IMAGE = "ghcr.io/rerec/rerec:0.1.0-cpu"
REREC_IMAGE = os.environ.get("REREC_IMAGE", DEFAULT_IMAGE)
