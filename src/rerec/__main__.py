"""``python -m rerec`` = the ``rerec`` command (for machines where the package is on PYTHONPATH only)."""

import sys

from rerec.cli import main

sys.exit(main())
