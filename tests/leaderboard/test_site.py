"""The leaderboard site without a browser: what the pages say, escaping, reported rows, writing."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from markupsafe import escape

from instract_eval.errors import InputError
from instract_eval.leaderboard import build_site
from instract_eval.leaderboard.board import build_board, format_value
from instract_eval.leaderboard.reported import reported_rows
from instract_eval.leaderboard.site import MARKER
from instract_eval.results import label_by_source, read_records

from ..helpers import result_record, simulate_full_disk, write_json
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


def _retitled(results, tmp_path, renames: dict[str, str], model: str = "viclip") -> Path:
    """Records of the runs renamed to paper tasks (synth task -> task), all in the instract-bench group."""
    out = tmp_path / "renamed"
    out.mkdir(parents=True)
    for synth, task in renames.items():
        record = json.loads(next(results["runs"].glob(f"*/{synth}.json")).read_text())
        record["model"]["name"] = record["model"]["label"] = model
        record["task"]["name"] = task
        record["task"]["groups"] = ["instract-bench"]
        (out / f"{task}.json").write_text(json.dumps(record))
    return out


def test_index_values_link_to_their_provenance_and_reported_rows_cite_their_own_table(results, tmp_path):
    source = _retitled(results, tmp_path, {"synth-semantic": "instract-semantic",
                                            "synth-dynamics": "instract-dynamics"})
    board = build_site([source], tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="instract-semantic.html#run-1"' in index and 'href="instract-dynamics.html#run-1"' in index
    assert 'id="run-1"' in (tmp_path / "site" / "instract-semantic.html").read_text()
    table = board.groups[0].table
    videoprism = [row for row in table.rows if row.label == "VideoPrism"]
    assert sorted(row.cited_as for row in videoprism) == ["InstrAction, Table 1", "InstrAction, Table 2"]
    for row in videoprism:  # each row holds only the numbers of the table it cites
        tasks = {column.task for column, cell in zip(table.columns, row.cells) if cell.value is not None}
        assert tasks == ({"instract-semantic"} if row.cited_as.endswith("Table 1") else {"instract-dynamics"})


def test_task_pages_show_every_metric_and_the_index_lists_every_page(results, tmp_path):
    board = build_site([results["runs"]], tmp_path / "site")
    aa = next(page for page in board.tasks if page.name == "synth-aa")
    record = aa.records[0]["metrics"]
    assert [c.metric for c in aa.table.columns] == [n for n, m in record.items() if m["headline"]] + [
        n for n, m in record.items() if not m["headline"] and m["direction"]] + [
        n for n, m in record.items() if not m["headline"] and not m["direction"]]
    srt = next(page for page in board.tasks if page.name == "synth-srt")
    assert not any(c.metric.endswith(".std") for c in srt.table.columns)  # shown as ± instead
    index = (tmp_path / "site" / "index.html").read_text()
    assert index.count("Task pages:") == 1 and all(f'<a href="{p.slug}.html">{p.name}</a>' in index
                                                    for p in board.tasks)


@pytest.mark.parametrize("umask, page_mode, directory_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_pages_get_the_users_umask(results, tmp_path, umask, page_mode, directory_mode):
    """As the result records do: with the usual 022 any static host can read them, and a user who
    keeps files from others (027) is not overruled."""
    previous = os.umask(umask)
    try:
        build_site([results["runs"]], tmp_path / "site")
    finally:
        os.umask(previous)
    assert {stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "site").iterdir()} == {page_mode}
    assert stat.S_IMODE((tmp_path / "site").stat().st_mode) == directory_mode


def test_an_out_under_a_file_is_one_line_naming_it(results, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, _, err = cli(capsys, "leaderboard", "build", str(results["runs"]), "--out", str(tmp_path / "file" / "site"))
    assert code == 2 and err == (f"error: {tmp_path / 'file' / 'site'}: cannot write: [Errno 20] Not a directory: "
                                 f"{tmp_path / 'file'}\n")


def test_a_full_disk_is_one_line_and_keeps_the_previous_site(results, tmp_path, capsys, monkeypatch):
    site = tmp_path / "site"
    build_site([results["runs"]], site)
    before = {path.name: path.read_bytes() for path in site.iterdir()}
    simulate_full_disk(monkeypatch, tmp_path, files_that_fit=1)
    code, _, err = cli(capsys, "leaderboard", "build", str(results["paper"]), "--out", str(site))
    assert code == 2 and err == f"error: {site}: cannot write: [Errno 28] No space left on device\n"
    assert {path.name: path.read_bytes() for path in site.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no staging directory left behind


def test_non_finite_values_show_as_missing_and_are_not_plotted(results, tmp_path):
    record = json.loads(next(results["runs"].glob("*/synth-aa.json")).read_text())
    record["metrics"]["accuracy"]["value"] = float("nan")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "r.json").write_text(json.dumps(record))  # json writes NaN, and reads it back
    board = build_site([tmp_path / "in"], tmp_path / "site")
    column = next(i for i, c in enumerate(board.tasks[0].table.columns) if c.metric == "accuracy")
    assert board.tasks[0].table.rows[0].cells[column].text == "–"
    assert "<svg" not in (tmp_path / "site" / "synth-aa.html").read_text()


def test_match_by_model_name_survives_source_prefixes_and_unknown_labels_are_refused(results, tmp_path, capsys):
    one = _retitled(results, tmp_path / "a", {"synth-semantic": "instract-semantic"}, model="my-ckpt")
    two = _retitled(results, tmp_path / "b", {"synth-semantic": "instract-semantic"}, model="my-ckpt")
    board = build_board(label_by_source([one, two]), matches={"my-ckpt": "ViCLIP"})
    assert {d.label for d in board.tasks[0].differences} == {f"{one}:my-ckpt", f"{two}:my-ckpt"}
    code, _, err = cli(capsys, "leaderboard", "build", str(one), "--out", str(tmp_path / "site"),
                       "--match", "typo=ViCLIP")
    assert code == 2 and "--match" in err and "typo" in err and not (tmp_path / "site").exists()


def test_two_records_of_one_model_and_task_in_one_source_are_refused(results, tmp_path, capsys):
    record = next(results["runs"].glob("*/synth-aa.json"))
    for run in ("run1", "run2"):
        (tmp_path / "dup" / run).mkdir(parents=True)
        shutil.copy(record, tmp_path / "dup" / run / "synth-aa.json")
    code, _, err = cli(capsys, "leaderboard", "build", str(tmp_path / "dup"), "--out", str(tmp_path / "site"))
    assert code == 2 and "run2/synth-aa.json: model.label: a second record" in err


def test_control_characters_from_result_files_are_dropped_from_every_page(tmp_path, capsys):
    """Escaping makes a name inert as HTML, not its raw ESC (which reaches the terminal of whoever
    reads the page's source) or a right-to-left override (which shows the name reversed)."""
    (tmp_path / "in").mkdir()
    write_json(tmp_path / "in" / "r.json", result_record("evil\x1b[2J\u202emodel", "task\x9b31m\x07",
                                                         {"accuracy": (0.5, "fraction", "higher")}))
    code, out, err = cli(capsys, "leaderboard", "build", str(tmp_path / "in"), "--out", str(tmp_path / "site"))
    assert code == 0, err
    assert "pages for 1 result record:" in out
    pages = [path.read_text(encoding="utf-8") for path in (tmp_path / "site").glob("*.html")]
    assert len(pages) == 2 and all("evil[2Jmodel" in page and "task31m" in page for page in pages)
    assert not any(re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202e]", page) for page in pages)
