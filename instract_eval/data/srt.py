"""Synonym Robustness Test (ACE): the published synonym runs, class lists and the clips to classify.

Three inputs, three readers:

1. The synonym table (`load_synonym_tables`), shipped as ``resources/srt_synonyms.yaml`` and
   transcribed from ACE's appendix Tables 7-9: for each dataset (``ata``, ``ikea``, ``gtea``) every
   unseen class has a ``root`` (default) label and 10 ``runs``; run 1 holds the roots. In SRT run
   ``r`` every unseen class is named by its run-``r`` label::

       datasets:
         ata:
           num_classes: 15
           num_base_classes: 10
           num_novel_classes: 5
           unseen_actions:
           - root: spin block
             runs: [spin block, wheel block, turn block, ...]   # 10 labels

2. A class list (`read_class_list`): one row per class with ``label``, ``split`` (``seen`` or
   ``unseen``) and optional ``synonyms``, the children used for leaf augmentation (a JSON list of
   strings, or in a CSV/TSV cell the labels separated by ``|``). Any format of
   `instract_eval.data.generic` works; as CSV::

       label,split,synonyms
       screw bolt,seen,screw bolt|tighten bolt
       spin block,unseen,

   Given ``dataset="ata"``, the unseen classes must be exactly the table's roots for that dataset
   (and, for a table that lists ``seen_actions``, the seen classes exactly its seen roots).

3. The clips (`read_clips`): one row per trimmed video with ``video``, ``label`` and optionally
   ``start`` and ``end`` in seconds (both or neither; neither = the whole file); a label that is
   not a class is an error naming the row, with the closest classes::

       {"video": "P03_cam2_0141", "start": 12.0, "end": 15.0, "label": "spin block"}

`read_task` reads a task's clips with its class list, or derives the class list from the table
and the clips when the task has none.

Protocol facts kept here (ACE; PROTOCOLS.md): seen clips are classified among seen classes only,
unseen clips among unseen classes only. Default labels are run 1. Leaf augmentation scores a class
by the mean cosine over its synonym children; the paper's synonym trees are not published, so
`synonym_children` returns the class list's ``synonyms``, else, for an unseen class of a known
dataset, the distinct labels of its 10 runs (root first), else, for a seen class of a table that
lists ``seen_actions`` (the synthetic world's does), that entry's labels, else the label alone. In
SRT run ``r`` an unseen class is named by one label, `label_set`'s run-``r`` name.

A table is named by its key (the packaged ``ata``, ``ikea``, ``gtea``) or passed as a
`SynonymTable` read from a file of the same schema (`load_synonym_tables`), which is how a
user's or the synthetic world's synonym table reaches the readers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..text import did_you_mean
from .cliplist import read_labelled_clips
from .generic import Record, read_records, read_text, record_string
from .jsonfile import parse_yaml, require_key, require_list, require_mapping, require_number, require_string
from .labels import NEAR_MISS, check_label, similarity

SRT_DATASETS = ("ata", "ikea", "gtea")
SPLITS = ("seen", "unseen")
SYNONYM_SEPARATOR = "|"
_RESOURCE = "srt_synonyms.yaml"


@dataclass(frozen=True)
class UnseenAction:
    """One unseen class of the synonym table: its root label and its label in each run."""

    root: str
    runs: tuple[str, ...]

    def label(self, run: int) -> str:
        """The label of run ``run`` (1-based; run 1 is the root)."""
        if not 1 <= run <= len(self.runs):
            raise ValueError(f"run must be 1..{len(self.runs)}, got {run}")
        return self.runs[run - 1]

    @property
    def synonyms(self) -> tuple[str, ...]:
        """The distinct labels over all runs, in run order (the root first)."""
        return tuple(dict.fromkeys(self.runs))


@dataclass(frozen=True)
class SynonymTable:
    """The SRT facts of one dataset: class counts, clip sampling and the unseen classes' runs."""

    key: str
    name: str
    num_classes: int
    num_seen: int
    num_unseen: int
    frames_per_clip: int
    clip_seconds: float
    synonym_children: int
    placeholder_object: str | None
    unseen: tuple[UnseenAction, ...]
    seen: tuple[UnseenAction, ...] = ()

    @property
    def num_runs(self) -> int:
        return len(self.unseen[0].runs)

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(action.root for action in self.unseen)

    def action(self, root: str) -> UnseenAction:
        for action in self.unseen:
            if action.root == root:
                return action
        raise KeyError(f"'{root}' is not an unseen class of {self.key} (roots: {', '.join(self.roots)})")

    def seen_action(self, root: str) -> UnseenAction | None:
        """The synonym entry of a seen class, for tables that list them (``seen_actions``)."""
        return next((action for action in self.seen if action.root == root), None)

    def run_labels(self, run: int) -> dict[str, str]:
        """Root label -> run-``run`` label, for every unseen class."""
        return {action.root: action.label(run) for action in self.unseen}


