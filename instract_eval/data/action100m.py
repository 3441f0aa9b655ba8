"""Action100M Parquet files: one row per video with a tree of captioned segments.

Format (facebookresearch/Action100M; the preview is on the hub as ``facebook/Action100M-preview``,
``data/*.parquet``)::

    video_uid: string                      # YouTube id
    metadata:  struct<title, description, view_count, like_count, duration, upload_date,
                      transcript: list<struct<time, text>>>
    nodes:     list<struct<node_id: string, parent_id: string (null for the root), level: int16,
                           start: float, end: float,           # seconds in the full video (float32)
                           plm_action, plm_caption, llama3_caption: string or null,
                           gpt: struct<summary: struct<brief, detailed>,
                                       action: struct<brief, detailed, actor>> or null>>

For example one node: ``{"node_id": "74a3...", "parent_id": "61c5...", "level": 1, "start": 0.0,
"end": 104.5, "plm_action": "play with your dog", "plm_caption": "People are standing ...",
"llama3_caption": null, "gpt": {"summary": {"brief": ..., "detailed": ...}, "action": {"brief":
"Speak about the dog park", "detailed": ..., "actor": "Man in a green hoodie"}}}``.

What the released examples show, and what the helpers rely on: one root per video (level 0, the
whole video); ``llama3_caption`` is set on exactly the structural leaves; ``gpt`` is set only on
segments of at least about 4 s, so no leaf has one. To pick "the finest action captions" use
``nodes="finest"`` in `select_captions`: the nodes carrying the field none of whose descendants do.

Validation (each failure names the file, the row and the node): ``video_uid`` a non-empty string
unique in the file; at least one node; unique ``node_id``; every ``parent_id`` a node of the same
video; exactly one root; no cycles; ``level`` a non-negative integer; ``start``/``end`` finite with
``0 <= start <= end``; text fields null or non-empty strings. Caption fields are named by their path:
`CAPTION_FIELDS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import InputError
from .generic import import_pyarrow, parquet_files
from .jsonfile import require_key, require_list, require_mapping, require_number, require_string

CAPTION_FIELDS = (
    "plm_caption", "plm_action", "llama3_caption",
    "gpt.summary.brief", "gpt.summary.detailed",
    "gpt.action.brief", "gpt.action.detailed", "gpt.action.actor",
)
NODE_SELECTIONS = ("finest", "leaves", "all")
NO_ACTION_TEXTS = ("N/A",)
_GPT_PARTS = {"summary": ("brief", "detailed"), "action": ("brief", "detailed", "actor")}


@dataclass(frozen=True)
class CaptionNode:
    """One segment of a video's caption tree; the ``gpt.*`` texts are flattened to ``gpt_*`` fields."""

    node_id: str
    parent_id: str | None
    level: int
    start: float
    end: float
    plm_caption: str | None
    plm_action: str | None
    llama3_caption: str | None
    gpt_summary_brief: str | None
    gpt_summary_detailed: str | None
    gpt_action_brief: str | None
    gpt_action_detailed: str | None
    gpt_action_actor: str | None

    def caption(self, field: str) -> str | None:
        """The text of one of `CAPTION_FIELDS` (e.g. ``"gpt.action.brief"``), or ``None``."""
        _check_field(field)
        return getattr(self, field.replace(".", "_"))


@dataclass(frozen=True)
class Action100MVideo:
    """A video and its validated caption tree, nodes in file order."""

    video_uid: str
    nodes: tuple[CaptionNode, ...]
    metadata: dict[str, Any] | None

    @cached_property
    def _children(self) -> dict[str, tuple[CaptionNode, ...]]:
        children: dict[str, list[CaptionNode]] = {node.node_id: [] for node in self.nodes}
        for node in self.nodes:
            if node.parent_id is not None:
                children[node.parent_id].append(node)
        return {key: tuple(value) for key, value in children.items()}

    @property
    def root(self) -> CaptionNode:
        return next(node for node in self.nodes if node.parent_id is None)

    def children(self, node_id: str) -> tuple[CaptionNode, ...]:
        return self._children[node_id]

    def leaves(self) -> tuple[CaptionNode, ...]:
        return tuple(node for node in self.nodes if not self._children[node.node_id])

    def at_level(self, level: int) -> tuple[CaptionNode, ...]:
        return tuple(node for node in self.nodes if node.level == level)


@dataclass(frozen=True)
class CaptionSegment:
    """A (video window, text) pair for zero-shot retrieval or recognition."""

    video_uid: str
    node_id: str
    level: int
    start: float
    end: float
    text: str


