"""The real_stats stage (doggan.stages.real_stats); reads params.yaml, or the file given with --params."""

import sys

from doggan import runner
from doggan.stages import real_stats

if __name__ == "__main__":
    sys.exit(runner.main(real_stats, sys.argv[1:]))
