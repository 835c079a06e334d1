"""The evaluate stage (see doggan.stages.evaluate); reads params.yaml, or the file given with --params."""

import sys

from doggan.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
