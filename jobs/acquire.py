"""`python jobs/acquire.py ARGS` is `beardnet acquire ARGS` (e.g. under `ray job submit`)."""

import sys

from beardnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["acquire", *sys.argv[1:]]))
