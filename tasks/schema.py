"""What a task's ``protocol`` may hold, and which metrics its engine reports, per task kind.

Why this exists: the registry used to pass a task's ``protocol`` mapping to the engines as
written, and each engine read the keys it knew with a default. A typo (``frmaes: 8``) then ran
silently with the default frame count, a wrong type surfaced deep in an engine without the file
or the task (``invalid literal for int()``), and a declared headline metric that the engine never
reports (``R@11``) silently vanished from the headline. `check_protocol` and `check_metrics` run
when a registry file is read, so every such mistake is one line naming the file, the task and
the key before anything is decoded.

Each kind has one schema (`PROTOCOL_SCHEMAS`): per key its type and bounds or choices, its
default, the annotation formats that read it (a key another format would ignore is an error),
and what it does. ``size`` is the papers' input side, kept in the task spec and its hash as a
record; the pixels are prepared by the model's own frame spec. The values stay as written in
`TaskSpec.protocol`: the schema only refuses, it never rewrites.

`engine_metrics` names what each engine reports for a task (its R@K for the engine's fixed K,
a localization task's ``mAP@t`` for the thresholds of its preset, SRT's ``srt.*`` only when the
protocol has more than one synonym run), so a declared metric outside it is refused with the
closest names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from instract_eval.errors import InputError
from instract_eval.text import did_you_mean
from instract_eval.metrics.localization import TIOU_THRESHOLD_PRESETS, threshold_key

__all__ = ["Setting", "PROTOCOL_SCHEMAS", "PROBE_OF_TRANSFORM", "MCQ_KS", "RETRIEVAL_KS", "check_protocol",
           "check_metrics", "engine_metrics"]

# The R@K each ranking engine reports (mcq_metrics' and retrieval_metrics' ks).
MCQ_KS = (1, 5)
RETRIEVAL_KS = (1, 5, 10)
# An ActionBench task's transform names its probe; a protocol's ``probe`` must agree with it.
PROBE_OF_TRANSFORM = {"antonym_text": "aa", "object_replaced_text": "or", "reverse_video": "vr"}
ACTIONBENCH_FORMATS = ("actionbench-ego4d", "actionbench-ssv2")
CONFLICTING_DESCRIPTIONS = "conflicting_descriptions"


@dataclass(frozen=True)
class Setting:
    """One protocol key: its type (``integer``, ``number``, ``string``, ``boolean``, ``mapping``),
    its bounds or choices, its default (None: the model's, or nothing), the formats that read it
    (empty: every format of the kind), and for a mapping the schema of its own keys."""

    type: str
    doc: str
    default: Any = None
    minimum: float | None = None
    exclusive: bool = False
    choices: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    keys: Mapping[str, Setting] = field(default_factory=dict)
    check: Callable[[Any], str | None] | None = None
    required: bool = False

    def describe(self) -> str:
        """What a value must be, in words: ``an integer >= 1``, ``one of uniform, fps``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        noun = {"integer": "an integer", "number": "a number", "string": "a non-empty string",
                "boolean": "true or false", "mapping": "a mapping"}[self.type]
        if self.minimum is None:
            return noun
        return f"{noun} {'>' if self.exclusive else '>='} {self.minimum:g}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or None."""
        if not _has_type(value, self.type) or (self.choices and value not in self.choices):
            return f"expected {self.describe()}, got {value!r}"
        if self.minimum is not None and (value <= self.minimum if self.exclusive else value < self.minimum):
            return f"expected {self.describe()}, got {value!r}"
        return self.check(value) if self.check else None


def _has_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "string":
        return isinstance(value, str) and bool(value.strip())
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, dict)


def _one_placeholder(prompt: str) -> str | None:
    return None if prompt.count("{}") == 1 else f"must hold exactly one '{{}}' for the class name, got {prompt!r}"


