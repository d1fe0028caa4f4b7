import sys

from systems.recsys_two_tower.cli import main

raise SystemExit(main(sys.argv[1:]))
