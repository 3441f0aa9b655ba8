"""The leaderboard site without a browser: what the pages say, escaping, reported rows, writing."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from markupsafe import escape

from instract_eval.errors import InputError
from instract_eval.leaderboard import build_site
from instract_eval.leaderboard.board import build_board, format_value
from instract_eval.leaderboard.reported import reported_rows
from instract_eval.leaderboard.site import MARKER
from instract_eval.results import read_records

from ..runner.test_cli_run import cli
from .conftest import HOSTILE


def _cells(page: str, table_id: str) -> list[list[str]]:
    """The data-value attributes of each body row of one table, row header first."""
    table = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [re.findall(r'data-value="([^"]*)"', row) for row in body.split("<tr")[1:]]


def test_every_task_gets_a_page_and_the_index_one_table_per_group(results, tmp_path):
    board = build_site([results["runs"]], tmp_path / "site")
    names = {record["task"]["name"] for record in read_records(results["runs"])}
    assert {page.name for page in board.tasks} == names
    assert [group.key for group in board.groups] == ["synth"]
    index = (tmp_path / "site" / "index.html").read_text()
    for name in names:
        assert (tmp_path / "site" / f"{name}.html").is_file()
        assert f'href="{name}.html"' in index
    assert (tmp_path / "site" / MARKER).is_file()


def test_best_values_follow_each_metrics_direction(results):
    board = build_board(read_records(results["runs"]))
    checked = set()
    for page in board.tasks:
        for index, column in enumerate(page.table.columns):
            values = [row.cells[index].value for row in page.table.rows]
            present = [v for v in values if v is not None]
            if len(set(present)) < 2:
                continue
            best = max(present) if column.direction == "higher" else min(present)
            assert [row.cells[index].best for row in page.table.rows] == [v == best for v in values]
            checked.add(column.direction)
    assert checked == {"higher", "lower"}  # median_rank and mean_rank are lower-is-better


def test_headline_cells_show_the_record_values_as_percentages(results, tmp_path):
    build_site([results["runs"]], tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    for record in read_records(results["runs"]):
        for name, metric in record["metrics"].items():
            if metric["headline"] and not name.startswith("srt."):
                assert f'data-value="{metric["value"]}"' in index
                assert format_value(metric["value"], metric["unit"]) in index


def test_mean_and_std_over_synonym_runs_are_shown_together(results):
    board = build_board(read_records(results["runs"]))
    srt = next(page for page in board.tasks if page.name == "synth-srt")
    column = next(i for i, c in enumerate(srt.table.columns) if c.metric == "srt.unseen.accuracy")
    record = srt.records[0]["metrics"]
    cell = srt.table.rows[0].cells[column]
    assert cell.value == record["srt.unseen.accuracy"]["value"]
    assert cell.std == record["srt.unseen.accuracy.std"]["value"]
    assert cell.text == f"{100 * cell.value:.1f} ± {100 * cell.std:.1f}"


def test_each_kind_gets_its_plot(results, tmp_path):
    build_site([results["runs"]], tmp_path / "site")
    page = {name: (tmp_path / "site" / f"{name}.html").read_text() for name in
            ("synth-aa", "synth-vr", "synth-dynamics", "synth-srt", "synth-tal")}
    assert "chance 50.0%" in page["synth-aa"] and "chance 50.0%" in page["synth-vr"]
    assert "against pool size" in page["synth-dynamics"]
    assert "mean ± std per method" in page["synth-srt"] and 'class="whisker"' in page["synth-srt"]
    assert "mAP against the tIoU threshold" in page["synth-tal"]
    tal = read_records(results["runs"] / next(p.name for p in results["runs"].iterdir()) / "synth-tal.json")[0]
    points = page["synth-tal"].count("<circle")
    assert points == 2 * sum(name.startswith("mAP@") for name in tal["metrics"])  # two models, one per tIoU


def test_every_page_shows_breakdowns_coverage_and_provenance(results, tmp_path):
    build_site([results["runs"]], tmp_path / "site")
    dynamics = (tmp_path / "site" / "synth-dynamics.html").read_text()
    assert "Mean R@1 per category" in dynamics and "T2V R@1 per pool" in dynamics
    tal = (tmp_path / "site" / "synth-tal.html").read_text()
    assert "AP per class (mean over the tIoU thresholds)" in tal and "per ambiguity group" in tal
    for record in read_records(results["runs"] / next(p.name for p in results["runs"].iterdir())):
        page = (tmp_path / "site" / f"{record['task']['name']}.html").read_text()
        assert record["model"]["fingerprint"] in page and record["task"]["hash"] in page
        assert record["run"]["started_at"] in page and record["versions"]["torch"] in page
        coverage = record["dataset"]["coverage"]
        assert f"<td>{coverage['evaluated']}</td><td>{coverage['total']}</td>" in page


def test_strings_from_result_files_are_escaped(results, tmp_path):
    board = build_site([results["runs"], results["hostile"]], tmp_path / "site")
    hostile = next(page for page in board.tasks if HOSTILE in page.name)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", hostile.slug)  # the page's file name is safe too
    escaped = str(escape(HOSTILE))
    for path in (tmp_path / "site").glob("*.html"):
        text = path.read_text()
        assert text.count("<script") == 1 and "<img" not in text, path.name  # our script is the only tag
    assert escaped in (tmp_path / "site" / "index.html").read_text()
    assert escaped in (tmp_path / "site" / f"{hostile.slug}.html").read_text()


def test_reported_rows_sit_beside_reproduced_ones_with_the_difference(results, tmp_path):
    board = build_site([results["paper"]], tmp_path / "site")
    assert [group.key for group in board.groups] == ["instract-bench"]
    page = board.tasks[0]
    labels = [(row.label, row.kind) for row in page.table.rows]
    assert labels[0] == ("viclip", "reproduced")
    published = reported_rows("instract-semantic")
    assert [label for label, kind in labels if kind == "reported"] == [row.method for row in published]
    viclip = next(row for row in published if row.method == "ViCLIP")
    ours = page.records[0]["metrics"]["R@1"]["value"]
    difference = next(d for d in page.differences if d.metric == "R@1")
    assert difference.method == "ViCLIP" and difference.delta == pytest.approx(ours - viclip.values["R@1"])
    text = (tmp_path / "site" / "instract-semantic.html").read_text()
    assert "Reproduced against reported" in text and difference.delta_text in text
    assert 'class="badge">reported</span>' in text and "Table 1" in text
    index = (tmp_path / "site" / "index.html").read_text()
    assert "InstrAct Bench" in index and 'id="ref-instraction"' in index


def test_match_names_the_reported_method_of_a_model(results, tmp_path, capsys):
    renamed = json.loads(next(results["paper"].glob("*.json")).read_text())
    renamed["model"]["name"] = renamed["model"]["label"] = "my-checkpoint"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "r.json").write_text(json.dumps(renamed))
    assert not build_board(read_records(tmp_path / "in")).tasks[0].differences
    code, out, err = cli(capsys, "leaderboard", "build", str(tmp_path / "in"), "--out", str(tmp_path / "site"),
                         "--match", "my-checkpoint=ViCLIP")
    assert code == 0, err
    assert "Reproduced against reported" in (tmp_path / "site" / "instract-semantic.html").read_text()
    code, _, err = cli(capsys, "leaderboard", "build", str(tmp_path / "in"), "--out", str(tmp_path / "site"),
                       "--match", "my-checkpoint=VICLIP-typo")
    assert code == 2 and "--match" in err and "VICLIP-typo" in err


def test_a_rebuild_replaces_the_site_and_other_directories_are_refused(results, tmp_path, capsys):
    site = tmp_path / "site"
    build_site([results["runs"]], site)
    build_site([results["paper"]], site)
    assert sorted(p.name for p in site.iterdir()) == sorted([MARKER, "index.html", "instract-semantic.html"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no staging directory left behind
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a leaderboard built by instract-eval"):
        build_site([results["runs"]], foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    code, _, err = cli(capsys, "leaderboard", "build", str(results["runs"]), "--out", str(foreign))
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_bad_records_fail_before_anything_is_written(results, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.json").write_text('{"schema": "other"}')
    code, _, err = cli(capsys, "leaderboard", "build", str(results["runs"]), str(bad), "--out",
                       str(tmp_path / "site"))
    assert code == 2 and "x.json: schema" in err
    assert not (tmp_path / "site").exists()


def test_a_label_in_two_sources_becomes_two_rows(results, tmp_path):
    copy = tmp_path / "again" / "runs"
    shutil.copytree(results["runs"], copy)
    board = build_site([results["runs"], copy], tmp_path / "site")
    labels = [row.label for row in board.tasks[0].table.rows]
    assert len(labels) == len(set(labels)) == 4
    assert all(label.startswith((f"{results['runs']}:", f"{copy}:")) for label in labels)