def read_videos(path: str | os.PathLike, *, metadata: bool = False) -> list[Action100MVideo]:
    """Every video of a Parquet file or of a directory of ``*.parquet`` shards."""
    return list(iter_videos(path, metadata=metadata))


def iter_videos(path: str | os.PathLike, *, metadata: bool = False, batch_size: int = 256) -> Iterator[Action100MVideo]:
    """Videos one at a time, reading each shard in record batches (the full dataset is large).

    ``metadata=False`` skips the title/description/transcript column, the bulk of the bytes.
    """
    pa, pq = import_pyarrow(path)
    columns = ["video_uid", "nodes"] + (["metadata"] if metadata else [])
    first_seen: dict[str, str] = {}
    for file in parquet_files(Path(path)):
        try:
            handle = pq.ParquetFile(file)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})", path=file) from None
        names = handle.schema_arrow.names
        for name in columns:
            if name not in names:
                raise InputError(f"missing column '{name}' (columns: {', '.join(names)})", path=file)
        index = 0
        for batch in handle.iter_batches(batch_size=batch_size, columns=columns):
            for row in batch.to_pylist():
                where = f"row {index}"
                video = _video(row, file, where, metadata)
                if video.video_uid in first_seen:
                    raise InputError(f"repeats video_uid '{video.video_uid}' of {first_seen[video.video_uid]}",
                                     path=file, field=f"{where}.video_uid")
                first_seen[video.video_uid] = f"{file.name} {where}"
                index += 1
                yield video


def select_captions(videos: Iterable[Action100MVideo], field: str = "gpt.action.brief",
                    nodes: str | int = "finest", min_duration: float = 0.0,
                    no_action: Iterable[str] = NO_ACTION_TEXTS) -> list[CaptionSegment]:
    """The (segment, text) pairs of the chosen nodes that carry ``field``.

    ``nodes``: ``"finest"`` (nodes with the field and no descendant with it), ``"leaves"`` (the
    structural leaves), ``"all"``, or an integer level. Not candidates: nodes where the field is
    null (in this format, "not annotated", not an error), whose text is in ``no_action`` (the
    released GPT captions write ``N/A`` for segments without an action), or shorter than
    ``min_duration`` seconds. Order: videos in order, nodes in file order.
    """
    _check_field(field)
    if not isinstance(nodes, int) and nodes not in NODE_SELECTIONS:
        raise ValueError(f"nodes must be an integer level or one of {NODE_SELECTIONS}, got {nodes!r}")
    skipped = frozenset(no_action)
    segments = []
    for video in videos:
        for node in _chosen_nodes(video, field, nodes):
            text = node.caption(field)
            if text is not None and text not in skipped and node.end - node.start >= min_duration:
                segments.append(CaptionSegment(video.video_uid, node.node_id, node.level, node.start, node.end, text))
    return segments


def caption_vocabulary(segments: Iterable[CaptionSegment]) -> tuple[str, ...]:
    """The distinct texts of ``segments``, sorted: the label set of a zero-shot recognition run."""
    return tuple(sorted({segment.text for segment in segments}))


# --- selection ----------------------------------------------------------------------------------

def _chosen_nodes(video: Action100MVideo, field: str, nodes: str | int) -> tuple[CaptionNode, ...]:
    if nodes == "all":
        return video.nodes
    if nodes == "leaves":
        return video.leaves()
    if isinstance(nodes, int):
        return video.at_level(nodes)
    below = _annotated_below(video, field)
    return tuple(node for node in video.nodes if node.caption(field) is not None and not below[node.node_id])


def _annotated_below(video: Action100MVideo, field: str) -> dict[str, bool]:
    """node_id -> whether any strict descendant carries ``field`` (iterative post-order)."""
    below: dict[str, bool] = {}
    stack: list[tuple[CaptionNode, bool]] = [(video.root, False)]
    while stack:
        node, expanded = stack.pop()
        kids = video.children(node.node_id)
        if not expanded:
            stack.append((node, True))
            stack.extend((kid, False) for kid in kids)
        else:
            below[node.node_id] = any(below[k.node_id] or k.caption(field) is not None for k in kids)
    return below


def _check_field(field: str) -> None:
    if field not in CAPTION_FIELDS:
        raise ValueError(f"unknown caption field {field!r}, expected one of {', '.join(CAPTION_FIELDS)}")


# --- validation ---------------------------------------------------------------------------------

