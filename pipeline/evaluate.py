"""The evaluate stage (doggan.stages.evaluate); reads params.yaml, or the file given with --params."""

import sys

from doggan import runner
from doggan.stages import evaluate

if __name__ == "__main__":
    sys.exit(runner.main(evaluate, sys.argv[1:]))
