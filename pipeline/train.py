"""The train stage (see doggan.stages.train); reads params.yaml, or the file given with --params."""

import sys

from doggan.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
