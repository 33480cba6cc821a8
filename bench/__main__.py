"""``python -m storyedge.bench [OPTIONS]``: the same as ``storyedge bench [OPTIONS]``."""

import sys

from storyedge.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
