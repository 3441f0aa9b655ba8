"""Video decoding and frame sampling: from a clip request and a model's frame spec to a tensor.

The flow: a task builds `ClipRequest`s (segment, context, minimum length, temporal clips,
reversal); the model declares a `FrameSpec` (frames, uniform or fixed-fps sampling, size, crop,
mean/std); `sampling` turns the two into timestamps, `decode` shows the frame at each timestamp
(PyAV, seeking to the nearest keyframe), `transforms` resizes, crops and normalises in torch, and
`dataset` runs all of it in DataLoader workers. `features` reads precomputed feature files for
feature-based temporal localization. Cache keys: ``clip_key(request, spec)``.
"""

from __future__ import annotations

from .clips import ClipFrames, clip_key, decode_clip_frames, load_clip
from .dataset import ClipBatch, ClipDataset, ClipFailure, ClipItem, ClipLoader, clip_loader, collate_clips
from .decode import DecodedFrames, VideoInfo, VideoReader, decode_frames, probe_video, read_last_frame
from .features import FEATURE_SUFFIXES, feature_path, feature_times, read_features
from .request import ClipRequest
from .sampling import ClipPlan, plan_request, resolve_window, sample_times, split_clips
from .spec import (
    ACE_CLIP_FRAMES,
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INSTRACT_CONTEXT_S,
    INSTRACT_MIN_CLIP_S,
    FrameSpec,
    ace_frame_spec,
    instract_frame_spec,
)
from .transforms import apply_frame_spec, center_crop, normalize, resize_short_side, reverse_time, to_float

__all__ = [
    "ACE_CLIP_FRAMES",
    "CLIP_MEAN",
    "CLIP_STD",
    "FEATURE_SUFFIXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INSTRACT_CONTEXT_S",
    "INSTRACT_MIN_CLIP_S",
    "ClipBatch",
    "ClipDataset",
    "ClipFailure",
    "ClipFrames",
    "ClipItem",
    "ClipLoader",
    "ClipPlan",
    "ClipRequest",
    "DecodedFrames",
    "FrameSpec",
    "VideoInfo",
    "VideoReader",
    "ace_frame_spec",
    "apply_frame_spec",
    "center_crop",
    "clip_key",
    "clip_loader",
    "collate_clips",
    "decode_clip_frames",
    "decode_frames",
    "feature_path",
    "feature_times",
    "instract_frame_spec",
    "load_clip",
    "normalize",
    "plan_request",
    "probe_video",
    "read_last_frame",
    "read_features",
    "resize_short_side",
    "resolve_window",
    "reverse_time",
    "sample_times",
    "split_clips",
    "to_float",
]
