"""Action100M Parquet rows: the caption tree validated, captions picked for zero-shot tasks."""

from __future__ import annotations

import copy

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instract_eval.data.action100m import (
    caption_vocabulary,
    iter_videos,
    read_videos,
    select_captions,
)
from instract_eval.errors import InputError

GPT = pa.struct([
    ("summary", pa.struct([("brief", pa.string()), ("detailed", pa.string())])),
    ("action", pa.struct([("brief", pa.string()), ("detailed", pa.string()), ("actor", pa.string())])),
])
NODE = pa.struct([
    ("node_id", pa.string()), ("parent_id", pa.string()), ("level", pa.int16()),
    ("start", pa.float32()), ("end", pa.float32()), ("plm_action", pa.string()), ("plm_caption", pa.string()),
    ("llama3_caption", pa.string()), ("gpt", GPT),
])
SCHEMA = pa.schema([
    ("video_uid", pa.string()),
    ("metadata", pa.struct([("title", pa.string()), ("duration", pa.int64())])),
    ("nodes", pa.list_(NODE)),
])


def node(node_id, parent, level, start, end, action=None, leaf_caption=None):
    gpt = None if action is None else {"summary": {"brief": f"{action} (brief)", "detailed": "..."},
                                       "action": {"brief": action, "detailed": "...", "actor": "a cook"}}
    return {"node_id": node_id, "parent_id": parent, "level": level, "start": start, "end": end,
            "plm_action": f"plm {node_id}", "plm_caption": f"caption {node_id}", "llama3_caption": leaf_caption,
            "gpt": gpt}


def video(uid="vid1"):
    """root (0-16 s) -> a (0-8 s, 'Crack eggs') -> a1, a2 (leaves); root -> b (8-16 s, 'N/A') -> b1, b2."""
    return {"video_uid": uid, "metadata": {"title": "Omelette", "duration": 16}, "nodes": [
        node("root", None, 0, 0.0, 16.0, "Make an omelette"),
        node("a", "root", 1, 0.0, 8.0, "Crack eggs"),
        node("a1", "a", 2, 0.0, 4.0, leaf_caption="a hand holds an egg"),
        node("a2", "a", 2, 4.0, 8.0, leaf_caption="eggs in a bowl"),
        node("b", "root", 1, 8.0, 16.0, "N/A"),
        node("b1", "b", 2, 8.0, 12.5, leaf_caption="a pan"),
        node("b2", "b", 2, 12.5, 16.0, leaf_caption="a plate"),
    ]}


def write(path, rows, schema=SCHEMA):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_reads_the_tree_and_its_helpers(tmp_path):
    (parsed,) = read_videos(write(tmp_path / "a.parquet", [video()]), metadata=True)
    assert parsed.video_uid == "vid1" and parsed.metadata == {"title": "Omelette", "duration": 16}
    assert parsed.root.node_id == "root"
    assert [n.node_id for n in parsed.children("a")] == ["a1", "a2"]
    assert [n.node_id for n in parsed.leaves()] == ["a1", "a2", "b1", "b2"]
    assert [n.node_id for n in parsed.at_level(1)] == ["a", "b"]
    b1 = parsed.nodes[5]
    assert (b1.start, b1.end, b1.level) == (8.0, 12.5, 2)
    assert parsed.nodes[1].caption("gpt.action.actor") == "a cook"
    assert parsed.nodes[2].caption("gpt.action.brief") is None
    assert read_videos(tmp_path / "a.parquet")[0].metadata is None


def test_select_captions_by_finest_leaves_level_and_all(tmp_path):
    videos = read_videos(write(tmp_path / "a.parquet", [video()]))
    finest = select_captions(videos, "gpt.action.brief", "finest")
    # 'b' says 'N/A' (no action), so only 'a' is a candidate
    assert [(s.node_id, s.text, s.start, s.end) for s in finest] == [("a", "Crack eggs", 0.0, 8.0)]
    assert [s.node_id for s in select_captions(videos, "gpt.action.brief", "finest", no_action=())] == ["a", "b"]
    assert select_captions(videos, "gpt.action.brief", "leaves") == []
    assert [s.text for s in select_captions(videos, "llama3_caption", "leaves", min_duration=4.0)] == [
        "a hand holds an egg", "eggs in a bowl", "a pan"]
    assert [s.node_id for s in select_captions(videos, "plm_action", 1)] == ["a", "b"]
    assert len(select_captions(videos, "plm_caption", "all")) == 7
    assert caption_vocabulary(select_captions(videos, "gpt.action.brief", "all")) == ("Crack eggs", "Make an omelette")
    with pytest.raises(ValueError, match="unknown caption field"):
        select_captions(videos, "gpt.brief")


