"""Clip lists of the zero-shot protocols: labelled and captioned rows, class lists, video paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instract_eval.data.cliplist import (
    clip_video_path,
    read_captioned_clips,
    read_class_names,
    read_labelled_clips,
)
from instract_eval.errors import InputError


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_labelled_rows_in_jsonl_and_csv(tmp_path):
    (tmp_path / "classes.txt").write_text("Putting something on a surface\n\nPushing something\n")
    classes = read_class_names(tmp_path / "classes.txt")
    assert classes == ["Putting something on a surface", "Pushing something"]
    clips = read_labelled_clips(jsonl(tmp_path / "val.jsonl", [
        {"video": "74225", "label": "Pushing something"},
        {"video": "1", "start": 1.5, "end": 3, "label": "Putting something on a surface"},
    ]), classes)
    assert [(c.video, c.start, c.end, c.label, c.where) for c in clips] == [
        ("74225", None, None, "Pushing something", "line 1"),
        ("1", 1.5, 3.0, "Putting something on a surface", "line 2")]
    (tmp_path / "val.csv").write_text("video,start,end,label\n74225,,,Pushing something\n2,0.5,1.0,Pushing something\n")
    clips = read_labelled_clips(tmp_path / "val.csv", classes)
    assert [(c.start, c.end) for c in clips] == [(None, None), (0.5, 1.0)]


@pytest.mark.parametrize("row, message", [
    ({"video": "1", "label": "Jumping"}, r"line 1\.label: unknown class 'Jumping'"),
    ({"video": "1", "start": 2.0, "label": "Pushing"}, r"line 1\.end: has start but no end"),
    ({"video": "1", "start": 2.0, "end": 1.0, "label": "Pushing"}, r"line 1\.end: end 1\.0 is before start 2\.0"),
    ({"label": "Pushing"}, r"line 1: missing field 'video'"),
    ({"video": "", "label": "Pushing"}, r"line 1\.video"),
])
def test_labelled_row_errors_name_the_file_row_and_field(tmp_path, row, message):
    with pytest.raises(InputError, match=message) as error:
        read_labelled_clips(jsonl(tmp_path / "val.jsonl", [row]), ["Pushing"])
    assert str(tmp_path / "val.jsonl") in str(error.value)


def test_class_lists_refuse_repeats_and_emptiness(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(InputError, match=r"line 3: repeats the class 'a' of line 1"):
        read_class_names(tmp_path / "classes.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        read_class_names(tmp_path / "empty.txt")


def test_captioned_rows_allow_several_captions_per_video(tmp_path):
    clips = read_captioned_clips(jsonl(tmp_path / "test.jsonl", [
        {"video": "video7020", "caption": "a woman is slicing an onion"},
        {"video": "video7020", "caption": "someone cuts an onion"},
    ]))
    assert [c.video for c in clips] == ["video7020", "video7020"]
    with pytest.raises(InputError, match=r"line 1: missing field 'caption'"):
        read_captioned_clips(jsonl(tmp_path / "bad.jsonl", [{"video": "v"}]))


def test_video_paths_add_mp4_only_when_the_name_has_no_suffix(tmp_path):
    assert clip_video_path(tmp_path, "v1") == tmp_path / "v1.mp4"
    assert clip_video_path(tmp_path, "v1.webm") == tmp_path / "v1.webm"
    assert clip_video_path(tmp_path, "sub/v2") == tmp_path / "sub" / "v2.mp4"


def test_a_misspelt_label_names_the_class_list_and_the_closest_classes(tmp_path):
    """Issue 12, item 3: an unknown label is refused with the file that declares the classes."""
    classes = ["Pushing something", "Pulling something"]
    path = jsonl(tmp_path / "val.jsonl", [{"video": "1", "label": "Pushing something"},
                                          {"video": "2", "label": "Pushign something"}])
    with pytest.raises(InputError) as error:
        read_labelled_clips(path, classes, class_list="classes.txt")
    assert str(error.value) == (f"{path}: line 2.label: unknown class 'Pushign something' (not in the class list "
                                "classes.txt); did you mean 'Pushing something' or 'Pulling something'?")
    valid = jsonl(tmp_path / "ok.jsonl", [{"video": "1", "label": "Pulling something"}])
    assert [clip.label for clip in read_labelled_clips(valid, classes)] == ["Pulling something"]
