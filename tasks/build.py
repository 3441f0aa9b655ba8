"""From a registered task and its files to engine items.

Each annotation format maps to items of one engine (InstrAct Semantic/Logic and ActionBench:
multiple choice; InstrAct-Dynamics: pooled retrieval); perturbations are declared by the task
(`transform`) and applied here as a property of the item (a reversed `ClipRequest`, the antonym
or object-replaced caption), never by copying the data:

- ``antonym_text``          ActionBench AA: the clip against [caption, antonym caption]
- ``object_replaced_text``  ActionBench OR: the clip against [caption, object-replaced caption]
- ``reverse_video``         ActionBench VR: the caption against [clip, clip reversed in time]
"""

from __future__ import annotations

from pathlib import Path

from instract_eval.data.actionbench import probe_texts, read_ego4d, read_ssv2, video_path
from instract_eval.data.instract import read_dynamics, read_logic, read_semantic
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest

from .mcq import MCQItem
from .registry import DataLocation, TaskSpec
from .retrieval import RetrievalItem

__all__ = ["MCQ_FORMATS", "PROBE_OF_TRANSFORM", "mcq_items", "retrieval_items"]

PROBE_OF_TRANSFORM = {"antonym_text": "aa", "object_replaced_text": "or", "reverse_video": "vr"}
MCQ_FORMATS = ("instract-semantic", "instract-logic", "actionbench-ego4d", "actionbench-ssv2")


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
            request = _instract_request(clip, videos, protocol)
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
            request = ClipRequest(str(video_path(row, videos)), row.start or 0.0, row.end, video_id=row.video)
            texts = probe_texts(row, probe)
            if probe == "vr":
                reversed_request = ClipRequest(request.path, request.start, request.end, reverse=True,
                                               video_id=row.video)
                items.append(MCQItem(texts[0], (request, reversed_request), sample_id=f"{spec.name}/{row.where}"))
            else:
                items.append(MCQItem(request, texts, sample_id=f"{spec.name}/{row.where}"))
        return items
    raise InputError(f"task {spec.name}: format '{spec.format}' is not a multiple-choice format "
                     f"({', '.join(MCQ_FORMATS)})", path=spec.source, field=f"tasks.{spec.name}.format")


def retrieval_items(spec: TaskSpec, location: DataLocation) -> list[RetrievalItem]:
    """The pooled retrieval items of a task: InstrAct-Dynamics, one pool per object file."""
    if spec.format != "instract-dynamics":
        raise InputError(f"task {spec.name}: format '{spec.format}' is not a retrieval format (instract-dynamics)",
                         path=spec.source, field=f"tasks.{spec.name}.format")
    videos = location.files["videos"]
    return [
        RetrievalItem(clip.clip.caption, _instract_request(clip.clip, videos, spec.protocol), pool=pool,
                      sample_id=f"{spec.name}/{pool}/{index}")
        for pool, clips in read_dynamics(location.files["annotations"]).items()
        for index, clip in enumerate(clips)
    ]


def _instract_request(clip, videos: Path, protocol) -> ClipRequest:
    """An InstrAct clip (``<videos>/<video_id>.mp4``) with the protocol's context and minimum length."""
    return ClipRequest(str(Path(videos) / f"{clip.video_id}.mp4"), clip.start, clip.end,
                       context_s=float(protocol.get("context_s", 0.0)),
                       min_clip_s=float(protocol.get("min_clip_s", 0.0)), video_id=clip.video_id)
