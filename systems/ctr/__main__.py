"""`python -m systems.ctr <step>` is `mlsd ctr <step>`."""

import sys

from mlsd.cli import main

raise SystemExit(main(["ctr", *sys.argv[1:]]))
