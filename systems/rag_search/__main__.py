import sys

from systems.rag_search.cli import main

raise SystemExit(main(sys.argv[1:]))
