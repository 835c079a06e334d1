"""The real_stats stage (see doggan.stages.real_stats); reads params.yaml, or the file given with --params."""

import sys

from doggan.cli import main

if __name__ == "__main__":
    sys.exit(main(["real_stats", *sys.argv[1:]]))
