"""The crop stage (doggan.stages.crop); reads params.yaml, or the file given with --params."""

import sys

from doggan import runner
from doggan.stages import crop

if __name__ == "__main__":
    sys.exit(runner.main(crop, sys.argv[1:]))
