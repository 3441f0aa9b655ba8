"""``vtimellm``: VTimeLLM (Huang et al., CVPR 2024), a video LLM that answers with relative timestamps.

Our own implementation, written from the paper and the published checkpoint layout (the official
code is CC-BY-NC-ND: nothing of it is copied here; its outputs on tiny checkpoints are the test
oracle, see ``tests/data/official/vtimellm/``). The model:

- video: 100 frames of the whole video, at frame indices ``linspace(0, frames - 1, 100)`` cut to
  integers, shorter side 224 (bicubic), centre crop 224, CLIP statistics; each frame through
  OpenAI CLIP ViT-L/14's ``encode_image`` (the projected 768-d class token, not normalised; our CLIP
  port `instract_eval.adapters.core.clip_net`);
- a linear projector (stage 1, ``mm_projector.bin``) from 768 to the LLM width: 100 video tokens;
- Vicuna-7B v1.5 (a ``LlamaForCausalLM``) with the LoRA adapters of stage 2 and stage 3 merged into
  its weights, in that order, each as ``W + (alpha / r) B A`` on the modules its
  ``adapter_config.json`` targets (natively: no peft). A stage's ``non_lora_trainables.bin`` (other
  weights trained in that stage) is loaded before its LoRA is merged;
- the prompt is Vicuna's "v1" conversation: ``"{system} USER: <video>\\n{question} ASSISTANT:"``.
  The text around ``<video>`` is tokenised chunk by chunk (each chunk as the tokenizer encodes it
  alone, the begin-of-sequence token kept once, at the start) and the 100 video tokens take the
  place of ``<video>``;
- grounding: the question is ``During which frames can we see {sentence}?`` (the sentence stripped,
  lower-cased, a final full stop dropped) and the answer states positions ``00``-``99`` of the
  100 frames, ``from 12 to 34``: seconds are ``position / 100 * duration``.

As a QA localizer (``answers_in_text``) each (video, class) is one greedy answer to the grounding
question about the class (its description when the task has one). ``answer_parse="official"``
(default) reads the answer as VTimeLLM's evaluation does, the first ``NN to NN`` or ``NN and NN``
(two digits each): one segment or none; ``answer_parse="all"`` reads every time it states with the
shared parser (`instract_eval.adapters.generative.answers`, relative positions). An unparsable
answer is an empty prediction, logged and counted. As a pair scorer it is the shared generative
base (`instract_eval.adapters.generative.scoring`): log-likelihood of the caption as the answer;
its clips come from the task's sampler (``frames`` uniform frames of the clip, the harness's rule),
not from VTimeLLM's ``linspace``, which only the localizer applies to whole videos.

Precision: the official demo and evaluation run float16 on a GPU (base read in float16, LoRA merged
in float16); ``dtype=float32`` (default) merges and runs in float32, ``dtype=float16`` or
``bfloat16`` casts after a float32 merge. The tiny-checkpoint equality is in float32.

Layout (``checkpoint=DIR``, the official ``checkpoints/`` folder): ``clip/ViT-L-14.pt``,
``vicuna-7b-v1.5/`` (a Hugging Face directory with its tokenizer), ``*-stage1/mm_projector.bin``,
``*-stage2/`` and ``*-stage3/`` (peft adapter directories). ``clip=``, ``base=``, ``stage1=``,
``stage2=`` and ``stage3=`` name any of them elsewhere; ``stages=1|2|3`` stops earlier.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import positive_int, require_checkpoint
from ..core.checkpoints import file_sha256, read_checkpoint, unwrap_state_dict
from ..core.clip_net import ClipNet
from ..core.hf import hf_model_directory, hf_tokenizer, load_hf_pretrained, read_hf_config, transformers_class
from ..protocols import LOCALIZER, PAIR_SCORER, Segment
from ..registry import register_model
from .answers import parse_segments
from .scoring import DEFAULT_PROMPT, GenerativeVLM

__all__ = ["VTimeLLM", "VTimeLLMNet", "vtimellm", "vicuna_v1_prompt", "grounding_question", "official_segment",
           "prompt_ids", "merge_lora", "video_frame_indices"]

FAMILY = "vtimellm"
_FIELD = "checkpoint"
VIDEO_TAG = "<video>"
VIDEO_TOKEN = -200          # the placeholder id of a video token in our input ids (never a vocabulary id)
NUM_FRAMES = 100
FEATURE_DIM = 768           # CLIP ViT-L/14's image embedding
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
GROUNDING = "During which frames can we see {}?"
_OFFICIAL_ANSWER = re.compile(r"(\d{2}) (to|and) (\d{2})")
_PARSES = ("official", "all")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ARGS = "--model-args"


# -- prompt ---------------------------------------------------------------------------------------

def vicuna_v1_prompt(question: str) -> str:
    """The Vicuna "v1" conversation of one user turn holding the video, up to the assistant's turn."""
    return f"{SYSTEM} USER: {VIDEO_TAG}\n{question} ASSISTANT:"


