"""``bike``: BIKE (Wu et al., CVPR 2023), the video branch, scored as its official test script scores.

Why a pair scorer. BIKE's published recognition models score a video against a class with *video
concept spotting* (VCS, ``modules/video_clip.py:video_header``): the per-frame CLIP features go
through a 6-layer temporal transformer (plus frame positions, with a residual to the input
features), every frame and every text-token feature is L2-normalised, each text's tokens pick the
frames that match them (softmax over frames of ``token . frame / 0.01``, averaged over **all** the
context positions, padding included), and the score is the weighted frame sum dotted with the
normalised end-token feature. The video vector therefore depends on the text: no single video
embedding and text embedding reproduce the score, and the harness's engines rank dual encoders
by cosine of such embeddings. So this adapter is a `PAIR_SCORER` (``score``) only, and does not
expose ``encode_video``/``encode_text`` (a dual-encoder view would be picked first by the
multiple-choice engine and rank by a score BIKE never computes). The parts are public under other
names for analysis and tests: ``video_features`` (``[B, T, D]`` after the temporal head),
``text_features`` (end-token ``[N, D]`` and per-token ``[N, L, D]`` features) and ``logits`` (the
official ``[B, N]`` matrix of every video against every text). The test script applies no logit
scale (training multiplies by ``exp(logit_scale)``; ``softmax`` at test time ranks the same), so
neither does ``score``.

Porting facts (github.com/whwu95/BIKE at e8f6a8b8b573878e03d1c06246d830d65bf87799):

- the file is ``{'epoch', 'model_state_dict', 'fusion_model_state_dict', 'optimizer_state_dict'}``
  (``utils/utils.py:best_saving``), everything float32; ``model_state_dict`` is a whole OpenAI CLIP
  (text tower included, frozen in training) under OpenAI's key names, built here by the shared port
  `instract_eval.adapters.core.clip_net` with every size from the shapes; the optimizer state is
  ignored;
- the head (``fusion_model_state_dict``): ``frame_position_embeddings`` with as many rows as the
  text context (77), so at most 77 frames; 6 pre-norm residual blocks of the embed width with
  TF-style LayerNorm (eps 1e-12, the same arithmetic as ``nn.LayerNorm``) and **text width // 64
  heads** (the official builder takes them from ``ln_final``, not from the head's own width);
  layers and widths are read from the file. An empty head dict is the ``sim_header: None``
  variant (few-shot configs): VCS directly on the CLIP frame features;
- ``interaction="DP"`` (not recorded in the file) is the other official scoring: cosine of the
  frame-mean and the end-token feature;
- text is OpenAI's BPE at the checkpoint's context (77), cut as ``clip.tokenize(truncate=True)``;
  the official ``text_prompt`` wraps class names as ``"This is a video about {}"`` (``prompt=``
  applies such a template; by default texts are used as given). A token table smaller than
  OpenAI's 49,408 rows (only tiny test files have one) reads text with the first ``rows - 514``
  merges of the same BPE, the rule those files were written with;
- frames: 8 per clip (``num_segments``), shorter side to 256 bicubic and a 224 centre crop for
  224-px models (``scale_size = 256 if input_size == 224 else input_size``), CLIP mean/std. The
  official loader takes each segment's first frame; the harness's uniform sampling takes segment
  midpoints.

Not ported: the attribute branch (``train_attributes.py``, ``sentence_text_logit``): the released
"V+A" numbers are a fusion of saved score files, not a checkpoint.
"""

from __future__ import annotations

import functools
import gzip
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import load_strict, read_checkpoint, strip_prefix
from ..core.clip_net import ClipNet, FrameTransformer
from ..core.shapes import count_blocks, openai_heads
from ..core.tokenizers import ClipBPE, clip_bpe, openai_tokenize
from ..protocols import PAIR_SCORER
from ..registry import register_model

