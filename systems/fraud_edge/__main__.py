"""`python -m systems.fraud_edge <step>`."""

import sys

from systems.fraud_edge.cli import main

raise SystemExit(main(sys.argv[1:]))
