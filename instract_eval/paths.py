"""Where instract-eval keeps its cache, in a module that imports nothing heavy.

`instract_eval.encoding` imports torch; `list tasks` needs the cache location (to say whether the
embedded synthetic world is there) but nothing else of it, and should answer in a second.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["default_cache_dir"]


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$INSTRACT_EVAL_CACHE``, else ``$XDG_CACHE_HOME/instract-eval``, else ``~/.cache/instract-eval``."""
    if environ.get("INSTRACT_EVAL_CACHE"):
        return Path(environ["INSTRACT_EVAL_CACHE"])
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "instract-eval"
