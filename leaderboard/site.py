"""Render the leaderboard as a static site: ``index.html`` and one page per task.

Every page is self-contained (css, script and plots inline), so the site works from ``file://``
and from any static host, and nothing is fetched from anywhere. Jinja2 escapes every value (model
names and task names come from result files and may hold anything), and a Content-Security-Policy
lets only our own script run, by its hash: a hostile string that slipped past escaping still could
not execute.

The site is built in a temporary directory beside ``out`` and moved into place, so an error never
leaves a half-written site, and ``out`` is only ever replaced when it is empty or a site this
function built before (it holds the marker file).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

from instract_eval import __version__
from instract_eval.errors import InputError
from instract_eval.files import fresh_directory, make_directories, replace_atomically, writing
from instract_eval.text import plain_lines

from .board import Board, Column, build_board, format_value
from .plots import task_plots

__all__ = ["MARKER", "build_site", "check_destination", "render_site", "write_site"]

MARKER = ".instract-eval-site"
TITLE = "instract-eval leaderboard"


def _static(name: str) -> Markup:
    """One of our own static files, marked safe: escaping would break css and js (quotes, ``<``)."""
    return Markup(resources.files("instract_eval.leaderboard").joinpath("static", name).read_text(encoding="utf-8"))


def _group_columns(columns: Sequence[Column]) -> list[tuple[str, int]]:
    """Consecutive columns of one task, as (task, how many): the spans of the task header row."""
    spans: list[tuple[str, int]] = []
    for column in columns:
        if spans and spans[-1][0] == column.task:
            spans[-1] = (column.task, spans[-1][1] + 1)
        else:
            spans.append((column.task, 1))
    return spans


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("instract_eval.leaderboard", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    environment.filters["groupby_task"] = _group_columns
    environment.filters["value"] = lambda value, unit: "–" if value is None else format_value(value, unit)
    return environment


def render_site(board: Board, *, title: str = TITLE) -> dict[str, str]:
    """Every page of the site: ``{file name: html}``, without control characters (escaping makes names
    from result files inert as HTML, not the raw ESC or bidi override they may hold, which would
    reach the terminal of whoever reads the page's source, or reorder what the page shows)."""
    script = _static("sort.js")
    digest = base64.b64encode(hashlib.sha256(str(script).encode("utf-8")).digest()).decode("ascii")
    environment = _environment()
    common = {"board": board, "site_title": title, "css": _static("site.css"), "script": script,
              "script_hash": f"sha256-{digest}", "version": __version__,
              "page_of": {page.name: page.slug for page in board.tasks}}
    pages = {"index.html": environment.get_template("index.html").render(cited=board.references, **common)}
    task_template = environment.get_template("task.html")
    for page in board.tasks:
        cited = {key: source for key, source in board.references.items()
                 if key in {row.paper for row in page.reported}}
        pages[f"{page.slug}.html"] = task_template.render(page=page, plots=task_plots(page), cited=cited, **common)
    return {name: plain_lines(html) for name, html in pages.items()}


def check_destination(out: Path, flag: str = "--out") -> None:
    """``out`` may be written: absent, an empty directory, or a site built here before."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", path=out, field=flag)
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError("holds files that are not a leaderboard built by instract-eval; give a new or empty "
                         "directory", path=out, field=flag)


def write_site(pages: Mapping[str, str], out: Path) -> None:
    """Write the pages into a fresh directory beside ``out``, then swap it in place of ``out``.

    Pages and their directory get the user's umask, like the result records (with the usual 022:
    0644 and 0755, readable by any static host). If the swap fails, the previous site is put back;
    a write the system refuses (read-only, full disk) is a `WriteError` naming ``out``.
    """
    check_destination(out)
    with writing(out):
        _write_and_swap(pages, out)


def _write_and_swap(pages: Mapping[str, str], out: Path) -> None:
    make_directories(out.parent)
    staging = fresh_directory(out.parent, f".{out.name}.")
    previous = None
    try:
        for name, html in {**pages, MARKER: "built by instract-eval leaderboard build\n"}.items():
            replace_atomically(staging / name, html)
        if out.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, previous / "site")
        os.replace(staging, out)
    except BaseException:
        if previous is not None and not out.exists():
            os.replace(previous / "site", out)
        shutil.rmtree(staging, ignore_errors=True)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous)


def load_sources(sources: Iterable[str | os.PathLike]) -> list[dict]:
    """The records of every source; a label found in several sources is prefixed by its source."""
    from instract_eval.results import label_by_source

    return label_by_source([Path(source) for source in sources])


def build_site(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
               matches: Mapping[str, str] | None = None, include_reported: bool = True,
               title: str = TITLE) -> Board:
    """Read the result records under ``sources`` and write the site to ``out``; return what it shows."""
    board = build_board(load_sources(sources), matches=matches, include_reported=include_reported)
    write_site(render_site(board, title=title), Path(out))
    return board
