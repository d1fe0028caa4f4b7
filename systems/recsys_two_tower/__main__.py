"""`python -m systems.recsys_two_tower <step> [flags]` is `mlsd recsys <step> [flags]`."""

import sys

from mlsd.cli import main

raise SystemExit(main(["recsys", *sys.argv[1:]]))