def _regular_expression(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as error:
        return f"not a valid regular expression ({error})"
    return None


def _frame_settings(*, clip_formats: tuple[str, ...] = ()) -> dict[str, Setting]:
    """The clip keys every decoding kind shares; ``clips`` only where a format reads it."""
    settings = {
        "frames": Setting("integer", "frames per clip (default: the model's)", minimum=1),
        "sampling": Setting("string", "uniform over the window, or frames 1/fps apart (default: the model's)",
                            choices=("uniform", "fps")),
        "fps": Setting("number", "sampling rate, or the grid of uniform sampling (default: the model's)",
                       minimum=0, exclusive=True),
        "size": Setting("integer", "the papers' input side in pixels, recorded; the model's frame spec prepares "
                        "the pixels", minimum=1),
        "context_s": Setting("number", "seconds added on each side of a clip", default=0.0, minimum=0),
        "min_clip_s": Setting("number", "clips shorter than this are widened to it", default=0.0, minimum=0),
    }
    if clip_formats:
        settings["clips"] = Setting("integer", "temporal clips per request, scores averaged (ACE: 3)", default=1,
                                    minimum=1, formats=clip_formats)
    return settings


_SLIDING_WINDOW = {
    "window_s": Setting("number", "window length in seconds", default=1.0, minimum=0, exclusive=True),
    "stride_s": Setting("number", "seconds between window starts", default=0.25, minimum=0, exclusive=True),
    "tau": Setting("number", "softmax temperature of the window scores", default=0.05, minimum=0, exclusive=True),
    "text": Setting("string", "score windows against class names or their descriptions", default="name",
                    choices=("name", "description")),
}

PROTOCOL_SCHEMAS: Mapping[str, Mapping[str, Setting]] = {
    "mcq": {
        **_frame_settings(),
        "max_order_negatives": Setting("integer", "order negatives kept per item (default: all)", minimum=1,
                                       formats=("instract-logic",)),
        "probe": Setting("string", "the ActionBench probe; must match the transform", choices=("aa", "vr", "or"),
                         formats=ACTIONBENCH_FORMATS),
    },
    "retrieval": {
        **_frame_settings(clip_formats=("rows",)),
        "v2t": Setting("string", "V2T rank of a video with several captions: its best caption, or any",
                       default="max_caption", choices=("max_caption", "any_caption")),
    },
    "classification": {
        **_frame_settings(clip_formats=("rows", "srt")),
        "window_s": Setting("number", "ACE's clip duration; must equal frames / fps of sampling: fps",
                            minimum=0, exclusive=True),
        "tau": Setting("number", "logit temperature (ACE: 0.02)", default=1.0, minimum=0, exclusive=True),
        "prompt": Setting("string", "the text a class name is put into", default="{}", check=_one_placeholder),
        "runs": Setting("integer", "synonym runs (default: all of the table's)", minimum=1, formats=("srt",)),
        "leaf_augmentation": Setting("boolean", "score a class by its synonym children", default=False,
                                     formats=("srt",)),
        "dataset": Setting("string", "the synonym table in a data.synonyms file", formats=("srt",)),
    },
    "localization": {
        "tiou_thresholds": Setting("string", "the tIoU threshold preset", choices=tuple(TIOU_THRESHOLD_PRESETS),
                                   required=True),
        "subset": Setting("string", "the ground truth's subset (default: its only one)"),
        "sliding_window": Setting("mapping", "window settings for a dual encoder", keys=_SLIDING_WINDOW),
        "sampling": Setting("string", "the videos' sampling, recorded; localizers decode with their own frame spec",
                            choices=("uniform", "fps")),
        "fps": Setting("number", "the videos' rate, recorded; localizers decode with their own frame spec",
                       minimum=0, exclusive=True),
        "size": Setting("integer", "the videos' side in pixels, recorded", minimum=1),
    },
    "alignment": {
        **_frame_settings(),
        "min_phrases": Setting("integer", "captions with fewer verb phrases are left out", default=2, minimum=1),
        "phrase_separator": Setting("string", "the regular expression that cuts a caption into its steps",
                                    check=_regular_expression),
    },
}


def check_protocol(protocol: Mapping[str, Any], *, kind: str, format: str, transform: str | None,
                   source: str, where: str) -> None:
    """Refuse a protocol with an unknown key, a wrong type or bound, a key its format ignores, or
    values that contradict each other; ``where`` is ``tasks.NAME``."""
    schema = PROTOCOL_SCHEMAS[kind]
    _check_keys(protocol, schema, format=format, source=source, where=f"{where}.protocol")
    _check_probe(protocol, transform, source, where)
    _check_window(protocol, source, where)


def _check_keys(values: Mapping[str, Any], schema: Mapping[str, Setting], *, format: str, source: str,
                where: str) -> None:
    for key, value in values.items():
        at = f"{where}.{key}"
        setting = schema.get(key)
        if setting is None:
            raise InputError(f"unknown key{did_you_mean(str(key), schema) or _known(schema)}", path=source,
                             field=at)
        if setting.formats and format not in setting.formats:
            raise InputError(f"is read only by the format(s) {', '.join(setting.formats)}; format '{format}' "
                             "would ignore it", path=source, field=at)
        problem = setting.problem(value)
        if problem:
            raise InputError(problem, path=source, field=at)
        if setting.keys:
            _check_keys(value, setting.keys, format=format, source=source, where=at)
    for key, setting in schema.items():
        if setting.required and key not in values:
            raise InputError(f"missing required key '{key}' ({setting.describe()})", path=source, field=where)


def _check_probe(protocol: Mapping[str, Any], transform: str | None, source: str, where: str) -> None:
    """An ActionBench protocol's ``probe`` says again what the transform decides; they must agree."""
    if "probe" in protocol and PROBE_OF_TRANSFORM.get(transform or "") != protocol["probe"]:
        raise InputError(f"probe '{protocol['probe']}' contradicts the transform {transform!r}, which makes probe "
                         f"{PROBE_OF_TRANSFORM.get(transform or '', 'none')!r}", path=source,
                         field=f"{where}.protocol.probe")


def _check_window(protocol: Mapping[str, Any], source: str, where: str) -> None:
    """ACE's ``window_s`` is the duration ``frames / fps`` of fps sampling; any other value is not what runs."""
    if "window_s" not in protocol:
        return
    frames, fps = protocol.get("frames"), protocol.get("fps")
    if protocol.get("sampling") != "fps" or frames is None or fps is None:
        raise InputError("window_s is the clip duration of sampling: fps; give it with sampling: fps, frames and fps",
                         path=source, field=f"{where}.protocol.window_s")
    if not math.isclose(protocol["window_s"], frames / fps, rel_tol=1e-9):
        raise InputError(f"window_s {protocol['window_s']:g} is not frames / fps = {frames / fps:g}, the duration "
                         "that is sampled", path=source, field=f"{where}.protocol.window_s")


def engine_metrics(kind: str, format: str, transform: str | None, protocol: Mapping[str, Any]) -> tuple[str, ...]:
    """The metric names the engine of ``kind`` reports for such a task (flattened, as declared)."""
    if kind == "mcq":
        return (*(f"R@{k}" for k in MCQ_KS), "median_rank", "mean_rank", "accuracy", "num_queries", "num_tied")
    if kind == "retrieval":
        per_direction = (*(f"R@{k}" for k in RETRIEVAL_KS), "median_rank", "mean_rank", "num_queries", "num_tied")
        return (*(f"{d}.{m}" for d in ("t2v", "v2t") for m in per_direction),
                *(f"mean.R@{k}" for k in RETRIEVAL_KS))
    if kind == "classification":
        if format != "srt":
            return ("accuracy", "macro_f1")
        names = tuple(f"{group}.{m}" for group in ("seen", "unseen", "hm") for m in ("accuracy", "macro_f1"))
        if protocol.get("runs") == 1:  # one run renames nothing: no mean over runs
            return names
        return (*names, *(f"srt.unseen.{m}{std}" for m in ("accuracy", "macro_f1") for std in ("", ".std")))
    if kind == "localization":
        thresholds = TIOU_THRESHOLD_PRESETS[protocol["tiou_thresholds"]]
        names = (*(f"mAP@{threshold_key(t)}" for t in thresholds), "average_mAP",
                 "hallucination.fixed", "hallucination.repeating")
        if transform == CONFLICTING_DESCRIPTIONS:
            names += ("LAP", "aligned.average_mAP", "conflicting.average_mAP")
        return names
    return ("normalized_dtw_cost", "median_normalized_dtw_cost", "num_items")


def check_metrics(names: Iterable[str], produced: tuple[str, ...], *, kind: str, source: str, where: str) -> None:
    """Refuse a declared metric the engine does not report; ``where`` is ``tasks.NAME.metrics``."""
    for index, name in enumerate(names):
        if name not in produced:
            raise InputError(f"the {kind} engine does not report '{name}' for this task"
                             + (did_you_mean(name, produced) or f" (it reports {', '.join(produced)})"),
                             path=source, field=f"{where}[{index}].name")


def _known(schema: Mapping[str, Setting]) -> str:
    return f" (known: {', '.join(schema)})"
