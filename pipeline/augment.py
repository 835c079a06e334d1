"""The augment stage (see doggan.stages.augment); reads params.yaml, or the file given with --params."""

import sys

from doggan.cli import main

if __name__ == "__main__":
    sys.exit(main(["augment", *sys.argv[1:]]))