def grounding_question(sentence: str) -> str:
    """VTimeLLM's grounding question about ``sentence`` (stripped, lower-cased, final '.' dropped)."""
    sentence = sentence.strip().lower()
    if sentence.endswith("."):
        sentence = sentence[:-1]
    return GROUNDING.format(sentence)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The ids of ``prompt`` with one `VIDEO_TOKEN` where ``<video>`` stands.

    Each chunk between ``<video>`` tags is encoded on its own, as the tokenizer encodes a text (with
    its special tokens); when the first chunk begins with the begin-of-sequence token, that token
    is kept once at the start and dropped from the front of every chunk.
    """
    chunks = [list(tokenizer(chunk)["input_ids"]) for chunk in prompt.split(VIDEO_TAG)]
    bos = getattr(tokenizer, "bos_token_id", None)
    skip = 1 if chunks and chunks[0] and bos is not None and chunks[0][0] == bos else 0
    ids = [chunks[0][0]] if skip else []
    for index, chunk in enumerate(chunks):
        if index:
            ids.append(VIDEO_TOKEN)
        ids.extend(chunk[skip:])
    return ids


def official_segment(answer: str) -> tuple[float, float] | None:
    """The relative ``(start, end)`` in [0, 0.99] of VTimeLLM's evaluation: the first 'NN to NN' / 'NN and NN'."""
    match = _OFFICIAL_ANSWER.search(answer or "")
    if match is None:
        return None
    return float(match.group(1)) / 100.0, float(match.group(3)) / 100.0


def video_frame_indices(frames: int, count: int = NUM_FRAMES) -> np.ndarray:
    """``linspace(0, frames - 1, count)`` cut to integers: the frames VTimeLLM reads."""
    return np.linspace(0, max(frames - 1, 0), count).astype(np.int32)


# -- weights ---------------------------------------------------------------------------------------

def _lora_targets(config: Mapping[str, Any], file: Path) -> tuple[Any, float]:
    if config.get("peft_type", "LORA") != "LORA":
        raise InputError(f"is a {config.get('peft_type')!r} adapter, not LoRA", path=file, field=_FIELD)
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(r, int) or r < 1 or not isinstance(alpha, (int, float)):
        raise InputError(f"needs a positive integer r and a number lora_alpha, got r={r!r}, lora_alpha={alpha!r}",
                         path=file, field=_FIELD)
    if config.get("bias", "none") != "none" or config.get("modules_to_save"):
        raise InputError("trains biases or whole modules (bias, modules_to_save), which this port does not merge",
                         path=file, field=_FIELD)
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    return config.get("target_modules"), float(scale)


