"""`python -m systems.fraud_edge <step>`: the same as `mlsd fraud <step>`."""

import sys

from mlsd.cli import main

raise SystemExit(main(["fraud", *sys.argv[1:]]))
