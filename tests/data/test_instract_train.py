"""The official InstrAct training annotation format: what is read, and each error's one line."""

from __future__ import annotations

import copy
import json

import pytest

from instract_eval.data.instract_train import MaskCandidate, read_training_annotations
from instract_eval.errors import InputError

CAPTION = "crack the egg and whisk it in the bowl"
# model/README.md's example item (char_end exclusive: CAPTION[18:23] == "whisk").
ENTRY = {
    "video_id": "abc123", "start": 12.4, "end": 19.8,
    "verb_phrases": ["crack egg", "whisk in bowl"],
    "hard_negatives": ["peel the egg and whisk it in the bowl", "crack the egg and pour it in the bowl"],
    "order_swapped_hn": ["whisk the egg in the bowl and then crack it"],
    "mam_mask_candidates": [
        {"word": "crack", "char_start": 0, "char_end": 5, "phrase": "crack egg", "method": "verb"},
        {"word": "whisk", "char_start": 18, "char_end": 23, "phrase": "whisk in bowl", "method": "verb"},
    ],
}


def write(path, document):
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def test_the_readme_example_reads_with_every_field(tmp_path):
    (item,) = read_training_annotations(write(tmp_path / "t.json", {CAPTION: ENTRY}))
    assert (item.caption, item.video_id, item.start, item.end, item.group) == (CAPTION, "abc123", 12.4, 19.8, 0)
    assert item.verb_phrases == ("crack egg", "whisk in bowl")
    assert item.order_swapped_hn == ("whisk the egg in the bowl and then crack it",)
    assert len(item.hard_negatives) == 2
    assert item.mam_mask_candidates[1] == MaskCandidate("whisk", 18, 23, "whisk in bowl", "verb")
    assert item.source == str(tmp_path / "t.json")


def test_groups_number_videos_in_order_of_first_appearance(tmp_path):
    document = {
        "a one": {**ENTRY, "video_id": "v9", "mam_mask_candidates": []},
        "b two": {**ENTRY, "video_id": "v3", "mam_mask_candidates": []},
        "c three": {**ENTRY, "video_id": "v9", "mam_mask_candidates": []},
        "d four": {**ENTRY, "video_id": "v1", "mam_mask_candidates": []},
    }
    items = read_training_annotations(write(tmp_path / "t.json", document))
    assert [(i.caption, i.group) for i in items] == [("a one", 0), ("b two", 1), ("c three", 0), ("d four", 2)]


def test_optional_fields_default_as_in_the_official_loader(tmp_path):
    """``info.get(name) or []`` for the lists, ``info.get("start", 0.0)``, phrase/method ``""``."""
    entry = {"video_id": "v", "end": "7.5", "verb_phrases": None,
             "mam_mask_candidates": [{"word": "stir", "char_start": 0, "char_end": 4}]}
    (item,) = read_training_annotations(write(tmp_path / "t.json", {"stir the soup": entry}))
    assert (item.start, item.end) == (0.0, 7.5)  # numeric strings convert, as with float()
    assert item.verb_phrases == item.hard_negatives == item.order_swapped_hn == ()
    assert item.mam_mask_candidates == (MaskCandidate("stir", 0, 4, "", ""),)


def test_list_entries_are_stripped_like_clean_strings(tmp_path):
    entry = {**ENTRY, "verb_phrases": ["  crack egg ", "whisk\n"]}
    (item,) = read_training_annotations(write(tmp_path / "t.json", {CAPTION: entry}))
    assert item.verb_phrases == ("crack egg", "whisk")


def _set(key, value):
    return lambda e: e.__setitem__(key, value)


def _candidate(key, value, index=1):
    return lambda e: e["mam_mask_candidates"][index].__setitem__(key, value)


