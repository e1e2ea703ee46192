"""Make the hand-run benchmark helpers in ``bench/`` importable (the list-walking baseline)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