def _targeted(name: str, targets: Any) -> bool:
    """peft's rule: a string is a regular expression over the whole name; a list names module suffixes."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == target or name.endswith("." + target) for target in targets or ())


def _adapter_weights(directory: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        file = directory / name
        if file.is_file():
            return file, read_checkpoint(file, family=FAMILY).state_dict
    raise InputError("holds no LoRA weights (adapter_model.safetensors or adapter_model.bin)", path=directory,
                     field=_FIELD)


def merge_lora(llm: nn.Module, directory: Path) -> int:
    """Merge the peft LoRA adapter in ``directory`` into ``llm`` in place; the number of modules changed."""
    config_file = directory / "adapter_config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot be read as JSON ({error})", path=config_file, field=_FIELD) from None
    targets, scale = _lora_targets(config, config_file)
    file, state = _adapter_weights(directory)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
        if match is None:
            raise InputError(f"holds {key!r}, which is not a LoRA weight (…lora_A.weight / …lora_B.weight)",
                             path=file, field=_FIELD)
        pairs.setdefault(match.group(1), {})[match.group(2)] = value
    if not pairs:
        raise InputError("holds no LoRA weights", path=file, field=_FIELD)
    modules = dict(llm.named_modules())
    fan_in_fan_out = bool(config.get("fan_in_fan_out"))
    for name in sorted(pairs):
        module, pair = modules.get(name), pairs[name]
        if not isinstance(module, nn.Linear) or not _targeted(name, targets):
            raise InputError(f"has LoRA weights for {name}, which is not a linear layer of the base model that "
                             f"adapter_config.json targets ({targets})", path=file, field=_FIELD)
        if set(pair) != {"A", "B"}:
            raise InputError(f"has lora_{''.join(pair)} of {name} without its other half", path=file, field=_FIELD)
        delta = pair["B"].float() @ pair["A"].float()
        if fan_in_fan_out:
            delta = delta.T
        if tuple(delta.shape) != tuple(module.weight.shape):
            raise InputError(f"LoRA of {name} gives {list(delta.shape)}, the layer is {list(module.weight.shape)} "
                             "(an adapter of another base model?)", path=file, field=_FIELD)
        with torch.no_grad():
            module.weight.add_((scale * delta).to(module.weight.dtype))
    return len(pairs)


def _non_lora(directory: Path) -> tuple[Path, dict[str, torch.Tensor]] | None:
    file = directory / "non_lora_trainables.bin"
    if not file.is_file():
        return None
    state = {(key[len("base_model."):] if key.startswith("base_model.") else key): value
             for key, value in read_checkpoint(file, family=FAMILY).state_dict.items()}
    if any(key.startswith("model.model.") for key in state):
        state = {(key[len("model."):] if key.startswith("model.") else key): value for key, value in state.items()}
    return file, state


class VTimeLLMNet(nn.Module):
    """CLIP's image tower, the projector and the LLM; ``forward``/``generate`` take ids with video placeholders.

    ``input_ids`` hold `VIDEO_TOKEN` at the positions of the video tokens (as many per row as
    ``features`` has rows); those positions get the projected features, the others the token
    embeddings. ``features``: ``[B, N, 768]`` CLIP features (None: text only).
    """

    def __init__(self, llm: nn.Module, projector: nn.Linear, clip: ClipNet | None):
        super().__init__()
        self.llm = llm
        self.mm_projector = projector
        self.clip = clip

    def embed(self, input_ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        table = self.llm.get_input_embeddings()
        video = input_ids == VIDEO_TOKEN
        embeds = table(input_ids.clamp(min=0))
        if features is None:
            if video.any():
                raise ValueError("input_ids hold video tokens but no features were given")
            return embeds
        projected = self.mm_projector(features.to(self.mm_projector.weight.dtype)).to(embeds.dtype)
        counts = video.sum(dim=1)
        if not bool((counts == projected.shape[1]).all()):
            raise ValueError(f"every row needs {projected.shape[1]} video tokens, got {counts.tolist()}")
        embeds = embeds.clone()
        embeds[video] = projected.reshape(-1, projected.shape[-1])
        return embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                features: torch.Tensor | None = None, **kwargs: Any) -> Any:
        return self.llm(inputs_embeds=self.embed(input_ids, features), attention_mask=attention_mask, **kwargs)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 features: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """The prompt's ids followed by the generated ones (as a decoder's ``generate`` returns them)."""
        new = self.llm.generate(inputs_embeds=self.embed(input_ids, features), attention_mask=attention_mask,
                                **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


def _find(root: Path | None, given: Any, pattern: str, what: str, argument: str) -> Path:
    if given is not None:
        path = Path(os.fspath(given))
        if not path.exists():
            raise InputError("does not exist", path=path, field=argument)
        return path
    found = sorted(root.glob(pattern)) if root is not None and root.is_dir() else []
    if len(found) != 1:
        where = f"{len(found)} matches of {pattern}" if found else f"no {pattern}"
        raise InputError(f"{FAMILY}: {what} not found ({where}); pass {argument}=PATH", path=root, field=argument)
    return found[0]


def load_vtimellm_net(checkpoint: Path | None, *, clip: Any = None, base: Any = None, stage1: Any = None,
                      stage2: Any = None, stage3: Any = None, stages: int = 3) -> tuple[VTimeLLMNet, Any, dict]:
    """The network, the base's tokenizer, and the paths read (see the module docstring)."""
    root = checkpoint if checkpoint is not None and checkpoint.is_dir() else None
    if checkpoint is not None and root is None:
        raise InputError("is not a directory: VTimeLLM's checkpoint is the folder holding clip/, the Vicuna "
                         "base and the stage folders", path=checkpoint, field=_FIELD)
    paths = {"clip": _find(root, clip, "clip/ViT-L-14*.pt", "CLIP ViT-L/14", "clip"),
             "base": _find(root, base, "vicuna-*", "the Vicuna base (a Hugging Face directory)", "base"),
             "stage1": _find(root, stage1, "*stage1/mm_projector.bin", "stage 1's mm_projector.bin", "stage1")}
    if paths["stage1"].is_dir():
        paths["stage1"] = paths["stage1"] / "mm_projector.bin"
    if stages >= 2:
        paths["stage2"] = _find(root, stage2, "*stage2", "the stage 2 LoRA folder", "stage2")
    if stages >= 3:
        paths["stage3"] = _find(root, stage3, "*stage3", "the stage 3 LoRA folder", "stage3")

    directory = hf_model_directory(paths["base"], FAMILY)
    read_hf_config(directory, FAMILY, ("llama",), reads="a LlamaForCausalLM (Vicuna)")
    llm = load_hf_pretrained(transformers_class("LlamaForCausalLM", FAMILY, directory), directory, FAMILY)
    tokenizer = hf_tokenizer(directory, FAMILY)
    if tokenizer is None:
        raise InputError("ships no tokenizer (tokenizer.json or tokenizer.model)", path=directory, field="base")

    projector_state = read_checkpoint(paths["stage1"], family=FAMILY).state_dict
    weights = {key.split("mm_projector.", 1)[1]: value for key, value in projector_state.items()
               if "mm_projector." in key}
    width = llm.config.hidden_size
    if set(weights) != {"weight", "bias"} or tuple(weights["weight"].shape) != (width, FEATURE_DIM):
        shapes = {key: list(value.shape) for key, value in projector_state.items()}
        raise InputError(f"is not a VTimeLLM stage-1 projector for a {width}-wide LLM (expected "
                         f"mm_projector.weight [{width}, {FEATURE_DIM}] and mm_projector.bias; found {shapes})",
                         path=paths["stage1"], field="stage1")
    projector = nn.Linear(FEATURE_DIM, width)
    projector.load_state_dict({key: value.float() for key, value in weights.items()})

    for stage in ("stage2", "stage3"):
        if stage not in paths:
            continue
        extra = _non_lora(paths[stage])
        if extra is not None:
            file, state = extra
            own = {f"model.mm_projector.{key}": value for key, value in projector.state_dict().items()}
            own.update({key: value for key, value in llm.state_dict().items()})
            unknown = [key for key in state if key not in own or tuple(own[key].shape) != tuple(state[key].shape)]
            if unknown:
                raise InputError(f"holds {unknown[0]}, which is no weight of the model (or has another shape)",
                                 path=file, field=stage)
            with torch.no_grad():
                for key, value in state.items():
                    own[key].copy_(value)
        merge_lora(llm, paths[stage])

    clip_state = unwrap_state_dict(read_checkpoint(paths["clip"], family=FAMILY)).state_dict
    clip_net = ClipNet.from_state_dict(clip_state, paths["clip"], family=FAMILY)
    if clip_net.dims.embed_dim != FEATURE_DIM:
        raise InputError(f"gives {clip_net.dims.embed_dim}-d image embeddings; VTimeLLM's projector reads "
                         f"{FEATURE_DIM}-d ones (CLIP ViT-L/14)", path=paths["clip"], field="clip")
    clip_net.float()
    return VTimeLLMNet(llm.float().eval(), projector, clip_net).eval(), tokenizer, paths


