"""`python jobs/demo.py ARGS` is `beardnet demo ARGS` (e.g. under `ray job submit`)."""

import sys

from beardnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
