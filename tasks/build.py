"""From a registered task and its files to engine items.

Each annotation format maps to items of one engine (InstrAct Semantic/Logic and ActionBench:
multiple choice; InstrAct-Dynamics and caption rows: retrieval; SRT and label rows: zero-shot
classification); perturbations are declared by the task
(`transform`) and applied here as a property of the item (a reversed `ClipRequest`, the antonym
or object-replaced caption), never by copying the data:

- ``antonym_text``          ActionBench AA: the clip against [caption, antonym caption]
- ``object_replaced_text``  ActionBench OR: the clip against [caption, object-replaced caption]
- ``reverse_video``         ActionBench VR: the caption against [clip, clip reversed in time]

Synonym label sets (SRT) are the same kind of declared perturbation: the runs rename the unseen
classes, the clips stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from instract_eval.data import srt
from instract_eval.data.actionbench import probe_texts, read_ego4d, read_ssv2, video_path
from instract_eval.data.cliplist import clip_video_path, read_captioned_clips, read_class_names, read_labelled_clips
from instract_eval.data.instract import read_dynamics, read_logic, read_semantic
from instract_eval.data.jsonfile import read_yaml, require_mapping, require_string
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest

from .classification import ALL, ClassificationItem, ClassificationTask, LabelSet
from .mcq import MCQItem
from .registry import DataLocation, TaskSpec
from .retrieval import RetrievalItem
from .schema import PROBE_OF_TRANSFORM

__all__ = ["MCQ_FORMATS", "RETRIEVAL_FORMATS", "CLASSIFICATION_FORMATS", "PROBE_OF_TRANSFORM", "mcq_items",
           "retrieval_items", "classification_task", "instract_request"]

MCQ_FORMATS = ("instract-semantic", "instract-logic", "actionbench-ego4d", "actionbench-ssv2")
RETRIEVAL_FORMATS = ("instract-dynamics", "rows")
CLASSIFICATION_FORMATS = ("srt", "rows")


def mcq_items(spec: TaskSpec, location: DataLocation) -> list[MCQItem]:
    """The multiple-choice items of a task whose files `location` has found."""
    videos = location.files["videos"]
    protocol = spec.protocol
    if spec.format in ("instract-semantic", "instract-logic"):
        annotations = location.files["annotations"]
        rows = read_semantic(annotations) if spec.format == "instract-semantic" else read_logic(annotations)
        keep = protocol.get("max_order_negatives") if spec.format == "instract-logic" else None
        items = []
        for index, row in enumerate(rows):
            clip = row.clip
            request = instract_request(clip, videos, protocol)
            negatives = row.negatives if keep is None else row.negatives[:keep]
            items.append(MCQItem(request, (clip.caption, *negatives), sample_id=f"{spec.name}/{index}"))
        return items
    if spec.format in ("actionbench-ego4d", "actionbench-ssv2"):
        probe = PROBE_OF_TRANSFORM.get(spec.transform or "")
        if probe is None:
            raise InputError(f"task {spec.name}: an ActionBench task needs transform "
                             f"{' | '.join(PROBE_OF_TRANSFORM)}", path=spec.source, field=f"tasks.{spec.name}.transform")
        reader = read_ego4d if spec.format == "actionbench-ego4d" else read_ssv2
        items = []
        for row in reader(location.files["annotations"], probes=(probe,)):
            request = ClipRequest(str(video_path(row, videos)), row.start or 0.0, row.end, video_id=row.video,
                                  context_s=float(protocol.get("context_s", 0.0)),
                                  min_clip_s=float(protocol.get("min_clip_s", 0.0)))
            texts = probe_texts(row, probe)
            if probe == "vr":
                reversed_request = dataclasses.replace(request, reverse=True)
                items.append(MCQItem(texts[0], (request, reversed_request), sample_id=f"{spec.name}/{row.where}"))
            else:
                items.append(MCQItem(request, texts, sample_id=f"{spec.name}/{row.where}"))
        return items
    raise _wrong_format(spec, MCQ_FORMATS, "multiple-choice")


def retrieval_items(spec: TaskSpec, location: DataLocation) -> list[RetrievalItem]:
    """The retrieval items of a task: InstrAct-Dynamics (one pool per object file) or caption rows (one pool)."""
    videos = location.files["videos"]
    if spec.format == "instract-dynamics":
        pools = read_dynamics(location.files["annotations"])
        categories = _pool_categories(location.files.get("categories"), pools)
        return [
            RetrievalItem(clip.clip.caption, instract_request(clip.clip, videos, spec.protocol), pool=pool,
                          sample_id=f"{spec.name}/{pool}/{index}", category=categories.get(pool))
            for pool, clips in pools.items()
            for index, clip in enumerate(clips)
        ]
    if spec.format == "rows":
        return [RetrievalItem(clip.caption, _row_request(clip, videos, spec.protocol), sample_id=f"{spec.name}/{clip.where}")
                for clip in read_captioned_clips(location.files["annotations"])]
    raise _wrong_format(spec, RETRIEVAL_FORMATS, "retrieval")


def _pool_categories(path: Path | None, pools: Mapping[str, object]) -> dict[str, str]:
    """The optional pool -> category file (YAML or JSON mapping); it must name exactly the pools."""
    if path is None:
        return {}
    document = require_mapping(read_yaml(path), path=path, field="top level")
    for pool, category in document.items():
        if pool not in pools:
            raise InputError(f"names the pool '{pool}', which has no annotation file", path=path, field=str(pool))
        require_string(category, path=path, field=str(pool))
    missing = [pool for pool in pools if pool not in document]
    if missing:
        raise InputError(f"gives no category for the pool(s) {', '.join(missing[:5])}", path=path)
    return dict(document)


def classification_task(spec: TaskSpec, location: DataLocation, *,
                        leaf_augmentation: bool | None = None) -> ClassificationTask:
    """Items and label sets of a zero-shot classification task (SRT, or label rows with a class list).

    ``leaf_augmentation`` (None: the protocol's ``leaf_augmentation``, default off) scores each
    class of the default label set by its synonym children; SRT runs always name a class by one
    label, since no synonym tree of a run's synonym is published.
    """
    protocol = spec.protocol
    leaf = bool(protocol.get("leaf_augmentation", False)) if leaf_augmentation is None else leaf_augmentation
    prompt = _prompt(spec)
    videos = location.files["videos"]
    if spec.format == "rows":
        names = read_class_names(location.files["classes"])
        items = tuple(ClassificationItem(_row_request(clip, videos, protocol), clip.label,
                                         sample_id=f"{spec.name}/{clip.where}")
                      for clip in read_labelled_clips(location.files["annotations"], names,
                                                      class_list=str(location.files["classes"])))
        default = LabelSet("default", {ALL: tuple(names)}, {n: (prompt.format(n),) for n in names})
        return ClassificationTask(items, default, leaf_augmentation=False)
    if spec.format != "srt":
        raise _wrong_format(spec, CLASSIFICATION_FORMATS, "classification")
    table = _synonym_table(spec, location)
    classes, clips = srt.read_task(location.files["annotations"], table, classes=location.files.get("classes"))
    items = tuple(ClassificationItem(_row_request(clip, videos, protocol), clip.label, group=clip.split,
                                     sample_id=f"{spec.name}/{clip.where}") for clip in clips)
    groups = {split: classes.labels(split) for split in srt.SPLITS}
    children = {c.label: srt.synonym_children(classes, c.label) if leaf else (c.label,) for c in classes.classes}
    default = LabelSet("default", groups, {label: tuple(prompt.format(t) for t in texts)
                                           for label, texts in children.items()})
    num_runs = int(protocol.get("runs", table.num_runs))
    if not 1 <= num_runs <= table.num_runs:
        raise InputError(f"runs must be 1..{table.num_runs} (the synonym table's runs), got {num_runs}",
                         path=spec.source, field=f"tasks.{spec.name}.protocol.runs")
    runs = []
    for run in range(1, num_runs + 1):
        names = {label: name for split in srt.SPLITS
                 for label, name in zip(classes.labels(split), srt.label_set(classes, split, run))}
        runs.append(LabelSet(f"run-{run}", groups, {label: (prompt.format(name),) for label, name in names.items()}))
    return ClassificationTask(items, default, tuple(runs), leaf_augmentation=leaf,
                              notes={"synonym_table": table.key})


def _synonym_table(spec: TaskSpec, location: DataLocation) -> srt.SynonymTable:
    """The task's synonym table: a packaged one (``{builtin: ..., dataset: ata}``) or a file plus ``protocol.dataset``."""
    entry = spec.data.get("synonyms")
    if entry is None:
        raise InputError("an SRT task needs data.synonyms (the synonym table)", path=spec.source,
                         field=f"tasks.{spec.name}.data.synonyms")
    key = entry.get("dataset") if isinstance(entry, dict) else spec.protocol.get("dataset")
    tables = srt.load_synonym_tables(location.files["synonyms"])
    if key not in tables:
        raise InputError(f"names the synonym table '{key}', the file has {', '.join(tables)}", path=spec.source,
                         field=f"tasks.{spec.name}.data.synonyms")
    return tables[key]


def _prompt(spec: TaskSpec) -> str:
    prompt = str(spec.protocol.get("prompt", "{}"))
    if prompt.count("{}") != 1:
        raise InputError(f"prompt must hold exactly one '{{}}' for the class name, got {prompt!r}",
                         path=spec.source, field=f"tasks.{spec.name}.protocol.prompt")
    return prompt


def _row_request(clip, videos: Path, protocol) -> ClipRequest:
    """A clip of a row list (``start``/``end`` None = the whole video), with the protocol's clips and context."""
    return ClipRequest(str(clip_video_path(videos, clip.video)), clip.start or 0.0, clip.end,
                       context_s=float(protocol.get("context_s", 0.0)),
                       min_clip_s=float(protocol.get("min_clip_s", 0.0)),
                       num_clips=int(protocol.get("clips", 1)), video_id=clip.video)


def _wrong_format(spec: TaskSpec, formats: tuple[str, ...], kind: str) -> InputError:
    return InputError(f"task {spec.name}: format '{spec.format}' is not a {kind} format ({', '.join(formats)})",
                      path=spec.source, field=f"tasks.{spec.name}.format")


def instract_request(clip, videos: Path, protocol) -> ClipRequest:
    """An InstrAct clip (``<videos>/<video_id>.mp4``) with the protocol's context and minimum length."""
    return ClipRequest(str(Path(videos) / f"{clip.video_id}.mp4"), clip.start, clip.end,
                       context_s=float(protocol.get("context_s", 0.0)),
                       min_clip_s=float(protocol.get("min_clip_s", 0.0)), video_id=clip.video_id)
