"""``python -m stemkit`` runs the CLI."""

import sys

from stemkit.cli import main

sys.exit(main())
