"""PAXION ActionBench files (Ego4D jsonl, SSv2 json) read into probe rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instract_eval.data.actionbench import (
    official_ego4d_text,
    probe_texts,
    read_ego4d,
    read_ssv2,
    video_path,
)
from instract_eval.errors import InputError

EGO4D_ROW = {
    "video_uid": "002d2729-df71-438d-8396-5895b349e8fd", "video_dur": 3571.4333333333334,
    "narration_source": "narration_pass_1", "narration_ind": 229, "narration_time": 592.6903,
    "clip_start": 592.3519665973915, "clip_end": 593.0286286452686,
    "clip_text": "#C C picks up the knife from the chopping board with her right hand.",
    "action_antonym_clip_text": "#C C drops down the knife from the chopping board with her right hand.",
    "tag_verb": "[17, 93]", "tag_noun": "[321, 268, 573, 105]", "Unnamed: 10": float("nan"),
    "clip_uid": "116ec16b-0d76-4e71-b02c-72cb37ebd5c5", "narration_relative_time": 0.6902999999999793,
    "clip_relative_start": 0.351966597391538, "clip_relative_end": 1.0286286452685545, "clip_fps": 30.0,
}
SSV2_ROW = {
    "label": "Spinning cube that quickly stops spinning",
    "template": "Spinning [something] that quickly stops spinning", "placeholders": ["cube"],
    "template_action_antonym_clip_text": "Spinning something that quickly starts spinning",
    "label_action_antonym_clip_text": "Spinning cube that quickly starts spinning",
    "id": 74225, "label_object_shuffled_clip_text": "spinning feeding lid that quickly stops spinning",
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))  # NaN written bare, as pandas did
    return path


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_ego4d_rows_carry_the_clip_window_and_both_texts(tmp_path):
    second = {**EGO4D_ROW, "clip_relative_start": 2.0, "clip_relative_end": 2.0}
    rows = read_ego4d(write_jsonl(tmp_path / "test.jsonl", [EGO4D_ROW, second]))
    first = rows[0]
    assert (first.source, first.where, first.video) == ("ego4d", "line 1", EGO4D_ROW["clip_uid"])
    assert (first.start, first.end) == (EGO4D_ROW["clip_relative_start"], EGO4D_ROW["clip_relative_end"])
    assert first.object_shuffled_text is None
    assert (rows[1].start, rows[1].end) == (2.0, 2.0)
    assert video_path(first, "/clips") == Path("/clips/116ec16b-0d76-4e71-b02c-72cb37ebd5c5.mp4")
    assert probe_texts(first, "aa") == ("c picks up the knife from the chopping board with her right hand",
                                        "c drops down the knife from the chopping board with her right hand")
    assert probe_texts(first, "vr") == ("c picks up the knife from the chopping board with her right hand",)
    with pytest.raises(ValueError, match="no text for probe 'or'"):
        probe_texts(first, "or")


def test_ego4d_object_shuffled_split(tmp_path):
    row = {**EGO4D_ROW, "object_shuffled_clip_text": "#C C picks up the banana from the chopping board."}
    (parsed,) = read_ego4d(write_jsonl(tmp_path / "or_test.jsonl", [row]), probes=("or",))
    assert probe_texts(parsed, "or")[1] == "c picks up the banana from the chopping board"


def test_ssv2_rows_use_the_label_texts_and_the_id_as_file_stem(tmp_path):
    rows = read_ssv2(write_json(tmp_path / "validation.json", [SSV2_ROW, {**SSV2_ROW, "id": "1002"}]))
    first = rows[0]
    assert (first.source, first.where, first.video, first.start, first.end) == ("ssv2", "row 0", "74225", None, None)
    assert rows[1].video == "1002"
    assert video_path(first, "ssv2") == Path("ssv2/74225.mp4")
    assert probe_texts(first, "aa") == ("Spinning cube that quickly stops spinning",
                                        "Spinning cube that quickly starts spinning")
    assert probe_texts(first, "or") == ("Spinning cube that quickly stops spinning",
                                        "spinning feeding lid that quickly stops spinning")


def test_ssv2_original_text_is_capitalized_as_the_official_reader_does(tmp_path):
    row = {**SSV2_ROW, "label": "putting Pen onto table"}
    (parsed,) = read_ssv2(write_json(tmp_path / "validation.json", [row]))
    assert parsed.text == "putting Pen onto table"
    assert probe_texts(parsed, "vr") == ("Putting pen onto table",)


@pytest.mark.parametrize("caption, expected", [
    ("#C C picks up the knife.", "c picks up the knife"),
    ("#C C moves the #unsure  to the left", "c moves something to the left"),
    ("#O a man X: holds a #unsure. #unsure", "a man x holds something"),
])
def test_official_ego4d_text(caption, expected):
    assert official_ego4d_text(caption) == expected


def test_official_ego4d_text_truncates_to_max_words():
    assert official_ego4d_text(" ".join(f"w{i}" for i in range(60))) == " ".join(f"w{i}" for i in range(50))


@pytest.mark.parametrize("mutate, probes, fragment", [
    (lambda r: r.pop("clip_uid"), ("aa",), "line 2: missing field 'clip_uid'"),
    (lambda r: r.pop("action_antonym_clip_text"), ("aa",), "line 2: missing field 'action_antonym_clip_text'"),
    (lambda r: None, ("or",), "line 1: missing field 'object_shuffled_clip_text'"),  # the AA file read for OR
    (lambda r: r.__setitem__("clip_relative_start", "0.35"), ("aa",),
     "line 2.clip_relative_start: expected a number, got the string '0.35'"),
    (lambda r: r.__setitem__("clip_relative_end", 0.1), ("aa",),
     "line 2.clip_relative_end: clip_relative_end 0.1 is before clip_relative_start"),
    (lambda r: r.__setitem__("clip_relative_end", float("nan")), ("vr",),
     "line 2.clip_relative_end: expected a finite"),
    (lambda r: r.__setitem__("clip_text", ""), ("vr",), "line 2.clip_text: expected a non-empty string"),
    (lambda r: r.__setitem__("clip_uid", 7), ("vr",), "line 2.clip_uid: expected a non-empty string"),
    (lambda r: r.__setitem__("action_antonym_clip_text", None), ("aa",), "line 2.action_antonym_clip_text: is null"),
])
def test_ego4d_schema_errors_name_the_line_and_field(tmp_path, mutate, probes, fragment):
    row = dict(EGO4D_ROW)
    mutate(row)
    path = write_jsonl(tmp_path / "bad.jsonl", [EGO4D_ROW, row])
    with pytest.raises(InputError) as error:
        read_ego4d(path, probes=probes)
    assert str(error.value).startswith(str(path))
    assert fragment in str(error.value), str(error.value)


def test_ego4d_bad_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(EGO4D_ROW) + "\n" + json.dumps(EGO4D_ROW)[:-5] + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl: line 2: not valid JSON"):
        read_ego4d(path)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r.pop("label"), "row 1: missing field 'label'"),
    (lambda r: r.pop("label_object_shuffled_clip_text"), "row 1: missing field 'label_object_shuffled_clip_text'"),
    (lambda r: r.__setitem__("id", "74a"), "row 1.id: expected a video id"),
    (lambda r: r.__setitem__("id", True), "row 1.id: expected a video id"),
    (lambda r: r.__setitem__("id", -4), "row 1.id: expected a video id"),
    (lambda r: r.__setitem__("id", 74225), "row 1.id: repeats id 74225 of row 0"),
    (lambda r: r.__setitem__("label_action_antonym_clip_text", ["x"]),
     "row 1.label_action_antonym_clip_text: expected"),
])
def test_ssv2_schema_errors_name_the_row_and_field(tmp_path, mutate, fragment):
    row = {**SSV2_ROW, "id": 5}
    mutate(row)
    path = write_json(tmp_path / "validation.json", [SSV2_ROW, row])
    with pytest.raises(InputError) as error:
        read_ssv2(path)
    assert str(error.value).startswith(str(path))
    assert fragment in str(error.value), str(error.value)


def test_ssv2_train_split_without_altered_texts_reads_for_vr_only(tmp_path):
    row = {"id": "3", "label": "Pushing something", "template": "Pushing [something]", "placeholders": []}
    path = write_json(tmp_path / "train.json", [row])
    assert read_ssv2(path, probes=("vr",))[0].antonym_text is None
    with pytest.raises(InputError, match="missing field 'label_action_antonym_clip_text'"):
        read_ssv2(path)


def test_unknown_probe_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown ActionBench probe"):
        read_ego4d(tmp_path / "x.jsonl", probes=("reverse",))