@dataclass(frozen=True)
class SRTClass:
    """A class of a class list: its default label, its split and its leaf-augmentation children."""

    label: str
    split: str
    synonyms: tuple[str, ...] | None


@dataclass(frozen=True)
class ClassList:
    """The classes of one dataset, in file order, optionally tied to a published synonym table."""

    path: str
    table: SynonymTable | None
    classes: tuple[SRTClass, ...]

    @property
    def dataset(self) -> str | None:
        """The key of the synonym table (``ata``, ``ikea``, ``gtea`` or a user table's), if any."""
        return None if self.table is None else self.table.key

    def labels(self, split: str) -> tuple[str, ...]:
        """The default labels of one split, in file order."""
        _check_split(split)
        return tuple(c.label for c in self.classes if c.split == split)

    def get(self, label: str) -> SRTClass:
        for cls in self.classes:
            if cls.label == label:
                return cls
        raise KeyError(f"'{label}' is not a class of {self.path}")


@dataclass(frozen=True)
class SRTClip:
    """A trimmed video to classify, with its default label and the split of that label."""

    where: str
    video: str
    start: float | None
    end: float | None
    label: str
    split: str


def load_synonym_tables(path: str | os.PathLike | None = None) -> dict[str, SynonymTable]:
    """Every dataset of a synonym-table YAML; ``None`` reads the packaged copy."""
    if path is None:
        return dict(_packaged_tables())
    path = Path(path)
    return _parse_tables(parse_yaml(read_text(path), path), path)


def _table(dataset: str | SynonymTable | None) -> SynonymTable | None:
    return dataset if dataset is None or isinstance(dataset, SynonymTable) else synonym_table(dataset)


def synonym_table(dataset: str) -> SynonymTable:
    """The packaged synonym table of ``ata``, ``ikea`` or ``gtea``."""
    tables = _packaged_tables()
    if dataset not in tables:
        raise ValueError(f"unknown SRT dataset '{dataset}', expected one of {', '.join(tables)}")
    return tables[dataset]


def read_class_list(path: str | os.PathLike, dataset: str | SynonymTable | None = None) -> ClassList:
    """A class list (rows ``label, split[, synonyms]``); ``dataset`` checks it against the synonym table.

    ``dataset`` is a packaged table's key or a `SynonymTable` read with `load_synonym_tables`.
    """
    table = _table(dataset)
    classes: list[SRTClass] = []
    first_seen: dict[str, str] = {}
    records = read_records(path, ["label", "split"])
    for record in records:
        cls = _class_row(record)
        if cls.label in first_seen:
            raise InputError(f"repeats class '{cls.label}' of {first_seen[cls.label]}", path=record.path,
                             field=f"{record.where}.label")
        first_seen[cls.label] = record.where
        if table is not None:
            _check_against_table(cls, record, table)
        classes.append(cls)
    listed = ClassList(path=records[0].path, table=table, classes=tuple(classes))
    _check_complete(listed, table)
    return listed


def read_clips(path: str | os.PathLike, classes: ClassList) -> list[SRTClip]:
    """The clips to classify (rows ``video, label[, start, end]``); every label must be a listed class."""
    splits = {cls.label: cls.split for cls in classes.classes}
    return [SRTClip(where=clip.where, video=clip.video, start=clip.start, end=clip.end, label=clip.label,
                    split=splits[clip.label])
            for clip in read_labelled_clips(path, tuple(splits), class_list=classes.path)]


def read_task(annotations: str | os.PathLike, dataset: str | SynonymTable,
              classes: str | os.PathLike | None = None) -> tuple[ClassList, list[SRTClip]]:
    """The class list and the clips of one SRT task (what ``format: srt`` in tasks.yaml names).

    With no class list file, the classes come from the synonym table and the clips: the unseen
    classes are the table's roots, the seen classes every other clip label in order of first
    appearance. That is only right when the clips show every seen class, so the seen count must
    equal the table's (a misspelt unseen label would otherwise become a new seen class). A table
    that lists its seen classes (``seen_actions``, as the synthetic world's does) declares them, so
    there every clip label must be one of its classes: a misspelt seen label whose class has no
    other clip keeps the count and would otherwise be scored as a class of its own.
    """
    table = _table(dataset)
    if classes is not None:
        listed = read_class_list(classes, dataset=table)
        return listed, read_clips(annotations, listed)
    records = read_records(annotations, ["label"])
    labels = [_derivable_label(record, table) for record in records]
    seen = dict.fromkeys(label for label in labels if label not in table.roots)
    if len(seen) != table.num_seen:
        raise _seen_count_error(records, labels, len(seen), table)
    derived = ClassList(path=records[0].path, table=table, classes=tuple(
        [SRTClass(label, "seen", None) for label in seen] + [SRTClass(root, "unseen", None) for root in table.roots]))
    return derived, read_clips(annotations, derived)