def _video(row: dict, path: Path, where: str, with_metadata: bool) -> Action100MVideo:
    uid = require_string(row["video_uid"], path=path, field=f"{where}.video_uid")
    meta = None
    if with_metadata and row["metadata"] is not None:
        meta = require_mapping(row["metadata"], path=path, field=f"{where}.metadata")
    raw_nodes = require_list(row["nodes"], path=path, field=f"{where}.nodes")
    if not raw_nodes:
        raise InputError(f"video '{uid}' has no nodes", path=path, field=f"{where}.nodes")
    nodes = tuple(_node(node, path, f"{where}.nodes[{j}]") for j, node in enumerate(raw_nodes))
    _check_tree(nodes, path, f"{where}.nodes", uid)
    return Action100MVideo(video_uid=uid, nodes=nodes, metadata=meta)


def _node(entry: Any, path: Path, field: str) -> CaptionNode:
    entry = require_mapping(entry, path=path, field=field)

    def get(name: str) -> Any:
        return require_key(entry, name, path=path, field=field)

    start = require_number(get("start"), path=path, field=f"{field}.start")
    end = require_number(get("end"), path=path, field=f"{field}.end")
    if start < 0:
        raise InputError(f"negative start time {start}", path=path, field=f"{field}.start")
    if end < start:
        raise InputError(f"end {end} is before start {start}", path=path, field=f"{field}.end")
    parent = get("parent_id")
    gpt = _gpt(get("gpt"), path, f"{field}.gpt")
    return CaptionNode(
        node_id=require_string(get("node_id"), path=path, field=f"{field}.node_id"),
        parent_id=None if parent is None else require_string(parent, path=path, field=f"{field}.parent_id"),
        level=_level(get("level"), path, f"{field}.level"),
        start=start,
        end=end,
        plm_caption=_text(get("plm_caption"), path, f"{field}.plm_caption"),
        plm_action=_text(get("plm_action"), path, f"{field}.plm_action"),
        llama3_caption=_text(get("llama3_caption"), path, f"{field}.llama3_caption"),
        **gpt,
    )


def _gpt(value: Any, path: Path, field: str) -> dict[str, str | None]:
    """The five ``gpt`` texts, flattened; a null ``gpt`` (or a null part) leaves them ``None``."""
    texts: dict[str, str | None] = {f"gpt_{part}_{key}": None for part, keys in _GPT_PARTS.items() for key in keys}
    if value is None:
        return texts
    value = require_mapping(value, path=path, field=field)
    for part, keys in _GPT_PARTS.items():
        section = require_key(value, part, path=path, field=field)
        if section is None:
            continue
        section = require_mapping(section, path=path, field=f"{field}.{part}")
        for key in keys:
            texts[f"gpt_{part}_{key}"] = _text(require_key(section, key, path=path, field=f"{field}.{part}"),
                                               path, f"{field}.{part}.{key}")
    return texts


def _text(value: Any, path: Path, field: str) -> str | None:
    return None if value is None else require_string(value, path=path, field=field)


def _level(value: Any, path: Path, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"expected a non-negative integer level, got {value!r}", path=path, field=field)
    return value


def _check_tree(nodes: tuple[CaptionNode, ...], path: Path, field: str, uid: str) -> None:
    """Unique ids, known parents, one root, no cycles: the nodes form one tree."""
    position: dict[str, int] = {}
    for j, node in enumerate(nodes):
        if node.node_id in position:
            raise InputError(f"node_id '{node.node_id}' repeats {field}[{position[node.node_id]}]", path=path,
                             field=f"{field}[{j}].node_id")
        position[node.node_id] = j
    roots = [j for j, node in enumerate(nodes) if node.parent_id is None]
    for j, node in enumerate(nodes):
        if node.parent_id is not None and node.parent_id not in position:
            raise InputError(f"parent '{node.parent_id}' is not a node of video '{uid}'", path=path,
                             field=f"{field}[{j}].parent_id")
    if len(roots) != 1:
        where = ", ".join(f"nodes[{j}]" for j in roots) or "none"
        raise InputError(f"video '{uid}' must have exactly one root (parent_id null), found {len(roots)}: {where}",
                         path=path, field=field)
    _check_acyclic(nodes, position, path, field)


def _check_acyclic(nodes: tuple[CaptionNode, ...], position: dict[str, int], path: Path, field: str) -> None:
    """Every node reaches the root; a walk that revisits a node is a cycle."""
    reaches_root: set[str] = set()
    for j, node in enumerate(nodes):
        trail: set[str] = set()
        current: CaptionNode | None = node
        while current is not None and current.node_id not in reaches_root:
            if current.node_id in trail:
                raise InputError(f"node '{node.node_id}' is on a parent cycle", path=path,
                                 field=f"{field}[{j}].parent_id")
            trail.add(current.node_id)
            current = None if current.parent_id is None else nodes[position[current.parent_id]]
        reaches_root.update(trail)
