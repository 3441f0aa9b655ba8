"""Writes the tiny InternVL3 directory of the conformance test: ``python make_tiny.py`` (from this folder).

The reference is transformers' own ``Qwen2_5_VLForConditionalGeneration`` (see README.md); this
only writes a tiny random one with ``save_pretrained`` and the byte tokenizer of
``tests/adapters/families/generative_tiny.py``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "adapters" / "families"))

from generative_tiny import tiny_internvl3  # noqa: E402

if __name__ == "__main__":
    target = HERE / "internvl3-tiny"
    shutil.rmtree(target, ignore_errors=True)
    tiny_internvl3(target, hidden=32, layers=2, seed=20251202)
    print(f"wrote {target}")