def label_set(classes: ClassList, split: str, run: int = 1) -> tuple[str, ...]:
    """The names of one split's classes in SRT run ``run``, aligned with ``classes.labels(split)``.

    Seen classes keep their labels. Unseen classes are named by their run-``run`` synonym; run 1 is
    the default labels, and runs above 1 need a class list read with ``dataset=``.
    """
    names = classes.labels(split)
    if split == "seen" or run == 1:
        return names
    if classes.table is None:
        raise ValueError(f"{classes.path} was read without dataset=, so it has no synonym runs")
    return tuple(classes.table.action(label).label(run) for label in names)


def synonym_children(classes: ClassList, label: str) -> tuple[str, ...]:
    """The texts whose mean cosine scores class ``label`` under leaf augmentation (never empty)."""
    cls = classes.get(label)
    if cls.synonyms is not None:
        return cls.synonyms
    if classes.table is not None:
        if cls.split == "unseen":
            return classes.table.action(label).synonyms
        listed = classes.table.seen_action(label)
        if listed is not None:
            return listed.synonyms
    return (label,)


# --- the synonym table --------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _packaged_tables() -> dict[str, SynonymTable]:
    resource = resources.files("instract_eval.data").joinpath("resources", _RESOURCE)
    name = f"instract_eval/data/resources/{_RESOURCE}"
    return _parse_tables(parse_yaml(resource.read_text(encoding="utf-8"), name), name)


def _parse_tables(document: Any, path: Path | str) -> dict[str, SynonymTable]:
    document = require_mapping(document, path=path, field="top level")
    protocol = require_mapping(require_key(document, "protocol", path=path, field="top level"),
                               path=path, field="protocol")
    runs = _count(require_key(protocol, "runs", path=path, field="protocol"), path, "protocol.runs")
    datasets = require_mapping(require_key(document, "datasets", path=path, field="top level"),
                               path=path, field="datasets")
    if not datasets:
        raise InputError("no datasets", path=path, field="datasets")
    return {key: _parse_table(key, entry, runs, path) for key, entry in datasets.items()}


def _parse_table(key: str, entry: Any, runs: int, path: Path | str) -> SynonymTable:
    field = f"datasets.{key}"
    entry = require_mapping(entry, path=path, field=field)

    def get(name: str) -> Any:
        return require_key(entry, name, path=path, field=field)

    actions = require_list(get("unseen_actions"), path=path, field=f"{field}.unseen_actions")
    unseen = tuple(_parse_action(a, runs, path, f"{field}.unseen_actions[{i}]") for i, a in enumerate(actions))
    listed_seen = require_list(entry.get("seen_actions", []), path=path, field=f"{field}.seen_actions")
    seen = tuple(_parse_action(a, runs, path, f"{field}.seen_actions[{i}]") for i, a in enumerate(listed_seen))
    table = SynonymTable(
        key=key,
        name=require_string(get("name"), path=path, field=f"{field}.name"),
        num_classes=_count(get("num_classes"), path, f"{field}.num_classes"),
        num_seen=_count(get("num_base_classes"), path, f"{field}.num_base_classes"),
        num_unseen=_count(get("num_novel_classes"), path, f"{field}.num_novel_classes"),
        frames_per_clip=_count(get("frames_per_clip"), path, f"{field}.frames_per_clip"),
        clip_seconds=require_number(get("clip_seconds"), path=path, field=f"{field}.clip_seconds"),
        synonym_children=_count(get("synonym_children"), path, f"{field}.synonym_children"),
        placeholder_object=_optional_string(entry.get("placeholder_object"), path, f"{field}.placeholder_object"),
        unseen=unseen,
        seen=seen,
    )
    _check_table_counts(table, path, field)
    return table


def _parse_action(entry: Any, runs: int, path: Path | str, field: str) -> UnseenAction:
    entry = require_mapping(entry, path=path, field=field)
    root = require_string(require_key(entry, "root", path=path, field=field), path=path, field=f"{field}.root")
    labels = require_list(require_key(entry, "runs", path=path, field=field), path=path, field=f"{field}.runs")
    if len(labels) != runs:
        raise InputError(f"expected {runs} run labels (protocol.runs), got {len(labels)}", path=path,
                         field=f"{field}.runs")
    labels = tuple(require_string(label, path=path, field=f"{field}.runs[{i}]") for i, label in enumerate(labels))
    if labels[0] != root:
        raise InputError(f"run 1 must be the root label '{root}', got '{labels[0]}'", path=path,
                         field=f"{field}.runs[0]")
    return UnseenAction(root=root, runs=labels)


