"""The submission stage (see doggan.stages.submission); reads params.yaml, or the file given with --params."""

import sys

from doggan.cli import main

if __name__ == "__main__":
    sys.exit(main(["submission", *sys.argv[1:]]))
