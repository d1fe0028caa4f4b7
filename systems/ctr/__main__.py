import sys

from systems.ctr.cli import main

raise SystemExit(main(sys.argv[1:]))