# -- the adapter ----------------------------------------------------------------------------------

class VTimeLLM(GenerativeVLM):
    """VTimeLLM as a QA localizer (relative timestamps) and a log-likelihood pair scorer."""

    name = FAMILY
    relative_timestamps = True
    timestamp_scale = 100.0

    def __init__(self, net: VTimeLLMNet, tokenizer: Any, *, spec: FrameSpec, checkpoint: Path | None,
                 answer_parse: str = "official", **kwargs: Any):
        if answer_parse not in _PARSES:
            raise InputError(f"{FAMILY}: answer_parse must be one of {', '.join(_PARSES)}, got {answer_parse!r}",
                             field=_ARGS)
        super().__init__(net, tokenizer, spec=spec, checkpoint=checkpoint, **kwargs)
        self.answer_parse = answer_parse
        self._settings += f";answer_parse={answer_parse}"

    # -- the base's hooks

    def video_features(self, clip: torch.Tensor) -> torch.Tensor:
        """``[T, 3, H, W]`` prepared frames to ``[1, T, 768]`` CLIP features."""
        return self.net.clip.encode_image(clip.to(self.device)).float()[None]

    def inputs_for_features(self, features: torch.Tensor, question: str) -> dict[str, torch.Tensor]:
        ids = prompt_ids(self.tokenizer, vicuna_v1_prompt(question))
        expanded: list[int] = []
        for token in ids:
            expanded.extend([VIDEO_TOKEN] * features.shape[1] if token == VIDEO_TOKEN else [token])
        input_ids = torch.tensor([expanded], dtype=torch.long, device=self.device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "features": features}

    def prompt_inputs(self, clip: torch.Tensor, question: str, fps: float | None = None) -> dict[str, torch.Tensor]:
        return self.inputs_for_features(self.video_features(clip), question)

    # -- localizing

    def localize_question(self, label: str, description: str | None, duration: float = 0.0) -> str:
        # VTimeLLM answers in positions 0-99 of the video, so its question states no duration.
        return grounding_question(description or label)

    def answer_features(self, features: torch.Tensor, question: str) -> str:
        return self.generate_answer(self.inputs_for_features(features, question))

    def segments_of(self, answer: str, duration: float) -> list[tuple[float, float]] | None:
        if self.answer_parse == "official":
            found = official_segment(answer)
            return None if found is None else [(found[0] * duration, found[1] * duration)]
        return parse_segments(answer, duration, relative=True, scale=self.timestamp_scale)

    def read_video(self, video: str) -> tuple[torch.Tensor, float]:
        """VTimeLLM's 100 frames of ``video``, prepared (``[100, 3, 224, 224]``), and its duration in seconds."""
        from instract_eval.media import apply_frame_spec, decode_frames, probe_video

        info = probe_video(video)
        fps = info.average_fps or 0.0
        frames = info.num_frames or (int(round(info.duration * fps)) if fps > 0 else 0)
        if fps <= 0 or frames < 1:
            raise InputError("states no frame rate or frame count, which VTimeLLM's frame choice needs", path=video)
        times = video_frame_indices(frames, self.spec.num_frames) / fps
        decoded = decode_frames(video, np.minimum(times, max(info.duration, 0.0)))
        return apply_frame_spec(decoded.frames, self.spec), float(info.duration)

    def localize(self, video: str, classes: Sequence[str],
                 descriptions: Mapping[str, str] | None) -> list[Segment]:
        """One grounding answer per class; the video's features are computed once."""
        frames, duration = self.read_video(os.fspath(video))
        with torch.no_grad():
            features = self.video_features(frames)
        segments: list[Segment] = []
        for label in classes:
            description = descriptions.get(label) if descriptions else None
            text = self.answer_features(features, self.localize_question(label, description))
            parsed = self.segments_of(text, duration)
            self.answer_log.append({"video": os.fspath(video), "class": label, "answer": text,
                                    "parsed": parsed is not None, "segments": [list(s) for s in parsed or []]})
            segments.extend(Segment(float(start), float(end), label, 1.0) for start, end in parsed or [])
        return segments


