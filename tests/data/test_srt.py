"""Synonym Robustness Test: the packaged synonym table, class lists and clip files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from instract_eval.data.srt import (
    label_set,
    load_synonym_tables,
    read_class_list,
    read_clips,
    read_task,
    synonym_children,
    synonym_table,
)
from instract_eval.errors import InputError

# Made-up seen classes: the synonym table lists only the unseen ones.
ATA_SEEN = ["screw bolt", "insert pin", "attach wheel", "remove wheel", "place block",
            "stack block", "unscrew bolt", "push car", "pull car", "connect part"]
ATA_UNSEEN = ["drop item", "balance part", "pick up item", "spin block", "hammer pin"]


def write_class_csv(path: Path, seen=ATA_SEEN, unseen=ATA_UNSEEN, synonyms=None) -> Path:
    synonyms = synonyms or {}
    lines = ["label,split,synonyms"]
    lines += [f"{label},seen,{'|'.join(synonyms.get(label, []))}" for label in seen]
    lines += [f"{label},unseen,{'|'.join(synonyms.get(label, []))}" for label in unseen]
    path.write_text("\n".join(lines) + "\n")
    return path


def error_text(call) -> str:
    with pytest.raises(InputError) as error:
        call()
    return str(error.value)


def test_packaged_table_holds_the_three_datasets_with_ten_runs():
    tables = load_synonym_tables()
    assert list(tables) == ["ata", "ikea", "gtea"]
    counts = {key: (t.num_classes, t.num_seen, t.num_unseen, len(t.unseen), t.num_runs) for key, t in tables.items()}
    assert counts == {"ata": (15, 10, 5, 5, 10), "ikea": (31, 21, 10, 10, 10), "gtea": (10, 6, 4, 4, 10)}
    ata = synonym_table("ata")
    assert ata.roots == tuple(ATA_UNSEEN)
    assert ata.run_labels(1) == {root: root for root in ATA_UNSEEN}
    assert ata.run_labels(3)["drop item"] == "set down item"  # an OCR repair recorded in the table
    assert ata.action("spin block").label(7) == "rotate block"
    assert (ata.frames_per_clip, ata.clip_seconds, ata.synonym_children) == (30, 3, 11)
    assert synonym_table("gtea").placeholder_object == "ingredient"
    assert synonym_table("ikea").action("lay down shelf").synonyms == (
        "lay down shelf", "set down shelf", "position down shelf", "put down shelf", "place down shelf")


def test_class_list_label_sets_per_run_and_synonym_children(tmp_path):
    path = write_class_csv(tmp_path / "classes.csv", synonyms={"screw bolt": ["screw bolt", "tighten bolt"]})
    classes = read_class_list(path, dataset="ata")
    assert classes.labels("seen") == tuple(ATA_SEEN)
    assert label_set(classes, "unseen") == tuple(ATA_UNSEEN)
    assert label_set(classes, "unseen", run=2) == (
        "leave item", "stabilize part", "clutch item", "wheel block", "whack pin")
    assert label_set(classes, "seen", run=2) == tuple(ATA_SEEN)
    assert synonym_children(classes, "screw bolt") == ("screw bolt", "tighten bolt")
    assert synonym_children(classes, "push car") == ("push car",)
    assert synonym_children(classes, "hammer pin")[:3] == ("hammer pin", "whack pin", "nail pin")
    with pytest.raises(ValueError, match="run must be 1..10"):
        label_set(classes, "unseen", run=11)


def test_class_list_without_dataset_has_default_labels_only(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps([{"label": "cut", "split": "seen", "synonyms": ["cut", "slice"]},
                                {"label": "pour", "split": "unseen"}]))
    classes = read_class_list(path)
    assert synonym_children(classes, "cut") == ("cut", "slice")
    assert synonym_children(classes, "pour") == ("pour",)
    assert label_set(classes, "unseen", run=1) == ("pour",)
    with pytest.raises(ValueError, match="without dataset="):
        label_set(classes, "unseen", run=2)


def test_clips_with_and_without_times(tmp_path):
    classes = read_class_list(write_class_csv(tmp_path / "classes.csv"), dataset="ata")
    path = tmp_path / "clips.csv"
    path.write_text("video,start,end,label\nP01_0001,1.5,4.5,spin block\nP01_0002,,,screw bolt\n")
    clips = read_clips(path, classes)
    assert [(c.where, c.video, c.start, c.end, c.label, c.split) for c in clips] == [
        ("line 2", "P01_0001", 1.5, 4.5, "spin block", "unseen"),
        ("line 3", "P01_0002", None, None, "screw bolt", "seen"),
    ]
    jsonl = tmp_path / "clips.jsonl"
    jsonl.write_text(json.dumps({"video": "v", "start": 0, "end": 3, "label": "drop item"}) + "\n")
    assert read_clips(jsonl, classes)[0].end == 3.0


@pytest.mark.parametrize("row, fragment", [
    ("v1,1,2,fly kite", "line 3.label: unknown class 'fly kite'"),
    ("v1,3,2,spin block", "line 3.end: end 2.0 is before start 3.0"),
    ("v1,-1,2,spin block", "line 3.start: negative start time"),
    ("v1,soon,2,spin block", "line 3.start: expected a time in seconds, got the string 'soon'"),
    ("v1,nan,2,spin block", "line 3.start: expected a finite number"),
    ("v1,1,,spin block", "line 3.end: has start but no end"),
    (",1,2,spin block", "line 3.video: empty cell"),
    ("v1,1,2", "line 3: has 3 cells, the header has 4"),
])
def test_clip_errors_name_the_line_and_field(tmp_path, row, fragment):
    classes = read_class_list(write_class_csv(tmp_path / "classes.csv"), dataset="ata")
    path = tmp_path / "clips.csv"
    path.write_text(f"video,start,end,label\nv0,0,1,drop item\n{row}\n")
    message = error_text(lambda: read_clips(path, classes))
    assert message.startswith(str(path)) and fragment in message, message


@pytest.mark.parametrize("edit, fragment", [
    (lambda s, u: (s, [*u[:-1], "fly kite"]), "line 16.label: unseen class 'fly kite' is not in the ata synonym table"),
    (lambda s, u: (s, u[:-1]), "misses the ata unseen class(es) hammer pin"),
    (lambda s, u: ([*s, "spin block"], [x for x in u if x != "spin block"]),
     "line 12.split: 'spin block' is listed as seen"),
    (lambda s, u: ([*s, "push car"], u), "line 12.label: repeats class 'push car' of line 9"),
    (lambda s, u: (s, []), "has no unseen classes"),
])
def test_class_list_errors(tmp_path, edit, fragment):
    seen, unseen = edit(list(ATA_SEEN), list(ATA_UNSEEN))
    path = write_class_csv(tmp_path / "classes.csv", seen=seen, unseen=unseen)
    message = error_text(lambda: read_class_list(path, dataset="ata"))
    assert message.startswith(str(path)) and fragment in message, message


@pytest.mark.parametrize("rows, fragment", [
    ([{"label": "cut", "split": "train"}], "row 0.split: expected 'seen' or 'unseen', got 'train'"),
    ([{"label": "cut"}], "row 0: missing field 'split'"),
    ([{"label": "cut", "split": "seen", "synonyms": "cut|slice"}], "row 0.synonyms: expected a list"),
    ([{"label": "cut", "split": "seen", "synonyms": []}], "row 0.synonyms: empty synonym list"),
    ([{"label": "cut", "split": "seen", "synonyms": ["cut", 3]}], "row 0.synonyms[1]: expected a non-empty string"),
])
def test_json_class_list_errors(tmp_path, rows, fragment):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(rows + [{"label": "pour", "split": "unseen"}]))
    message = error_text(lambda: read_class_list(path))
    assert message.startswith(str(path)) and fragment in message, message


def packaged_document() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "instract_eval" / "data" / "resources"
                           / "srt_synonyms.yaml").read_text())


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["datasets"]["ata"]["unseen_actions"][2]["runs"].pop(),
     "datasets.ata.unseen_actions[2].runs: expected 10 run labels"),
    (lambda d: d["datasets"]["ikea"]["unseen_actions"][0]["runs"].__setitem__(0, "put down shelf"),
     "datasets.ikea.unseen_actions[0].runs[0]: run 1 must be the root label"),
    (lambda d: d["datasets"]["gtea"]["unseen_actions"][1]["runs"].__setitem__(4, None),
     "datasets.gtea.unseen_actions[1].runs[4]: expected a non-empty string"),
    (lambda d: d["datasets"]["gtea"]["unseen_actions"].pop(), "datasets.gtea.unseen_actions: lists 3 unseen actions"),
    (lambda d: d["datasets"]["ata"].__setitem__("num_classes", 16), "datasets.ata: num_base_classes 10"),
    (lambda d: d["datasets"]["ata"].pop("frames_per_clip"), "datasets.ata: missing key 'frames_per_clip'"),
    (lambda d: d["protocol"].__setitem__("runs", "ten"), "protocol.runs: expected a positive integer"),
])
def test_synonym_table_errors_name_the_field(tmp_path, edit, fragment):
    document = packaged_document()
    edit(document)
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(document))
    message = error_text(lambda: load_synonym_tables(path))
    assert message.startswith(str(path)) and fragment in message, message


def test_synonym_table_bad_yaml(tmp_path):
    path = tmp_path / "table.yaml"
    path.write_text("datasets: [unclosed\n")
    assert "not valid YAML" in error_text(lambda: load_synonym_tables(path))


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="unknown SRT dataset 'epic'"):
        synonym_table("epic")


def test_task_without_class_list_derives_classes_from_table_and_clips(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [{"video": f"v{i}", "start": 0, "end": 3, "label": label} for i, label in enumerate(ATA_SEEN + ATA_UNSEEN)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    classes, clips = read_task(path, "ata")
    assert classes.labels("seen") == tuple(ATA_SEEN) and classes.labels("unseen") == tuple(ATA_UNSEEN)
    assert [c.split for c in clips] == ["seen"] * 10 + ["unseen"] * 5
    listed, _ = read_task(path, "ata", classes=write_class_csv(tmp_path / "classes.csv"))
    assert listed.path.endswith("classes.csv")


def test_task_with_a_misspelt_unseen_label_is_refused(tmp_path):
    path = tmp_path / "test.jsonl"
    labels = ATA_SEEN + ["spin blok"]
    path.write_text("".join(json.dumps({"video": "v", "label": label}) + "\n" for label in labels))
    message = error_text(lambda: read_task(path, "ata"))
    assert message == (f"{path}: line 11.label: unknown class 'spin blok' (the clips name 11 seen classes, "
                       "the ata table has 10); did you mean 'spin block'?")
    path.write_text("".join(json.dumps({"video": "v", "label": label}) + "\n" for label in ATA_SEEN[:-1]))
    assert error_text(lambda: read_task(path, "ata")) == (
        f"{path}: the clips name 9 seen classes, the ata table has 10: give a class list file")


# --- issue 12, item 3: a label that is not a class of its split is refused, not scored ----------

def swap_letters(label: str) -> str:
    """A plausible typo: the second and third letters swapped ("move down" -> "mvoe down")."""
    return label[0] + label[2] + label[1] + label[3:]


def synth_srt_copy(world: Path, tmp_path: Path, misspell_line: int | None = None) -> tuple[Path, str]:
    """The tiny world's SRT test list (optionally with one seen label misspelt) and that label."""
    table = load_synonym_tables(world / "srt" / "classes.yaml")["synth"]
    rows = [json.loads(line) for line in (world / "srt" / "test.jsonl").read_text().splitlines()]
    seen_lines = [i for i, row in enumerate(rows, start=1) if row["label"] not in table.roots]
    line = seen_lines[0] if misspell_line is None else misspell_line
    label = rows[line - 1]["label"]
    if misspell_line is not None:
        rows[line - 1]["label"] = swap_letters(label)
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, label


