"""The download stage (doggan.stages.download); reads params.yaml, or the file given with --params."""

import sys

from doggan import runner
from doggan.stages import download

if __name__ == "__main__":
    sys.exit(runner.main(download, sys.argv[1:]))