__all__ = ["BikeAdapter", "BikeHead", "bike", "bike_frame_spec", "vcs_logits", "vcs_pair_scores"]

FAMILY = "bike"
_FIELD = "checkpoint"
_RELEASE = "https://github.com/whwu95/BIKE/releases/download/v1.0"
_ONEDRIVE = ("https://unisyd-my.sharepoint.com/:f:/g/personal/wenhao_wu_sydney_edu_au/"
             "EieZBg9a40VAhSIVl6ovAIIBaCuzYamkfE1dMn6MxjjwGg?e=JcqYk4")
_TEMPERATURE = 0.01  # video concept spotting: softmax over frames at this temperature
_INTERACTIONS = ("VCS", "DP")
_BYTE_SYMBOLS_AND_SPECIALS = 2 * 256 + 2


def bike_frame_spec(image_size: int, frames: int = 8) -> FrameSpec:
    """The official test transform: shorter side to 256 (224-px models) or to the input size, centre crop."""
    scale = 256 if image_size == 224 else image_size
    return FrameSpec(num_frames=frames, sampling="uniform", size=scale, crop=image_size, mean=CLIP_MEAN,
                     std=CLIP_STD, interpolation="bicubic")


def _onedrive_tag(name: str, file_hint: str, frames: int, size: int, notes: str) -> WeightTag:
    return WeightTag(name=name, source="user", args={"frames": frames}, frame_spec=bike_frame_spec(size, frames),
                     where=f"the authors' OneDrive folder {_ONEDRIVE} ({file_hint}); pass checkpoint=PATH",
                     notes=notes)


CARD = ModelCard(
    family=FAMILY,
    description="BIKE video branch: CLIP + temporal transformer, video concept spotting score (pair scorer)",
    capabilities=(PAIR_SCORER,),
    tags=(
        WeightTag(name="k400-vit-b-16-f8", source="url", url=f"{_RELEASE}/k400-vit-b-16-f8.pt", args={"frames": 8},
                  frame_spec=bike_frame_spec(224, 8), notes="Kinetics-400, ViT-B/16, 8x224, 84.0% top-1 (4x3 views)"),
        _onedrive_tag("k400-vit-l-14-f8", "Kinetics-400 ViT-L/14 8 frames", 8, 224,
                      "Kinetics-400 87.4%; the paper's zero-shot model"),
        _onedrive_tag("k400-vit-l-14-f16", "Kinetics-400 ViT-L/14 16 frames", 16, 224, "Kinetics-400 88.1%"),
        _onedrive_tag("k400-vit-l-14-336-f8", "Kinetics-400 ViT-L/14-336 8 frames", 8, 336, "Kinetics-400 88.3%"),
        _onedrive_tag("k400-vit-l-14-336-f16", "Kinetics-400 ViT-L/14-336 16 frames", 16, 336, "Kinetics-400 88.7%"),
        _onedrive_tag("anet-vit-l-14-f16", "ActivityNet ViT-L/14 16 frames", 16, 224, "ActivityNet 94.4% top-1"),
        _onedrive_tag("anet-vit-l-14-336-f16", "ActivityNet ViT-L/14-336 16 frames", 16, 336,
                      "ActivityNet 94.7% top-1"),
        _onedrive_tag("charades-vit-l-14-336-f16", "Charades ViT-L/14-336 16 frames", 16, 336, "Charades 50.7 mAP"),
        _onedrive_tag("ucf101-vit-l-14-f16", "UCF-101 ViT-L/14 16 frames", 16, 224, "UCF-101 98.7%"),
        _onedrive_tag("ucf101-vit-l-14-336-f16", "UCF-101 ViT-L/14-336 16 frames", 16, 336, "UCF-101 98.9%"),
        _onedrive_tag("hmdb51-vit-l-14-f16", "HMDB-51 ViT-L/14 16 frames", 16, 224, "HMDB-51 82.9%"),
        _onedrive_tag("hmdb51-vit-l-14-336-f16", "HMDB-51 ViT-L/14-336 16 frames", 16, 336, "HMDB-51 84.3%"),
    ),
    default_tag="k400-vit-b-16-f8",
    frame_spec=bike_frame_spec(224, 8),
    tokenizer="OpenAI CLIP BPE (shipped), context 77, clip.tokenize(truncate=True)",
    code_licence="MIT (whwu95/BIKE)",
    weights_licence="not stated by the authors (repository MIT); CLIP weights MIT",
    paper=("Wu, Wang, Luo, Wang, Yang, Ouyang. Bidirectional Cross-Modal Knowledge Exploration for Video "
           "Recognition with Pre-trained Vision-Language Models. CVPR 2023 (arXiv 2301.00182)"),
    citation="wu2023bidirectional",
    checkpoint_formats=("BIKE training checkpoint (.pt: model_state_dict + fusion_model_state_dict)",),
    code_version="1",
)


