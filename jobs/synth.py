"""`python jobs/synth.py ARGS` is `beardnet synth ARGS` (e.g. under `ray job submit`)."""

import sys

from beardnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
