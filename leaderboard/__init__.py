"""The leaderboard (``instract_eval.leaderboard``): result records in, a static site out.

`board` decides what the pages say (tables, best values, reported rows, differences,
provenance), `plots` draws the inline SVG figures, `site` renders the jinja2 templates and writes
the site, and `reported` holds the papers' published numbers keyed by our task and metric names.
"""

from .site import build_site

__all__ = ["build_site"]
