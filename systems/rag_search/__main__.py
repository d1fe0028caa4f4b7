"""`python -m systems.rag_search <step> [flags]` is `mlsd rag <step> [flags]`."""

import sys

from mlsd.cli import main

raise SystemExit(main(["rag", *sys.argv[1:]]))