def test_directory_of_shards_is_read_in_order(tmp_path):
    write(tmp_path / "part-1.parquet", [video("v2")])
    write(tmp_path / "part-0.parquet", [video("v0"), video("v1")])
    assert [v.video_uid for v in iter_videos(tmp_path, batch_size=1)] == ["v0", "v1", "v2"]


def broken(edit):
    row = copy.deepcopy(video())
    edit(row)
    return row


@pytest.mark.parametrize("row, fragment", [
    (broken(lambda r: r["nodes"][3].__setitem__("node_id", "a1")), "row 1.nodes[3].node_id: node_id 'a1' repeats"),
    (broken(lambda r: r["nodes"][4].__setitem__("parent_id", "zz")),
     "row 1.nodes[4].parent_id: parent 'zz' is not a node of video 'vid1'"),
    (broken(lambda r: r["nodes"][4].__setitem__("parent_id", None)),
     "row 1.nodes: video 'vid1' must have exactly one root"),
    (broken(lambda r: r["nodes"][4].__setitem__("parent_id", "b1")),
     "row 1.nodes[4].parent_id: node 'b' is on a parent cycle"),
    (broken(lambda r: r["nodes"][2].__setitem__("end", -1.0)), "row 1.nodes[2].end: end -1.0 is before start 0.0"),
    (broken(lambda r: r["nodes"][2].__setitem__("start", -2.0)), "row 1.nodes[2].start: negative start time"),
    (broken(lambda r: r["nodes"][2].__setitem__("start", float("nan"))), "row 1.nodes[2].start: expected a finite"),
    (broken(lambda r: r["nodes"][2].__setitem__("level", -1)), "row 1.nodes[2].level: expected a non-negative"),
    (broken(lambda r: r["nodes"][2].__setitem__("plm_caption", "")),
     "row 1.nodes[2].plm_caption: expected a non-empty"),
    (broken(lambda r: r["nodes"][1]["gpt"]["action"].__setitem__("brief", "")),
     "row 1.nodes[1].gpt.action.brief: expected a non-empty string"),
    (broken(lambda r: r["nodes"][1].__setitem__("node_id", None)), "row 1.nodes[1].node_id: expected a non-empty"),
    (broken(lambda r: r.__setitem__("nodes", [])), "row 1.nodes: video 'vid1' has no nodes"),
    (broken(lambda r: r.__setitem__("video_uid", "v0")), "row 1.video_uid: repeats video_uid 'v0' of a.parquet row 0"),
])
def test_tree_errors_name_the_file_row_and_node(tmp_path, row, fragment):
    path = write(tmp_path / "a.parquet", [video("v0"), row])
    with pytest.raises(InputError) as error:
        read_videos(path)
    assert str(error.value).startswith(str(path))
    assert fragment in str(error.value), str(error.value)


def test_wrong_column_types_and_missing_fields(tmp_path):
    rows = [video()]
    for n in rows[0]["nodes"]:
        n["level"] = str(n["level"])
    path = tmp_path / "levels.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError, match=r"levels\.parquet: row 0\.nodes\[0\]\.level: expected a non-negative integer"):
        read_videos(path)
    rows = [video()]
    for n in rows[0]["nodes"]:
        del n["llama3_caption"]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError, match=r"row 0\.nodes\[0\]: missing key 'llama3_caption'"):
        read_videos(path)
    pq.write_table(pa.Table.from_pylist([{"video_uid": "v", "tree": []}]), path)
    with pytest.raises(InputError, match=r"levels\.parquet: missing column 'nodes'"):
        read_videos(path)
