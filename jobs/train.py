"""`python jobs/train.py ARGS` is `beardnet train ARGS` (e.g. under `ray job submit`)."""

import sys

from beardnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
