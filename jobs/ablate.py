"""`python jobs/ablate.py ARGS` is `beardnet ablate ARGS` (e.g. under `ray job submit`)."""

import sys

from beardnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["ablate", *sys.argv[1:]]))
