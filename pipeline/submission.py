"""The submission stage (doggan.stages.submission); reads params.yaml, or the file given with --params."""

import sys

from doggan import runner
from doggan.stages import submission

if __name__ == "__main__":
    sys.exit(runner.main(submission, sys.argv[1:]))
