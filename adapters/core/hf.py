"""Hugging Face ``save_pretrained`` directories, read offline through transformers and checked.

Families whose published weights are Hugging Face directories (X-CLIP, SigLIP 2, CLIP's and
CLIP4Clip's hub ports) load them with ``from_pretrained(local_files_only=True)``. transformers
re-initialises a missing weight with only a warning and turns a mis-shaped one into a long report,
so `load_hf_pretrained` asks for the loading info and refuses either, and unexpected weights too,
in one `InputError` line that names the weights file and the first offending keys. The rest reads
what such a directory ships beside the weights: ``config.json`` (`read_hf_config`), the image
processor settings (`preprocessor_config` and its PIL resampling codes), the tokenizer
(`hf_tokenizer`), and the outputs of the ``get_*_features`` methods, which transformers 5 returns
as model outputs rather than tensors (`pooled_features`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError

__all__ = ["hf_model_directory", "read_hf_config", "transformers_class", "load_hf_pretrained", "preprocessor_config",
           "processor_triple", "processor_interpolation", "hf_tokenizer", "pooled_features", "through_end_token"]

_FIELD = "checkpoint"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")
_PIL_INTERPOLATION = {2: "bilinear", 3: "bicubic"}   # PIL resample codes in preprocessor configs


def hf_model_directory(path: Path, model: str) -> Path:
    """The ``save_pretrained`` directory of ``path`` (the directory itself, or one of its weight files)."""
    if path.is_file() and path.name in _WEIGHT_FILES and (path.parent / "config.json").is_file():
        return path.parent
    if not path.exists():
        raise InputError("does not exist", path=path, field=_FIELD)
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InputError(f"is not a Hugging Face model directory (config.json plus weights, as save_pretrained "
                         f"writes and the hub serves) that {model} reads", path=path, field=_FIELD)
    return path


def read_hf_config(directory: Path, model: str, model_types: Sequence[str], *,
                   reads: str | None = None) -> dict[str, Any]:
    """``config.json`` as a dict, refused when its ``model_type`` is not one ``model`` reads.

    ``reads`` names what is read in the refusal ("a CLIPModel"); by default, the model types.
    """
    config_file = directory / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot be read as JSON ({error})", path=config_file, field=_FIELD) from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in model_types:
        wanted = reads or f"one {model} reads ({', '.join(model_types)})"
        raise InputError(f"is a {kind!r} model, not {wanted}", path=config_file, field=_FIELD)
    return config


def transformers_class(name: str, model: str, path: Path) -> Any:
    """The class ``transformers.<name>``, or one line saying ``model`` needs transformers."""
    try:
        import transformers

        return getattr(transformers, name)
    except (ImportError, AttributeError):
        raise InputError(f"{model} needs transformers (pip install transformers)", path=path, field=_FIELD) from None


def _weights_file(directory: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise InputError(f"holds no weights ({' or '.join(_WEIGHT_FILES)})", path=directory, field=_FIELD)


def _first(keys: Sequence[str], shown: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def load_hf_pretrained(cls: Any, directory: Path, model: str) -> Any:
    """``cls.from_pretrained(directory)`` offline in float32, in eval mode, every weight accounted for.

    transformers re-initialises a missing weight with a warning and raises a long report for a
    mis-shaped one. Here either one is a single `InputError` that names the weights file and the
    first offending keys. Unexpected keys are refused too (another model's weights under this config),
    except the ``position_ids`` buffers that old transformers versions saved.
    """
    from transformers.utils import logging as hf_logging

    import pickle

    from safetensors import SafetensorError

    weights = _weights_file(directory)
    verbosity, progress = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        net, info = cls.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32,
                                        output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, SafetensorError, pickle.UnpicklingError) as error:
        raise InputError(f"cannot be loaded as {cls.__name__} (truncated or not a weights file?): "
                         f"{(str(error).strip().splitlines() or [type(error).__name__])[0]}",
                         path=weights, field=_FIELD) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()
    missing = list(info.get("missing_keys") or ())
    unexpected = [k for k in info.get("unexpected_keys") or () if not k.endswith("position_ids")]
    mismatched = list(info.get("mismatched_keys") or ())
    problems = []
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    if mismatched:
        shown = sorted(mismatched, key=lambda item: item[0])[:3]
        shapes = ", ".join(f"{key} (file {list(file)}, model {list(expected)})" for key, file, expected in shown)
        more = f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
        problems.append(f"wrong shape of {shapes}{more}")
    if problems:
        raise InputError(f"does not fit the {cls.__name__} of its config.json ({model}): {'; '.join(problems)}",
                         path=weights, field=_FIELD)
    return net.eval()


def preprocessor_config(directory: Path, *, video: bool = False) -> dict[str, Any]:
    """The image processor settings the directory ships (``preprocessor_config.json``, or the
    ``image_processor`` part of a ``processor_config.json``); with ``video``, the video processor's
    (``video_preprocessor_config.json``) first; ``{}`` when it ships none."""
    sources = (("preprocessor_config.json", None), ("processor_config.json", "image_processor"))
    if video:
        sources = (("video_preprocessor_config.json", None), *sources)
    for name, part in sources:
        file = directory / name
        if file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise InputError(f"cannot be read as JSON ({error})", path=file, field=_FIELD) from None
            data = data.get(part, {}) if part else data
            if isinstance(data, dict) and data:
                return data
    return {}


def hf_tokenizer(directory: Path, model: str) -> Any | None:
    """The directory's own tokenizer through ``AutoTokenizer`` (offline), or None when it ships none."""
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, ImportError, TypeError) as error:
        raise InputError(f"{model}: cannot load the tokenizer it ships: {str(error).strip().splitlines()[0]}",
                         path=directory, field=_FIELD) from None


def processor_triple(value: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    """A processor's per-channel entry (``image_mean``, ``image_std``) as three floats, else ``default``."""
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    return default


def processor_interpolation(processor: dict[str, Any], default: str) -> str:
    """The processor's ``resample`` (a PIL code) as a frame-spec interpolation, else ``default``."""
    return _PIL_INTERPOLATION.get(processor.get("resample"), default)


def pooled_features(output: Any) -> torch.Tensor:
    """A ``get_image_features``/``get_text_features`` result as its tensor: transformers 5 returns a
    model output, whose projected embedding is the first of ``image_embeds``, ``text_embeds``,
    ``pooler_output`` it has."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"unexpected transformers output {type(output).__name__}")


def through_end_token(ids: torch.Tensor) -> torch.Tensor:
    """The attention mask of the positions up to each row's end token (its highest id), for OpenAI BPE ids.

    Not ``ids != 0``: id 0 is the BPE token "!", a real token inside a caption such as "stop!~".
    """
    positions = torch.arange(ids.shape[1], device=ids.device)
    return (positions[None] <= ids.argmax(dim=-1, keepdim=True)).long()
