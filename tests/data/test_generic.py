"""Generic row sources: each format read for real, each malformed input named by file and row."""

from __future__ import annotations

import json
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instract_eval.data.generic import parse_hf_spec, read_lines, read_records, read_rows
from instract_eval.errors import InputError


def raises_at(path, fragment, call):
    """Assert that ``call()`` raises an InputError that starts with ``path`` and contains ``fragment``."""
    with pytest.raises(InputError) as error:
        call()
    assert str(error.value).startswith(str(path)), str(error.value)
    assert fragment in str(error.value), str(error.value)


def test_json_list_rows_keep_their_types(tmp_path):
    path = tmp_path / "rows.json"
    rows = [{"video": "v1", "start": 1.5, "label": "a"}, {"video": "v2", "start": 2, "label": "b"}]
    path.write_text(json.dumps(rows))
    assert read_rows(path, ["video", "label"]) == rows
    assert [r.where for r in read_records(path)] == ["row 0", "row 1"]


def test_jsonl_rows_are_numbered_by_line_and_blank_lines_are_not_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"video": "v1", "extra": NaN}\n\n{"video": "v2"}\n')
    records = read_records(path, ["video"])
    assert [(r.where, r.data["video"]) for r in records] == [("line 1", "v1"), ("line 3", "v2")]


def test_csv_cells_stay_strings_and_quoted_newlines_keep_the_starting_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('video,start,label\nv1,1.5,a\n"v,2",2,"two\nlines"\nv3,3,c\n')
    records = read_records(path, ["video", "start"])
    assert [r.where for r in records] == ["line 2", "line 3", "line 5"]
    assert records[0].data == {"video": "v1", "start": "1.5", "label": "a"}
    assert records[1].data["label"] == "two\nlines"


def test_tsv_is_split_on_tabs(tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("video\tlabel\nv, 1\tpick up item\n")
    assert read_rows(path, ["label"]) == [{"video": "v, 1", "label": "pick up item"}]


def test_parquet_file_and_directory_of_shards(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(pa.Table.from_pylist([{"video": "b", "n": 2}]), shards / "part-1.parquet")
    pq.write_table(pa.Table.from_pylist([{"video": "a", "n": 1}]), shards / "part-0.parquet")
    assert read_rows(shards / "part-0.parquet") == [{"video": "a", "n": 1}]
    assert [row["video"] for row in read_rows(shards, ["video"])] == ["a", "b"]


@pytest.mark.parametrize("text, fragment", [
    ('[{"video": "v1"}, {"label": "x"}]', "row 1: missing field 'video'"),
    ('[{"video": "v1"}, {"video": null}]', "row 1.video: is null"),
    ('[{"video": "v1"}, 3]', "row 1: expected an object, got the number 3"),
    ('{"video": "v1"}', "top level: expected a list"),
    ("[]", "has no rows"),
    ("[{", "not valid JSON"),
])
def test_json_errors_name_file_and_row(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    raises_at(path, fragment, lambda: read_rows(path, ["video"]))


@pytest.mark.parametrize("text, fragment", [
    ('{"video": "v1"}\n{"video": "v2",}\n', "line 2: not valid JSON"),
    ('{"video": "v1"}\n\n["v2"]\n', "line 3: expected an object, got a list"),
    ('{"video": "v1"}\n{"label": "a"}\n', "line 2: missing field 'video'"),
    ("\n\n", "file is empty"),
])
def test_jsonl_errors_name_the_line(tmp_path, text, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    raises_at(path, fragment, lambda: read_rows(path, ["video"]))


@pytest.mark.parametrize("text, fragment", [
    ("video,label\nv1,a\nv2\n", "line 3: has 1 cells, the header has 2"),
    ("video,label\nv1,a\n,b\n", "line 3.video: empty cell"),
    ("clip,label\nv1,a\n", "line 2: missing field 'video'"),
    ("video,video\nv1,v2\n", "line 1: column 'video' appears twice"),
    ('video,label\n"v1,a\n', "not valid CSV"),
    ("video,label\n", "has no rows"),
])
def test_csv_errors_name_the_line(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    raises_at(path, fragment, lambda: read_rows(path, ["video"]))


def test_parquet_errors_name_the_shard_and_row(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([{"video": "a"}, {"video": None}]), path)
    raises_at(path, "row 1.video: is null", lambda: read_rows(path, ["video"]))
    raises_at(path, "row 0: missing field 'label'", lambda: read_rows(path, ["label"]))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    raises_at(broken, "not a readable Parquet file", lambda: read_rows(broken))
    raises_at(tmp_path / "empty", "file not found", lambda: read_rows(tmp_path / "empty"))


def test_unknown_suffix_and_missing_file(tmp_path):
    path = tmp_path / "rows.xlsx"
    path.write_text("x")
    raises_at(path, "cannot tell the format", lambda: read_rows(path))
    raises_at(tmp_path / "none.json", "file not found", lambda: read_rows(tmp_path / "none.json"))


def test_hf_source_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    raises_at("hf:facebook/Action100M-preview", "pip install datasets",
              lambda: read_rows("hf:facebook/Action100M-preview"))


def test_hf_source_reads_rows_through_load_dataset(monkeypatch):
    calls = []

    class FakeDataset:
        def to_list(self):
            return [{"video": "v1", "label": "a"}, {"label": "b"}]

    def load_dataset(repo, name=None, split=None):
        calls.append((repo, name, split))
        return FakeDataset()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert read_rows("hf:org/set:cfg@validation", ["label"])[1] == {"label": "b"}
    assert calls == [("org/set", "cfg", "validation")]
    raises_at("hf:org/set", "row 1: missing field 'video'", lambda: read_rows("hf:org/set", ["video"]))


def test_hf_load_failure_is_an_input_error_with_the_offline_hint(monkeypatch):
    def load_dataset(repo, name=None, split=None):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raises_at("hf:org/set", "ConnectionError: no network (offline mode", lambda: read_rows("hf:org/set"))


@pytest.mark.parametrize("spec", ["hf:", "hf:noslash", "hf:org/set:", "hf:org/set@", "hf:/set"])
def test_malformed_hf_specs(spec):
    raises_at(spec, "expected hf:owner/name", lambda: parse_hf_spec(spec))


def test_hf_spec_defaults_to_train_split():
    assert parse_hf_spec("hf:facebook/Action100M-preview") == ("facebook/Action100M-preview", None, "train")


def test_plain_text_lists_trim_lines_and_refuse_repeats(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("Pushing something\n\n  Pulling something \n")
    assert read_lines(path) == ["Pushing something", "Pulling something"]
    path.write_text("a\nb\na\n")
    raises_at(path, "line 3: repeats the class 'a' of line 1", lambda: read_lines(path, "class"))