ROW = repr(CAPTION)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda e: e.pop("video_id"), f"{ROW}: missing key 'video_id'"),
    (_set("video_id", 7), f"{ROW}.video_id: expected a non-empty string, got the number 7"),
    (lambda e: e.pop("end"), f"{ROW}: missing key 'end'"),
    (_set("start", "soon"), f"{ROW}.start: expected a time in seconds, got the string 'soon'"),
    (_set("start", [1]), f"{ROW}.start: expected a number, got a list"),
    (_set("start", -1.0), f"{ROW}.start: negative start time -1"),
    (_set("end", 12.4), f"{ROW}.end: end 12.4 is not after start 12.4"),
    (_set("end", 3), f"{ROW}.end: end 3 is not after start 12.4"),
    (_set("verb_phrases", "crack egg"), f"{ROW}.verb_phrases: expected a list, got the string 'crack egg'"),
    (_set("hard_negatives", ["ok", 3]), f"{ROW}.hard_negatives[1]: expected a non-empty string, got the number 3"),
    (_set("order_swapped_hn", ["  "]), f"{ROW}.order_swapped_hn[0]: blank string"),
    (_set("mam_mask_candidates", {}), f"{ROW}.mam_mask_candidates: expected a list, got an object"),
    (_set("mam_mask_candidates", ["whisk"]), f"{ROW}.mam_mask_candidates[0]: expected an object"),
    (lambda e: e["mam_mask_candidates"][1].pop("char_end"), f"{ROW}.mam_mask_candidates[1]: missing key 'char_end'"),
    (_candidate("char_start", "18"), f"{ROW}.mam_mask_candidates[1].char_start: expected an integer character offset"),
    (_candidate("char_end", 23.0), f"{ROW}.mam_mask_candidates[1].char_end: expected an integer character offset"),
    (_candidate("char_start", True), f"{ROW}.mam_mask_candidates[1].char_start: expected an integer"),
    (_candidate("char_start", -2), f"{ROW}.mam_mask_candidates[1].char_start: negative character offset -2"),
    (_candidate("char_end", 18), f"{ROW}.mam_mask_candidates[1].char_end: char_end 18 is not after char_start 18"),
    (_candidate("char_end", 99), f"{ROW}.mam_mask_candidates[1].char_end: char_end 99 is past the caption's 38"),
    (_candidate("char_start", 17), f"{ROW}.mam_mask_candidates[1]: caption[17:23] is ' whisk', not the word 'whisk'"),
    (_candidate("word", "Whisk"), f"{ROW}.mam_mask_candidates[1]: caption[18:23] is 'whisk', not the word 'Whisk'"),
    (_candidate("word", ""), f"{ROW}.mam_mask_candidates[1].word: expected a non-empty string"),
    (_candidate("phrase", 5), f"{ROW}.mam_mask_candidates[1].phrase: expected a string, got int"),
])
def test_each_schema_error_is_one_line_naming_file_caption_and_field(tmp_path, mutate, fragment):
    entry = copy.deepcopy(ENTRY)
    mutate(entry)
    path = write(tmp_path / "bad.json", {"fine caption": {**ENTRY, "mam_mask_candidates": []}, CAPTION: entry})
    with pytest.raises(InputError) as error:
        read_training_annotations(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert fragment in message


def test_a_caption_twice_in_the_object_is_an_error_not_a_lost_item(tmp_path):
    entry = json.dumps(ENTRY)
    path = write(tmp_path / "dup.json", f'{{"{CAPTION}": {entry}, "other": {entry}, "{CAPTION}": {entry}}}')
    assert json.loads(path.read_text()).keys() == {CAPTION, "other"}  # what json alone would do
    with pytest.raises(InputError, match=f"top level: caption '{CAPTION}' occurs more than once"):
        read_training_annotations(path)


def test_duplicate_keys_inside_an_entry_or_candidate_are_errors(tmp_path):
    path = write(tmp_path / "dup.json", '{"stir it": {"video_id": "a", "end": 4, "video_id": "b"}}')
    with pytest.raises(InputError, match=r"'stir it': key 'video_id' occurs more than once"):
        read_training_annotations(path)
    path = write(tmp_path / "dup2.json", '{"stir it": {"video_id": "a", "end": 4, "mam_mask_candidates": '
                                         '[{"word": "stir", "char_start": 0, "char_end": 4, "char_end": 2}]}}')
    with pytest.raises(InputError, match=r"'stir it'.mam_mask_candidates\[0\]: key 'char_end' occurs more than once"):
        read_training_annotations(path)


@pytest.mark.parametrize("text, fragment", [
    ("[]", "top level: expected an object, got a list"),
    ("{}", "top level: has no training items"),
    ('{"a": 1}', "'a': expected an object, got the number 1"),
    ('{"  ": {"video_id": "v", "end": 3}}', "'  ': blank caption key"),
    ('{"a": {', "not valid JSON"),
])
def test_document_level_errors(tmp_path, text, fragment):
    path = write(tmp_path / "bad.json", text)
    with pytest.raises(InputError) as error:
        read_training_annotations(path)
    assert str(error.value).startswith(str(path)) and fragment in str(error.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_training_annotations(tmp_path / "absent.json")
