"""`python jobs/eval.py ARGS` is `beardnet eval ARGS` (e.g. under `ray job submit`)."""

import sys

from beardnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