def test_synth_srt_list_with_a_misspelt_seen_label_is_refused_naming_file_and_row(world, tmp_path):
    table = load_synonym_tables(world / "srt" / "classes.yaml")["synth"]
    valid, _ = synth_srt_copy(world, tmp_path)
    classes, clips = read_task(valid, table)
    assert len(classes.labels("seen")) == table.num_seen and len(clips) == 12
    # In the tiny world each class has one test clip, so a typo keeps the seen count at 8: only the
    # table's list of seen classes can tell it from a real class.
    path, label = synth_srt_copy(world, tmp_path, misspell_line=1)
    message = error_text(lambda: read_task(path, table))
    assert message == (f"{path}: line 1.label: unknown class '{swap_letters(label)}' (not in the synth synonym "
                       f"table); did you mean '{label}'?")


def test_class_list_must_hold_the_seen_classes_a_table_lists(world, tmp_path):
    table = load_synonym_tables(world / "srt" / "classes.yaml")["synth"]
    seen = [action.root for action in table.seen]
    good = read_class_list(write_class_csv(tmp_path / "good.csv", seen=seen, unseen=table.roots), dataset=table)
    assert good.labels("seen") == tuple(seen)
    typo = write_class_csv(tmp_path / "typo.csv", seen=[swap_letters(seen[0]), *seen[1:]], unseen=table.roots)
    message = error_text(lambda: read_class_list(typo, dataset=table))
    assert message == (f"{typo}: line 2.label: seen class '{swap_letters(seen[0])}' is not in the synth synonym "
                       f"table, which lists its seen classes; did you mean '{seen[0]}'?")
    fewer = write_class_csv(tmp_path / "fewer.csv", seen=seen[1:], unseen=table.roots)
    assert error_text(lambda: read_class_list(fewer, dataset=table)) == (
        f"{fewer}: misses the synth seen class(es) {seen[0]}")


def test_clip_label_outside_the_class_list_suggests_the_closest_class(tmp_path):
    classes = read_class_list(write_class_csv(tmp_path / "classes.csv"), dataset="ata")
    path = tmp_path / "clips.csv"
    path.write_text("video,label\nv0,drop item\nv1,scerw bolt\n")
    assert error_text(lambda: read_clips(path, classes)) == (
        f"{path}: line 3.label: unknown class 'scerw bolt' (not in the class list {tmp_path / 'classes.csv'}); "
        "did you mean 'screw bolt' or 'unscrew bolt'?")


def test_unseen_class_of_a_class_list_outside_the_table_suggests_the_root(tmp_path):
    path = write_class_csv(tmp_path / "classes.csv", unseen=[*ATA_UNSEEN[:-1], "hammer pni"])
    assert error_text(lambda: read_class_list(path, dataset="ata")).endswith("; did you mean 'hammer pin'?")
