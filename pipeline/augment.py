"""The augment stage (doggan.stages.augment); reads params.yaml, or the file given with --params."""

import sys

from doggan import runner
from doggan.stages import augment

if __name__ == "__main__":
    sys.exit(runner.main(augment, sys.argv[1:]))
