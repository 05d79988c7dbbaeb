"""``python -m ops`` runs the ``tidegate`` CLI (what subprocesses use: no console script needed)."""

import sys

from ops.cli import main

sys.exit(main())