def vtimellm_frame_spec(frames: int = NUM_FRAMES, size: int = 224) -> FrameSpec:
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=size, mean=CLIP_MEAN, std=CLIP_STD,
                     interpolation="bicubic")


_TSINGHUA = "https://cloud.tsinghua.edu.cn/d/6db5d02883124826aa6f/"
CARD = ModelCard(
    family=FAMILY,
    description="VTimeLLM: CLIP ViT-L/14 features of 100 frames, a linear projector, Vicuna-7B v1.5 with its "
                "LoRA stages merged; grounding answers 'from NN to NN' (positions 00-99)",
    capabilities=(LOCALIZER, PAIR_SCORER),
    tags=(WeightTag(name="vicuna-7b", source="user", frame_spec=vtimellm_frame_spec(),
                    where=f"checkpoint=DIR, the official checkpoints/ folder: clip/ViT-L-14.pt (OpenAI CLIP, or "
                          f"clip=PATH), vicuna-7b-v1.5/ (lmsys/vicuna-7b-v1.5 from the Hugging Face hub, or "
                          f"base=PATH), vtimellm-vicuna-v1-5-7b-stage1/mm_projector.bin, "
                          f"vtimellm-vicuna-v1-5-7b-stage2/ and -stage3/ from Tsinghua Cloud ({_TSINGHUA}, "
                          f"checkpoints/)",
                    notes="Tsinghua Cloud serves the stage files only through its web page: download them by hand"),),
    default_tag="vicuna-7b",
    frame_spec=vtimellm_frame_spec(),
    tokenizer="the Vicuna base's own (AutoTokenizer of base/: tokenizer.json, or tokenizer.model, which needs the "
              "sentencepiece and protobuf packages)",
    code_licence="CC-BY-NC-ND 4.0 (huangb23/VTimeLLM; not vendored: this is our own implementation)",
    weights_licence="CC-BY-NC-ND 4.0 (VTimeLLM stages); Llama 2 Community Licence (Vicuna v1.5); MIT (CLIP)",
    paper="Huang, Wang, Chen, Yang, Zhu. VTimeLLM: Empower LLM to Grasp Video Moments. CVPR 2024. "
          "arXiv:2311.18445",
    citation="huang2024vtimellm",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the VTimeLLM stage files are on Tsinghua Cloud (no direct download): pass checkpoint=DIR",
    checkpoint_formats=("the official checkpoints/ folder: OpenAI CLIP .pt (TorchScript or state dict), a Hugging Face "
                        "LlamaForCausalLM directory, torch.save'd mm_projector.bin, peft LoRA folders "
                        "(adapter_config.json + adapter_model.bin/.safetensors, non_lora_trainables.bin)",),
)


