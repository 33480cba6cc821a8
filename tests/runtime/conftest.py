"""The runtime tests reuse the bench tests' numpy toy backends."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
