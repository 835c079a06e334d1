"""The crop stage (see doggan.stages.crop); reads params.yaml, or the file given with --params."""

import sys

from doggan.cli import main

if __name__ == "__main__":
    sys.exit(main(["crop", *sys.argv[1:]]))
