"""Reading InstrAct Bench annotation files in their released formats."""

from __future__ import annotations

import json

import pytest

from instract_eval.data.instract import read_dynamics, read_logic, read_semantic
from instract_eval.errors import InputError

SEMANTIC_ROW = {
    "caption": "whisk the eggs", "video_id": "abc123", "start": 12.5, "end": 16.0,
    "hard_negatives": [f"verb {i} the eggs" for i in range(9)],
}


def write(path, document):
    path.write_text(json.dumps(document))
    return path


def test_semantic_rows_put_the_positive_first(tmp_path):
    rows = read_semantic(write(tmp_path / "a.json", [SEMANTIC_ROW, {**SEMANTIC_ROW, "start": "1.5", "end": "1.5"}]))
    assert len(rows) == 2
    assert rows[0].candidates[0] == "whisk the eggs" and len(rows[0].candidates) == 10
    assert (rows[0].clip.video_id, rows[0].clip.start, rows[0].clip.end) == ("abc123", 12.5, 16.0)
    assert (rows[1].clip.start, rows[1].clip.end) == (1.5, 1.5)  # numeric strings, as the official reader


def test_logic_rows_keep_every_order_swapped_negative(tmp_path):
    row = {"caption": "cut then fry", "video_id": "v", "start": 0, "end": 9,
           "order_swapped_hn": ["fry then cut", "cut, fry", "fry and cut"]}
    (parsed,) = read_logic(write(tmp_path / "l.json", [row]))
    assert parsed.negatives == ("fry then cut", "cut, fry", "fry and cut")


def test_dynamics_pools_are_keyed_by_caption(tmp_path):
    pools = tmp_path / "InstrAct-Dynamics"
    pools.mkdir()
    write(pools / "egg.json", {
        "crack the egg": {"object": "egg", "video_id": "v1", "start": 1, "end": 4, "operation": ["crack"]},
        "beat the egg": {"object": "egg", "video_id": "v2", "start": 3, "end": 8, "operation": ["beat"]},
    })
    write(pools / "bread.json", {
        "slice the bread": {"object": "bread", "video_id": "v3", "start": 0, "end": 2, "operation": ["slice"]},
    })
    parsed = read_dynamics(pools)
    assert list(parsed) == ["bread", "egg"]
    assert [c.clip.caption for c in parsed["egg"]] == ["crack the egg", "beat the egg"]
    assert parsed["egg"][1].operations == ("beat",)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r.pop("video_id"), "row 0: missing key 'video_id'"),
    (lambda r: r.__setitem__("start", "soon"), "row 0.start: expected a time in seconds"),
    (lambda r: r.__setitem__("end", 1.0), "row 0.end: end 1.0 is before start 12.5"),
    (lambda r: r.__setitem__("start", -3), "row 0.start: negative start time"),
    (lambda r: r.__setitem__("hard_negatives", []), "row 0.hard_negatives: no negative captions"),
    (lambda r: r.__setitem__("hard_negatives", ["ok", 3]), "row 0.hard_negatives[1]: expected a non-empty string"),
    (lambda r: r.__setitem__("caption", ""), "row 0.caption: expected a non-empty string"),
])
def test_semantic_schema_errors_name_the_row_and_field(tmp_path, mutate, fragment):
    row = json.loads(json.dumps(SEMANTIC_ROW))
    mutate(row)
    path = write(tmp_path / "bad.json", [row])
    with pytest.raises(InputError) as error:
        read_semantic(path)
    assert str(error.value).startswith(str(path))
    assert fragment in str(error.value)


def test_dynamics_schema_errors(tmp_path):
    pools = tmp_path / "d"
    pools.mkdir()
    write(pools / "egg.json", {"crack the egg": {"object": "egg", "video_id": "v1", "start": 1, "end": 4}})
    with pytest.raises(InputError, match="'crack the egg': missing key 'operation'"):
        read_dynamics(pools)
    with pytest.raises(InputError, match="holds no"):
        read_dynamics(tmp_path / "d" / "..")  # a directory without pool files
