"""The train stage (doggan.stages.train); reads params.yaml, or the file given with --params."""

import sys

from doggan import runner
from doggan.stages import train

if __name__ == "__main__":
    sys.exit(runner.main(train, sys.argv[1:]))