class BikeHead(FrameTransformer):
    """The temporal head (``video_header`` with ``sim_header: Transf``): frames + positions -> blocks, + residual.

    ``[B, T, D]`` frame features to ``[B, T, D]`` (not normalised): the shared `FrameTransformer`,
    whose default LayerNorm is this head's TF-style one (eps 1e-12).
    """


def _units(*features: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each feature tensor in float32, L2-normalised over its last axis."""
    return tuple(F.normalize(feature.float(), dim=-1) for feature in features)


def vcs_logits(video: torch.Tensor, cls: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Video concept spotting for every pair: ``[B, T, D]`` videos, ``[N, D]`` + ``[N, L, D]`` texts -> ``[B, N]``."""
    video, cls, tokens = _units(video, cls, tokens)
    weights = torch.softmax(torch.einsum("nld,btd->nblt", tokens, video) / _TEMPERATURE, dim=-1).mean(dim=2)
    spotted = torch.einsum("nbt,btd->nbd", weights, video)
    return torch.einsum("nbd,nd->nb", spotted, cls).T


def vcs_pair_scores(video: torch.Tensor, cls: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The same score for each video's own texts: ``[B, T, D]``, ``[B, C, D]``, ``[B, C, L, D]`` -> ``[B, C]``."""
    video, cls, tokens = _units(video, cls, tokens)
    weights = torch.softmax(torch.einsum("bcld,btd->bclt", tokens, video) / _TEMPERATURE, dim=-1).mean(dim=2)
    spotted = torch.einsum("bct,btd->bcd", weights, video)
    return (spotted * cls).sum(dim=-1)


def _dp_units(video: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``DP`` interaction's unit vectors: the frame-mean ``[B, D]`` and the end-token features."""
    return _units(video.float().mean(dim=1), cls)


class BikeAdapter(TorchAdapter):
    """CLIP towers + BIKE's temporal head, scoring (clip, caption) pairs with the official interaction."""

    name = FAMILY

    def __init__(self, net: ClipNet, head: BikeHead | None, *, interaction: str, prompt: str | None,
                 tokenizer: ClipBPE, spec: FrameSpec, checkpoint: Path):
        settings = f"interaction={interaction};prompt={prompt!r}"
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.head = head
        self.interaction = interaction
        self.prompt = prompt
        self.tokenizer = tokenizer
        self.context_length = net.dims.context_length
        self.max_frames = None if head is None else head.frame_position_embeddings.num_embeddings

    # -- the parts -------------------------------------------------------------------------------

    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` frames to ``[B, T, D]``: CLIP per frame, then the temporal head (if any)."""
        if clips.ndim != 5:
            raise InputError(f"{self.name}: clips must be [B, T, 3, H, W], got shape {list(clips.shape)}",
                             field="clips")
        batch, steps = clips.shape[:2]
        if self.max_frames is not None and steps > self.max_frames:
            raise InputError(f"{self.name}: {steps} frames per clip, but the temporal head has "
                             f"{self.max_frames} frame positions", field="--model-args")
        frames = self.net.encode_image(clips.flatten(0, 1).to(self.device)).view(batch, steps, -1)
        return frames if self.head is None else self.head(frames)

    def text_features(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``N`` strings to the end-token features ``[N, D]`` and every position's feature ``[N, L, D]``."""
        if self.prompt is not None:
            texts = [self.prompt.format(text) for text in texts]
        ids = openai_tokenize(list(texts), self.context_length, self.tokenizer).to(self.device)
        tokens = self.net.text_tokens(ids) @ self.net.text_projection
        cls = tokens[torch.arange(tokens.shape[0], device=tokens.device), ids.argmax(dim=-1)]
        return cls, tokens

    def logits(self, video: torch.Tensor, cls: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The official ``[B, N]`` matrix (``video_header`` output) of every video against every text."""
        if self.interaction == "DP":
            videos, texts = _dp_units(video, cls)
            return videos @ texts.T
        return vcs_logits(video, cls, tokens)

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """Not defined: no pair of single embeddings gives BIKE's score (see the module docstring)."""
        raise TypeError(f"{self.name} scores (clip, caption) pairs: use score(clips, texts), or "
                        "logits(video_features(clips), *text_features(texts)) for the full matrix")

    # -- the capability --------------------------------------------------------------------------

    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips and ``B`` lists of ``C`` captions to the official ``[B, C]`` scores."""
        if len(texts) != clips.shape[0]:
            raise InputError(f"{self.name}: {clips.shape[0]} clips but {len(texts)} caption lists", field="texts")
        widths = {len(row) for row in texts}
        if len(widths) > 1:
            raise InputError(f"{self.name}: every clip needs the same number of captions, got {sorted(widths)}",
                             field="texts")
        video = self.video_features(clips)
        unique = list(dict.fromkeys(text for row in texts for text in row))
        if not unique:
            return torch.zeros(len(texts), 0)
        cls, tokens = self.text_features(unique)
        where = {text: index for index, text in enumerate(unique)}
        index = torch.tensor([[where[text] for text in row] for row in texts], device=cls.device)
        if self.interaction == "DP":
            video_units, text_units = _dp_units(video, cls)
            return (video_units[:, None, :] * text_units[index]).sum(dim=-1).float().cpu()
        return vcs_pair_scores(video, cls[index], tokens[index]).float().cpu()


# ------------------------------------------------------------------------------------------------
# Loading


def _state_dicts(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The CLIP weights and the head weights of a BIKE file, or one line saying why it is not one."""
    checkpoint = read_checkpoint(path, family=FAMILY)
    loaded = checkpoint.payload.get("object") if not checkpoint.state_dict else checkpoint.state_dict
    if not isinstance(loaded, Mapping):
        raise InputError(f"is not a {FAMILY} checkpoint: it holds a {type(loaded).__name__}, not a dict", path=path,
                         field=_FIELD)
    absent = [key for key in ("model_state_dict", "fusion_model_state_dict") if key not in loaded]
    if absent:
        shown = ", ".join(sorted(str(key) for key in loaded)[:3])
        more = " ..." if len(loaded) > 3 else ""
        raise InputError(f"is not a {FAMILY} checkpoint: it lacks {', '.join(absent)} (it has {shown}{more})",
                         path=path, field=_FIELD)
    parts = []
    for key in ("model_state_dict", "fusion_model_state_dict"):
        value = loaded[key]
        if not isinstance(value, Mapping) or not all(isinstance(v, torch.Tensor) for v in value.values()):
            raise InputError(f"{key} is not a mapping of tensors", path=path, field=_FIELD)
        parts.append(strip_prefix({str(k): v for k, v in value.items()}, "module."))
    return parts[0], parts[1]


def _build_head(state: Mapping[str, torch.Tensor], text_width: int, path: Path, heads: int | None) -> BikeHead | None:
    if not state:
        return None  # sim_header "None": no temporal module was trained
    positions = state.get("frame_position_embeddings.weight")
    if positions is None or positions.ndim != 2:
        shown = ", ".join(sorted(state)[:3])
        raise InputError(f"the temporal head lacks frame_position_embeddings.weight (it has {shown} ...)", path=path,
                         field=_FIELD)
    rows, width = positions.shape
    layers = count_blocks(state, "transformer.resblocks.")
    heads = heads or openai_heads(text_width)
    if width % heads:
        raise InputError(f"the temporal head's width {width} does not split into {heads} heads (text width "
                         f"{text_width} // 64); pass head_heads=", path=path, field=_FIELD)
    head = BikeHead(width, rows, layers, heads)
    load_strict(head, state, path, family=f"{FAMILY} temporal head")
    return head.eval()


@functools.lru_cache(maxsize=4)
def _tokenizer_for(rows: int) -> ClipBPE:
    """OpenAI's BPE for a token table of ``rows`` rows: all of it for 49,408, else its first ``rows - 514`` merges."""
    full = clip_bpe()
    if rows == full.vocabulary_size:
        return full
    merges = rows - _BYTE_SYMBOLS_AND_SPECIALS
    if merges < 0 or rows > full.vocabulary_size:
        raise ValueError(rows)
    vocabulary = resources.files("instract_eval.adapters") / "resources" / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.decompress(vocabulary.read_bytes()).decode("utf-8").split("\n")[:1 + merges]
    handle, name = tempfile.mkstemp(suffix=".txt.gz")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(gzip.compress("\n".join(lines).encode("utf-8")))
        return ClipBPE(name)
    finally:
        os.unlink(name)


@register_model(FAMILY, card=CARD)
def bike(checkpoint: str | os.PathLike | None = None, frames: int = 8, interaction: str = "VCS",
         prompt: str | None = None, head_heads: int | None = None) -> BikeAdapter:
    """BIKE from its training checkpoint (``k400-vit-b-16-f8.pt`` and the other released files).

    ``frames``: frames per clip (8 for the f8 models, 16 for f16; at most the head's 77 positions).
    ``interaction``: ``VCS`` (video concept spotting, every released config) or ``DP``.
    ``prompt``: a template applied to every text, e.g. ``"This is a video about {}"`` (the official
    one for class names). ``head_heads``: attention heads of the temporal head, for files trained
    with another count than the official text width // 64.
    """
    path = require_checkpoint(FAMILY, checkpoint)
    frames = positive_int(FAMILY, "frames", frames)
    if interaction not in _INTERACTIONS:
        raise InputError(f"{FAMILY}: interaction must be one of {', '.join(_INTERACTIONS)}, got {interaction!r}",
                         field="--model-args")
    if prompt is not None and "{}" not in prompt:
        raise InputError(f"{FAMILY}: prompt must contain {{}} where the text goes, got {prompt!r}",
                         field="--model-args")
    clip_state, head_state = _state_dicts(path)
    net = ClipNet.from_state_dict(clip_state, path, family=FAMILY)
    head = _build_head(head_state, net.dims.text_width, path, head_heads)
    if head is not None and frames > head.frame_position_embeddings.num_embeddings:
        raise InputError(f"{FAMILY}: frames={frames}, but the temporal head has "
                         f"{head.frame_position_embeddings.num_embeddings} frame positions", field="--model-args")
    try:
        tokenizer = _tokenizer_for(net.dims.vocab_size)
    except ValueError:
        raise InputError(f"has a token table of {net.dims.vocab_size} rows, which no OpenAI BPE prefix gives "
                         "(at most 49408, at least 514)", path=path, field=_FIELD) from None
    return BikeAdapter(net, head, interaction=interaction, prompt=prompt, tokenizer=tokenizer,
                       spec=bike_frame_spec(net.dims.image_size, frames), checkpoint=path)
