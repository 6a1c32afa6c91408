"""Thin wrapper: `python scripts/bench.py ...` == `python -m mlx_qwen_asr.bench ...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlx_qwen_asr.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
