"""``python -m storyedge.app [COMMAND] [OPTIONS]``: the same as ``storyedge [COMMAND] [OPTIONS]``."""

from storyedge.app.cli import main

if __name__ == "__main__":
    main()
