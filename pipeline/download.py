"""The download stage (see doggan.stages.download); reads params.yaml, or the file given with --params."""

import sys

from doggan.cli import main

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))
