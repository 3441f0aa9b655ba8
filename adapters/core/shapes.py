"""Sizes: read from a state dict's shapes, given as factory arguments, carried by input clips.

The ported families build their networks from the checkpoint's tensors (as OpenAI's
``build_model`` does), so a published file and a tiny test file go through the same code. What
cannot be read from the shapes is the number of attention heads: the rule every OpenAI-style
checkpoint follows (`openai_heads`) is the default, and an argument overrides it. Each check here
refuses in one line that names the file or the argument, so a wrong file never surfaces later as
a shape error deep inside a forward pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

from instract_eval.errors import InputError

from .base import positive_int

__all__ = ["openai_heads", "heads_for", "count_blocks", "require_shapes", "square_grid", "embedding_width",
           "frame_count", "optional_positive", "require_clips", "require_patch_count", "captions_per_clip"]


def openai_heads(width: int) -> int:
    """OpenAI's head count for a transformer of ``width``: one per 64 channels, at least one."""
    return max(1, width // 64)


def heads_for(given: int | None, width: int, name: str) -> int:
    """``given`` heads (else `openai_heads`), refused in one line naming ``name`` unless they divide the width."""
    heads = given or openai_heads(width)
    if width % heads:
        raise InputError(f"{name}={heads} does not divide the width {width} read from the checkpoint",
                         field="--model-args")
    return heads


def count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many numbered modules sit under ``prefix`` (``"transformer.resblocks."`` -> the layer count)."""
    return len({key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)})


def require_shapes(state: Mapping[str, torch.Tensor], keys: Mapping[str, int], path: os.PathLike | str,
                   family: str) -> None:
    """The keys sizes are read from are present with their number of dimensions (one line if not)."""
    absent = [key for key in keys if key not in state]
    if absent:
        shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        raise InputError(f"does not fit the {family} architecture: missing {shown}", path=path, field="checkpoint")
    for key, ndim in keys.items():
        if state[key].ndim != ndim:
            raise InputError(f"does not fit the {family} architecture: wrong shape of {key} (file "
                             f"{list(state[key].shape)}, expected {ndim} dimensions)", path=path, field="checkpoint")


def square_grid(patches: int, key: str, source: str | os.PathLike) -> int:
    """The side of the square patch grid that ``patches`` positions (class token excluded) make."""
    grid = math.isqrt(max(patches, 0))
    if grid < 1 or grid * grid != patches:
        raise InputError(f"{key} has {patches} patch positions, not a square grid", path=source, field="checkpoint")
    return grid


def embedding_width(state: Mapping[str, torch.Tensor], vision_key: str, text_key: str,
                    source: str | os.PathLike) -> int:
    """The joint embedding width: the columns of the vision and text projections, which must agree."""
    embed = state[vision_key].shape[1]
    if state[text_key].shape[1] != embed:
        raise InputError(f"{vision_key} gives {embed}-d embeddings but {text_key} {state[text_key].shape[1]}-d",
                         path=source, field="checkpoint")
    return embed


def frame_count(family: str, frames: int | None, num_frames: int | None) -> int | None:
    """The frame count of a factory that takes ``frames`` or the official name ``num_frames`` (None: neither)."""
    if frames is not None and num_frames is not None and frames != num_frames:
        raise InputError(f"{family}: frames={frames} and num_frames={num_frames} disagree; give one",
                         field="--model-args")
    if frames is not None:
        return positive_int(family, "frames", frames)
    if num_frames is not None:
        return positive_int(family, "num_frames", num_frames)
    return None


def optional_positive(family: str, **values: int | None) -> None:
    """Each argument that was given is a positive integer (one line naming the first that is not)."""
    for name, value in values.items():
        if value is not None:
            positive_int(family, name, value)


def require_clips(family: str, clips: torch.Tensor) -> None:
    """``clips`` is a ``[B, T, 3, H, W]`` batch of frames."""
    if clips.ndim != 5 or clips.shape[2] != 3:
        raise InputError(f"{family}: encode_video takes [B, T, 3, H, W] frames, got {list(clips.shape)}",
                         field="--model")


def require_patch_count(family: str, clips: torch.Tensor, patches: int, positions: int, image_size: int) -> None:
    """The frames' ``patches`` are as many as the checkpoint has ``positions`` for (trained at ``image_size``)."""
    if patches != positions:
        raise InputError(f"{family}: frames of {clips.shape[-2]}x{clips.shape[-1]} pixels give {patches} patches; "
                         f"this checkpoint has positions for {image_size}x{image_size}", field="--model")


def captions_per_clip(family: str, clips: torch.Tensor, texts: object) -> int:
    """The caption count of a pair scorer's input: ``texts`` must be one list of captions per clip,
    all of one length (the engines batch a clip's candidates together); else one line naming it."""
    if (isinstance(texts, str) or not isinstance(texts, (list, tuple)) or len(texts) != clips.shape[0]
            or any(isinstance(row, str) for row in texts)):
        raise InputError(f"{family}: score takes one list of captions per clip ({clips.shape[0]} lists)",
                         field="texts")
    counts = {len(row) for row in texts}
    if len(counts) > 1:
        raise InputError(f"{family}: every clip needs the same number of captions, got {sorted(counts)}",
                         field="texts")
    return counts.pop() if counts else 0