def _part_identity(part: Path, folder: Path) -> str:
    """A part of the model as the cache key sees it: its place in the checkpoint folder, or, for a
    part from outside it, the SHA-256 of its contents."""
    if part.resolve().is_relative_to(Path(folder).resolve()):
        return part.resolve().relative_to(Path(folder).resolve()).as_posix()
    return file_sha256(part)


@register_model(FAMILY, card=CARD)
def vtimellm(checkpoint: str | os.PathLike | None = None, clip: str | os.PathLike | None = None,
             base: str | os.PathLike | None = None, stage1: str | os.PathLike | None = None,
             stage2: str | os.PathLike | None = None, stage3: str | os.PathLike | None = None, stages: int = 3,
             frames: int = NUM_FRAMES, size: int = 224, max_new_tokens: int = 64, answer_parse: str = "official",
             protocol: str = "likelihood", normalisation: str = "mean", reuse_prefix: bool = True,
             prompt: str = DEFAULT_PROMPT, dtype: str = "float32") -> VTimeLLM:
    """VTimeLLM from the official ``checkpoints/`` folder (see the module docstring).

    ``stages``: 1 (projector only), 2 or 3 (default: both LoRA stages, as the official demo and
    evaluation). ``frames``/``size``: 100 and 224 as published. ``max_new_tokens``: the greedy
    answer's length limit. ``answer_parse``: ``official`` (the first 'NN to NN') or ``all``.
    ``dtype``: ``float32`` (default), or ``float16`` as the official demo and evaluation run on a
    GPU (the weights are merged in float32 first), or ``bfloat16``.
    """
    path = require_checkpoint(FAMILY, checkpoint)
    if stages not in (1, 2, 3) or isinstance(stages, bool):
        raise InputError(f"{FAMILY}: stages must be 1, 2 or 3, got {stages!r}", field=_ARGS)
    positive_int(FAMILY, "frames", frames)
    positive_int(FAMILY, "size", size)
    if dtype not in _DTYPES:
        raise InputError(f"{FAMILY}: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}", field=_ARGS)
    net, tokenizer, paths = load_vtimellm_net(path, clip=clip, base=base, stage1=stage1, stage2=stage2,
                                              stage3=stage3, stages=stages)
    net.to(_DTYPES[dtype])
    # The checkpoint folder's hash covers the parts inside it; a part given from elsewhere
    # (clip=, base=, stage*=) joins the cache key by its own hash, so another file never reads
    # what this one cached.
    settings = ";".join(f"{key}={_part_identity(Path(value), path)}" for key, value in paths.items())
    settings += f";dtype={dtype}"
    return VTimeLLM(net, tokenizer, spec=vtimellm_frame_spec(frames, size), checkpoint=path,
                    answer_parse=answer_parse, max_new_tokens=max_new_tokens, protocol=protocol,
                    normalisation=normalisation, reuse_prefix=reuse_prefix, prompt=prompt,
                    settings=f"stages={stages};{settings}")