def _check_table_counts(table: SynonymTable, path: Path | str, field: str) -> None:
    if table.num_seen + table.num_unseen != table.num_classes:
        raise InputError(f"num_base_classes {table.num_seen} + num_novel_classes {table.num_unseen} != "
                         f"num_classes {table.num_classes}", path=path, field=field)
    if len(table.unseen) != table.num_unseen:
        raise InputError(f"lists {len(table.unseen)} unseen actions, num_novel_classes says {table.num_unseen}",
                         path=path, field=f"{field}.unseen_actions")
    if len(set(table.roots)) != len(table.roots):
        raise InputError("two unseen actions share a root label", path=path, field=f"{field}.unseen_actions")


def _count(value: Any, path: Path | str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"expected a positive integer, got {value!r}", path=path, field=field)
    return value


def _optional_string(value: Any, path: Path | str, field: str) -> str | None:
    return None if value is None else require_string(value, path=path, field=field)


# --- class lists and clips ----------------------------------------------------------------------

def _class_row(record: Record) -> SRTClass:
    split = record_string(record, "split")
    if split not in SPLITS:
        raise InputError(f"expected 'seen' or 'unseen', got {split!r}", path=record.path,
                         field=f"{record.where}.split")
    return SRTClass(label=record_string(record, "label"), split=split, synonyms=_synonyms(record))


def _synonyms(record: Record) -> tuple[str, ...] | None:
    value = record.data.get("synonyms")
    field = f"{record.where}.synonyms"
    if value is None or (record.text_cells and value == ""):
        return None
    if record.text_cells:
        value = [item.strip() for item in value.split(SYNONYM_SEPARATOR)]
    items = require_list(value, path=record.path, field=field)
    if not items:
        raise InputError("empty synonym list (leave the field out instead)", path=record.path, field=field)
    return tuple(require_string(item, path=record.path, field=f"{field}[{i}]") for i, item in enumerate(items))


def _derivable_label(record: Record, table: SynonymTable) -> str:
    """A clip's label for a class list derived from the table: one of its classes when it lists the seen ones."""
    label = record_string(record, "label")
    if table.seen:
        check_label(label, (*_seen_roots(table), *table.roots), declared_by=f"the {table.key} synonym table",
                    path=record.path, field=f"{record.where}.label")
    return label


def _seen_count_error(records: list[Record], labels: list[str], count: int, table: SynonymTable) -> InputError:
    """The clips name the wrong number of seen classes: point at the label nearest an unseen root, if near.

    Such a label is most likely a misspelt unseen class that the derivation took for a seen one, so
    its row is the one to fix. Only a near miss counts (real seen and unseen classes often share a
    word: "insert pin", "hammer pin"); otherwise only a class list file can say which labels are meant.
    """
    counted = f"the clips name {count} seen classes, the {table.key} table has {table.num_seen}"
    candidates = [(similarity(label, root), index, root) for index, label in enumerate(labels)
                  if label not in table.roots for root in table.roots]
    best = max(candidates, default=None)
    if best is None or best[0] < NEAR_MISS:
        return InputError(f"{counted}: give a class list file", path=records[0].path)
    _, index, root = best
    return InputError(f"unknown class '{labels[index]}' ({counted}); did you mean '{root}'?", path=records[index].path,
                      field=f"{records[index].where}.label")


def _seen_roots(table: SynonymTable) -> tuple[str, ...]:
    return tuple(action.root for action in table.seen)


def _check_against_table(cls: SRTClass, record: Record, table: SynonymTable) -> None:
    field = f"{record.where}.label"
    if cls.split == "unseen" and cls.label not in table.roots:
        raise InputError(f"unseen class '{cls.label}' is not in the {table.key} synonym table "
                         f"(unseen roots: {', '.join(table.roots)}){did_you_mean(cls.label, table.roots)}",
                         path=record.path, field=field)
    if cls.split == "seen" and cls.label in table.roots:
        raise InputError(f"'{cls.label}' is listed as seen, the {table.key} synonym table has it unseen",
                         path=record.path, field=f"{record.where}.split")
    if cls.split == "seen" and table.seen and cls.label not in _seen_roots(table):
        raise InputError(f"seen class '{cls.label}' is not in the {table.key} synonym table, which lists its "
                         f"seen classes{did_you_mean(cls.label, _seen_roots(table))}", path=record.path, field=field)


def _check_complete(classes: ClassList, table: SynonymTable | None) -> None:
    for split in SPLITS:
        if not classes.labels(split):
            raise InputError(f"has no {split} classes", path=classes.path)
    if table is not None:
        for split, declared in (("unseen", table.roots), ("seen", _seen_roots(table))):
            missing = [root for root in declared if root not in classes.labels(split)]
            if missing:
                raise InputError(f"misses the {table.key} {split} class(es) {', '.join(missing)}", path=classes.path)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'seen' or 'unseen', got {split!r}")
