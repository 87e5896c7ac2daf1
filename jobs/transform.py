"""`python jobs/transform.py ARGS` is `beardnet transform ARGS` (e.g. under `ray job submit`)."""

import sys

from beardnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["transform", *sys.argv[1:]]))
