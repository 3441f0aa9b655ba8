"""A generated world on disk: deterministic, readable by the harness's readers, complete.

One tiny world is generated per module (well under a second); the determinism tests generate two
more. Every check reads the files as a user of the harness would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from instract_eval.data.activitynet import read_ground_truth
from instract_eval.data.instract import read_dynamics, read_logic, read_semantic
from instract_eval.synth import SIZES, ensure_world, generate_world, read_manifest
from instract_eval.synth.render import read_mp4
from instract_eval.synth.writers import OUTSIDE_GROUP, SYNTH_TASKS

EGO4D_FIELDS = ["video_uid", "video_dur", "narration_source", "narration_ind", "narration_time", "clip_start",
                "clip_end", "clip_text", "action_antonym_clip_text", "tag_verb", "tag_noun", "clip_uid",
                "narration_relative_time", "clip_relative_start", "clip_relative_end", "clip_fps"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "world"
    generate_world(root, seed=0, size="tiny")
    return root


def annotation_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".mp4"}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_gives_identical_annotations_and_frames(world, tmp_path):
    again = generate_world(tmp_path / "again", seed=0, size="tiny").root
    first, second = annotation_files(world), annotation_files(again)
    assert list(first) == list(second)
    assert len(first) >= 12
    for name in first:
        assert first[name] == second[name], name
    videos = sorted(p.name for p in (world / "videos").glob("*.mp4"))
    assert videos == sorted(p.name for p in (again / "videos").glob("*.mp4"))
    for name in videos:
        a, _ = read_mp4(world / "videos" / name)
        b, _ = read_mp4(again / "videos" / name)
        assert np.array_equal(a, b), name


def test_another_seed_gives_another_world(world, tmp_path):
    other = generate_world(tmp_path / "other", seed=1, size="tiny").root
    for name in ["instract/semantic.json", "instract/logic.json", "actionbench/ego4d_test.jsonl",
                 "srt/test.jsonl", "tal/ground_truth.json"]:
        assert (world / name).read_bytes() != (other / name).read_bytes(), name
    first, _ = read_mp4(world / "videos" / "sem_0000.mp4")
    second, _ = read_mp4(other / "videos" / "sem_0000.mp4")
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_instract_files_load_with_the_readers(world):
    manifest = read_manifest(world)
    semantic = read_semantic(world / "instract/semantic.json")
    assert len(semantic) == manifest.counts["synth-semantic"] == SIZES["tiny"].semantic_rows
    for row in semantic:
        assert len(row.candidates) == 10 and len(set(row.candidates)) == 10
        assert 0 <= row.clip.start < row.clip.end
    logic = read_logic(world / "instract/logic.json")
    assert len(logic) == manifest.counts["synth-logic"]
    for row in logic:
        assert 1 <= len(row.negatives) <= 3 and row.clip.caption not in row.negatives
    pools = read_dynamics(world / "instract/dynamics")
    assert len(pools) == SIZES["tiny"].dynamics_pools
    assert sum(len(p) for p in pools.values()) == manifest.counts["synth-dynamics"]
    for slug, clips in pools.items():
        assert len(clips) >= 2
        assert {c.object for c in clips} == {slug.replace("_", " ")}
        assert len({c.clip.caption for c in clips}) == len(clips)
        assert len({c.operations for c in clips}) == len(clips)  # same object, different actions
        for clip in clips:
            assert clip.object in clip.clip.caption


def test_actionbench_rows_have_the_ego4d_fields(world):
    rows = jsonl(world / "actionbench/ego4d_test.jsonl")
    shuffled = jsonl(world / "actionbench/ego4d_test_object_shuffled.jsonl")
    assert len(rows) == len(shuffled) == SIZES["tiny"].actionbench_rows
    for row, other in zip(rows, shuffled):
        assert list(row) == EGO4D_FIELDS
        assert list(other) == [*EGO4D_FIELDS, "object_shuffled_clip_text"]
        assert {k: other[k] for k in EGO4D_FIELDS} == row
        assert row["video_uid"] == row["clip_uid"] and (world / "videos" / f"{row['clip_uid']}.mp4").is_file()
        assert 0 <= row["clip_start"] < row["clip_end"] <= row["video_dur"]
        assert (row["clip_relative_start"], row["clip_relative_end"]) == (row["clip_start"], row["clip_end"])
        assert row["clip_start"] <= row["narration_time"] <= row["clip_end"]
        assert row["action_antonym_clip_text"] != row["clip_text"]
        assert other["object_shuffled_clip_text"] not in (row["clip_text"], row["action_antonym_clip_text"])


def test_srt_classes_follow_the_published_table_structure(world):
    document = yaml.safe_load((world / "srt/classes.yaml").read_text())
    assert document["protocol"]["runs"] == 10 and document["protocol"]["run_1_is_root"] is True
    (dataset,) = document["datasets"].values()
    seen, unseen = dataset["seen_actions"], dataset["unseen_actions"]
    assert len(seen) + len(unseen) == dataset["num_classes"] == 12
    assert (len(seen), len(unseen)) == (dataset["num_base_classes"], dataset["num_novel_classes"]) == (8, 4)
    labels = []
    for entry in seen + unseen:
        assert len(entry["runs"]) == 10 and entry["runs"][0] == entry["root"]
        labels.extend(entry["runs"])
    assert len(labels) == len(set(labels))  # no label names two classes
    # the unseen third are the rarer verbs
    assert max(e["frequency"] for e in unseen) < min(e["frequency"] for e in seen)
    roots = {e["root"] for e in seen + unseen}
    test_rows, train_rows = jsonl(world / "srt/test.jsonl"), jsonl(world / "srt/train.jsonl")
    assert {r["label"] for r in test_rows} == roots
    assert {r["label"] for r in train_rows} == {e["root"] for e in seen}
    for row in test_rows + train_rows:
        assert list(row) == ["video", "start", "end", "label"] and 0 <= row["start"] < row["end"]
        assert (world / "videos" / f"{row['video']}.mp4").is_file()


def test_unseen_synonyms_appear_in_no_caption(world):
    document = yaml.safe_load((world / "srt/classes.yaml").read_text())
    (dataset,) = document["datasets"].values()
    held_out = [label for e in dataset["unseen_actions"] for label in e["runs"][1:]]
    texts = []
    for row in json.loads((world / "instract/semantic.json").read_text()):
        texts += [row["caption"], *row["hard_negatives"]]
    for row in json.loads((world / "instract/logic.json").read_text()):
        texts += [row["caption"], *row["order_swapped_hn"]]
    for pool in (world / "instract/dynamics").glob("*.json"):
        texts += list(json.loads(pool.read_text()))
    for row in jsonl(world / "actionbench/ego4d_test_object_shuffled.jsonl"):
        texts += [row["clip_text"], row["action_antonym_clip_text"], row["object_shuffled_clip_text"]]
    words = " | ".join(f" {t} " for t in texts)
    assert len(texts) > 50
    for label in held_out:
        assert f" {label} " not in words, label


def test_tal_ground_truth_loads_and_instances_are_disjoint_and_inside(world):
    gt = read_ground_truth(world / "tal/ground_truth.json", subset="test")
    document = json.loads((world / "tal/ground_truth.json").read_text())
    assert gt.num_videos == SIZES["tiny"].tal_videos
    low, high = SIZES["tiny"].tal_duration_s
    for index, name in enumerate(gt.video_names):
        duration = document["database"][name]["duration"]
        assert low - 0.2 <= duration <= high + 0.2
        segments = gt.segments[gt.video == index]
        labels = set(gt.label[gt.video == index].tolist())
        assert 1 <= len(segments) <= 4 and 1 <= len(labels) <= 2
        order = np.argsort(segments[:, 0])
        segments = segments[order]
        assert segments[0, 0] > 0 and segments[-1, 1] < duration  # idle before and after
        assert np.all(segments[1:, 0] > segments[:-1, 1])          # disjoint, with idle between
        assert np.all(segments[:, 1] > segments[:, 0])


def test_tal_descriptions_cover_every_class_and_conflicts_are_a_derangement(world):
    gt = read_ground_truth(world / "tal/ground_truth.json")
    descriptions = yaml.safe_load((world / "tal/descriptions.yaml").read_text())
    by_name = {c["name"]: c for c in descriptions["classes"]}
    for name in gt.class_names:
        entry = by_name[name]
        assert entry["start_pose"] and entry["end_pose"] and entry["description"]
    grouped = [n for group in descriptions["ambiguity_groups"].values() for n in group]
    assert sorted(grouped) == sorted(by_name)
    conflicting = yaml.safe_load((world / "tal/descriptions_conflicting.yaml").read_text())
    derangement = conflicting["derangement"]
    assert sorted(derangement) == sorted(derangement.values()) == sorted(by_name)
    for name, other in derangement.items():
        assert other != name
        assert conflicting["conflicting"][name] == by_name[other]["description"] != by_name[name]["description"]


def test_every_referenced_video_decodes_to_its_annotated_length(world):
    expected: dict[str, float] = {}  # video -> duration in seconds where an annotation states it
    referenced: dict[str, float] = {}  # video -> latest annotated end time
    for row in json.loads((world / "instract/semantic.json").read_text()) + \
            json.loads((world / "instract/logic.json").read_text()):
        referenced[row["video_id"]] = max(referenced.get(row["video_id"], 0.0), row["end"])
    for pool in (world / "instract/dynamics").glob("*.json"):
        for entry in json.loads(pool.read_text()).values():
            referenced[entry["video_id"]] = entry["end"]
    for row in jsonl(world / "actionbench/ego4d_test.jsonl"):
        referenced[row["video_uid"]] = row["clip_end"]
        expected[row["video_uid"]] = row["video_dur"]
    for row in jsonl(world / "srt/test.jsonl") + jsonl(world / "srt/train.jsonl"):
        referenced[row["video"]] = row["end"]
    for name, entry in json.loads((world / "tal/ground_truth.json").read_text())["database"].items():
        referenced[name] = max(a["segment"][1] for a in entry["annotations"])
        expected[name] = entry["duration"]
    on_disk = {p.stem for p in (world / "videos").glob("*.mp4")}
    assert set(referenced) == on_disk  # nothing missing, nothing unreferenced
    assert read_manifest(world).counts["videos"] == len(on_disk)
    for name, end in referenced.items():
        frames, fps = read_mp4(world / "videos" / f"{name}.mp4")
        assert frames.shape[1:] == (32, 32, 3) and frames.dtype == np.uint8
        assert fps == 8.0
        assert end <= len(frames) / fps
        if name in expected:
            assert len(frames) == round(expected[name] * fps), name


def test_tasks_yaml_registers_the_synth_group_with_existing_files(world):
    document = yaml.safe_load((world / "tasks.yaml").read_text())
    assert document["groups"] == {"synth": list(SYNTH_TASKS)}
    assert list(document["tasks"]) == [*SYNTH_TASKS, *OUTSIDE_GROUP]
    for name, entry in document["tasks"].items():
        assert entry["kind"] in ("mcq", "retrieval", "classification", "localization", "alignment")
        assert entry["paper"] == "synth" and entry["ties"] == "expected" and entry["seed"] == 0
        assert entry["format"] in ("instract-semantic", "instract-logic", "instract-dynamics", "actionbench-ego4d",
                                   "srt", "activitynet")
        assert entry["metrics"] and all(m["direction"] in ("higher", "lower") for m in entry["metrics"])
        for key, path in entry["data"].items():
            assert (world / path).exists(), (name, key, path)
    probes = {name: document["tasks"][name]["protocol"]["probe"] for name in ("synth-aa", "synth-vr", "synth-or")}
    assert probes == {"synth-aa": "aa", "synth-vr": "vr", "synth-or": "or"}


def test_tasks_yaml_parses_with_the_task_registry(world):
    registry = pytest.importorskip("instract_eval.tasks.registry")
    document = yaml.safe_load((world / "tasks.yaml").read_text())
    tasks, groups = registry.parse_registry(document, source=str(world / "tasks.yaml"), base_dir=world)
    assert groups["synth"] == SYNTH_TASKS
    for spec in tasks.values():
        location = registry.locate_data(spec, environ={})
        assert location.present, (spec.name, location.missing)


def test_generation_refuses_to_overwrite_foreign_files_and_reuses_a_matching_world(world, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_world(foreign, seed=0, size="tiny")
    assert (foreign / "keep.txt").read_text() == "mine"
    before = (world / "manifest.json").stat().st_mtime_ns
    assert ensure_world(world, seed=0, size="tiny").seed == 0
    assert (world / "manifest.json").stat().st_mtime_ns == before  # reused, not regenerated
