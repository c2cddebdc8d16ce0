"""``python -m agent.testing run scenario.yaml --worker CMD`` (agent/testing/scenario.py)."""

import sys

from .scenario import main

sys.exit(main())
