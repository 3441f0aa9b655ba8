"""``text4vis``: Text4Vis (Wu, Sun, Ouyang, AAAI 2023 / IJCV 2023), CLIP with a temporal transformer
and a classifier made of frozen CLIP text embeddings.

Why a family of its own: the video side is CLIP's image tower fine-tuned *plus* a temporal fusion
head, the text side is the *pre-trained* CLIP text tower (frozen in training, ``fix_text: True``),
and the official score is a fixed ``100 * cosine``, not the checkpoint's ``logit_scale``.

- Video (``modules/video_clip.py``): each frame through the fine-tuned image tower, ``[B, T, D]``;
  the ``Transf`` head adds learnt frame-position embeddings (rows ``0..T-1`` of a 77-row table),
  runs a 6-block transformer of width D (heads = the CLIP text width // 64, TF-style LayerNorm with
  eps 1e-12, no mask), adds the result back to the frame features and averages over time. With
  ``sim_header: None`` (few-shot configs) there is no head and the frames are simply averaged; a
  checkpoint without fusion keys is that case.
- Text (``modules/text_prompt.py``): ``"a video of a person {}."``, OpenAI's BPE at 77 tokens
  (captions that do not fit are cut as ``clip.tokenize(truncate=True)`` does; the official call
  raises), ``CLIP.encode_text`` of the pre-trained model.
- Score (``test.py``): ``100 * cosine`` (the softmax over classes that follows is not part of it).

Checkpoints. The released files (GitHub ``v1/k400-vitb-{32,16}-f{8,16}.pt``; the ViT-L ones on
OneDrive) are what ``train.py`` saves: ``{'epoch', 'model_state_dict', 'optimizer_state_dict'}``
with ``model_state_dict = VideoCLIP.state_dict()``: ``visual.*``, ``fusion_model.*`` and
``logit_scale``, fp32, **no text tower**. The text tower therefore comes from the OpenAI CLIP file the
model was trained from (``clip_checkpoint=PATH``; ``pretrained=TAG`` fetches it). ``train_nce.py``
saves the other layout (the whole CLIP in ``model_state_dict``, the head in
``fusion_model_state_dict``): it loads too, with the file's own text tower. ``module.`` prefixes are
stripped as ``test.py`` does. ResNet towers and the TSM/token-shift/joint space-time variants are
not ported (refused by the key check).

Frames follow ``test.py`` with one view: shorter side to 256 (for 224 crops; the 336 models resize
to 336), bicubic, centre crop, CLIP mean/std, ``num_segments`` frames (8 or 16, 32 for one L/14-336
model). The official single-view sampler takes the first frame of each equal segment; the harness's
uniform sampler takes its midpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import (file_sha256, key_report, load_strict, read_checkpoint, require_keys, strip_prefix,
                                unwrap_state_dict)
from ..core.clip_net import OPENAI_SCALARS, ClipDimensions, ClipNet, FrameTransformer, cosine, per_frame
from ..core.shapes import count_blocks, openai_heads
from ..core.tokenizers import openai_tokenize
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["Text4VisAdapter", "TemporalFusion", "text4vis", "text4vis_frame_spec", "TEMPLATE", "SCORE_SCALE"]

FAMILY = "text4vis"
TEMPLATE = "a video of a person {}."
SCORE_SCALE = 100.0
_FIELD = "checkpoint"
_RELEASES = "https://github.com/whwu95/Text4Vis/releases/download/v1"
_ONEDRIVE = ("https://unisyd-my.sharepoint.com/:f:/g/personal/wenhao_wu_sydney_edu_au/"
             "EqsXAPrVnUFBv77XCk6CEzQBZXqEcWySWzr2MoIBfD29tw?e=T0HaTe")
_OPENAI = "https://openaipublic.azureedge.net/clip/models"
_VISUAL_KEYS = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj")
_TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection")


def text4vis_frame_spec(size: int = 224, frames: int = 8) -> FrameSpec:
    """``test.py``'s single view: scale 256 (224 crops) or the crop size, bicubic, centre crop, CLIP statistics."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=256 if size == 224 else size, crop=size,
                     mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic")


def _release(arch: str, frames: int, base: str, size: int = 224) -> WeightTag:
    name = f"k400-vit{arch}-f{frames}"
    return WeightTag(name=name, source="url", url=f"{_RELEASES}/{name}.pt", base=base, args={"frames": frames},
                     frame_spec=text4vis_frame_spec(size, frames),
                     notes="train.py layout (no text tower: the base tag's OpenAI file is the clip_checkpoint)")


def _onedrive(name: str, frames: int, base: str, size: int, what: str) -> WeightTag:
    return WeightTag(name=name, source="user", base=base, args={"frames": frames},
                     frame_spec=text4vis_frame_spec(size, frames),
                     where=(f"download {what} from the Text4Vis OneDrive folder {_ONEDRIVE} (linked from the "
                            "whwu95/Text4Vis README) and pass checkpoint=PATH, with clip_checkpoint=PATH to the "
                            "OpenAI CLIP file of the same architecture"))


def _openai(name: str, file: str, sha256: str) -> WeightTag:
    return WeightTag(name=name, source="url", url=f"{_OPENAI}/{sha256}/{file}", sha256=sha256,
                     notes="base CLIP (clip_checkpoint of the Text4Vis tags), not a Text4Vis checkpoint itself")


CARD = ModelCard(
    family=FAMILY,
    description=("Text4Vis: fine-tuned CLIP image tower + temporal transformer, frozen CLIP text classifier, "
                 "100·cosine"),
    capabilities=(DUAL_ENCODER,),
    tags=(
        _release("b-32", 8, "openai-vit-b-32"),
        _release("b-32", 16, "openai-vit-b-32"),
        _release("b-16", 8, "openai-vit-b-16"),
        _release("b-16", 16, "openai-vit-b-16"),
        _onedrive("k400-vitl-14-f8", 8, "openai-vit-l-14", 224, "the Kinetics-400 ViT-L/14 8-frame model"),
        _onedrive("k400-vitl-14-336-f8", 8, "openai-vit-l-14-336", 336,
                  "the Kinetics-400 ViT-L/14-336 8-frame model"),
        _onedrive("k400-vitl-14-336-f32", 32, "openai-vit-l-14-336", 336,
                  "the Kinetics-400 ViT-L/14-336 32-frame model"),
        _onedrive("anet-vitl-14-f16", 16, "openai-vit-l-14", 224, "the ActivityNet ViT-L/14 16-frame model"),
        _onedrive("anet-vitl-14-336-f16", 16, "openai-vit-l-14-336", 336,
                  "the ActivityNet ViT-L/14-336 16-frame model"),
        _onedrive("ucf-vitl-14-f16", 16, "openai-vit-l-14", 224, "the UCF-101 ViT-L/14 16-frame model"),
        _onedrive("hmdb-vitl-14-f16", 16, "openai-vit-l-14", 224, "the HMDB-51 ViT-L/14 16-frame model"),
        _openai("openai-vit-b-32", "ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
        _openai("openai-vit-b-16", "ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"),
        _openai("openai-vit-l-14", "ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"),
        _openai("openai-vit-l-14-336", "ViT-L-14-336px.pt",
                "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"),
    ),
    default_tag="k400-vitb-16-f8",
    frame_spec=text4vis_frame_spec(224, 8),
    tokenizer="OpenAI CLIP BPE (shipped), context 77, template 'a video of a person {}.'",
    code_licence="MIT (whwu95/Text4Vis)",
    weights_licence="MIT (whwu95/Text4Vis repository licence; fine-tuned from OpenAI CLIP, MIT)",
    paper=("Wu, Sun, Ouyang: Revisiting Classifier: Transferring Vision-Language Models for Video Recognition, "
           "AAAI 2023; extended in IJCV 2023"),
    citation="wu2023revisiting",
    checkpoint_formats=("train.py: {'epoch', 'model_state_dict': visual.* + fusion_model.* + logit_scale, "
                        "'optimizer_state_dict'} (+ clip_checkpoint)",
                        "train_nce.py: full CLIP in model_state_dict + fusion_model_state_dict"),
    code_version="1",
)


class TemporalFusion(FrameTransformer):
    """The ``Transf`` video head: frame positions, a transformer over time, residual, mean over time.

    The shared `FrameTransformer` (TF-style LayerNorm, eps 1e-12), averaged over time.
    """

    def __init__(self, width: int, layers: int, heads: int, positions: int):
        super().__init__(width, positions, layers, heads, eps=1e-12)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` frame features to ``[B, D]``."""
        return super().forward(frames).mean(dim=1)


class Text4VisAdapter(TorchAdapter):
    """Text4Vis as a video-text dual encoder (see the module docstring)."""

    name = FAMILY

    def __init__(self, net: ClipNet, fusion_model: TemporalFusion | None, *, template: str, spec: FrameSpec,
                 checkpoint: Path, clip_checkpoint: Path | None):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=f"template={template!r}")
        self.net = net
        self.fusion_model = fusion_model
        self.template = template
        self.clip_checkpoint = clip_checkpoint
        self._base_sha256: str | None = None

    def weights_fingerprint(self) -> str:
        """The checkpoint's fingerprint and, when it supplies the text tower, the base CLIP file's."""
        if self.clip_checkpoint is None:
            return super().weights_fingerprint()
        if self._base_sha256 is None:
            self._base_sha256 = file_sha256(self.clip_checkpoint)
        return f"{super().weights_fingerprint()};clip={self._base_sha256}"

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, D]`` (``VideoCLIP.encode_image``; not normalised)."""
        features = per_frame(self.net.encode_image, clips.to(self.device))
        if self.fusion_model is None:
            return features.mean(dim=1)
        frames = features.shape[1]
        if frames > self.fusion_model.frame_position_embeddings.num_embeddings:
            raise InputError(f"text4vis: {frames} frames per clip, but the fusion head has "
                             f"{self.fusion_model.frame_position_embeddings.num_embeddings} frame positions",
                             field="--model-args")
        return self.fusion_model(features)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings (class names or captions) to ``[N, D]`` classifier rows (not normalised)."""
        prompts = [self.template.format(text) for text in texts]
        ids = openai_tokenize(prompts, self.net.dims.context_length).to(self.device)
        return self.net.encode_text(ids).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official class logits: ``100 * cosine``."""
        return SCORE_SCALE * cosine(videos, texts)


def _fusion_state(state: Mapping[str, torch.Tensor], payload: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The head's weights: ``fusion_model.*`` in the state dict (train.py) or ``fusion_model_state_dict`` (NCE)."""
    inline = {k[len("fusion_model."):]: v for k, v in state.items() if k.startswith("fusion_model.")}
    if inline:
        return inline
    separate = payload.get("fusion_model_state_dict")
    if isinstance(separate, Mapping):
        return strip_prefix({k: v for k, v in separate.items() if isinstance(v, torch.Tensor)}, "module.")
    return {}


def _text_tower(state: Mapping[str, torch.Tensor], clip_checkpoint: Any) -> tuple[dict[str, torch.Tensor], Path | None]:
    """The text tower's weights (OpenAI names) and the file they come from when it is not the checkpoint."""
    def text_part(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in weights.items()
                if k in _TEXT_KEYS or k.startswith(("transformer.", "ln_final."))}

    if "token_embedding.weight" in state:  # train_nce.py: the file has its own (possibly tuned) text tower
        return text_part(state), None
    if clip_checkpoint is None:
        raise InputError("text4vis: the checkpoint holds no text tower (train.py saves the image side only; the "
                         "classifier comes from the pre-trained CLIP); pass clip_checkpoint=PATH to the OpenAI CLIP "
                         "file of its architecture (pretrained=TAG fetches it)", field="--model-args")
    path = Path(os.fspath(clip_checkpoint))
    base = unwrap_state_dict(read_checkpoint(path, family="clip"))
    require_keys(base, _TEXT_KEYS, family="CLIP")
    return text_part(base.state_dict), path


def _check(expected: Mapping[str, torch.Size], found: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    problems = key_report(expected, found)
    if problems:
        raise InputError(f"does not fit the {what} architecture read from it: {problems}", path=path, field=_FIELD)


def build(path: Path, clip_checkpoint: Any) -> tuple[ClipNet, TemporalFusion | None, Path | None]:
    """Our CLIP port and fusion head from a Text4Vis checkpoint (+ the base CLIP for the text tower)."""
    loaded = read_checkpoint(path, family=FAMILY)
    unwrapped = unwrap_state_dict(loaded, keys=("model_state_dict", "state_dict", "model"), strip=("module.",))
    state = unwrapped.state_dict
    if "visual.layer1.0.conv1.weight" in state:
        raise InputError("holds a ResNet image tower (Text4Vis RN50 family), which is not ported", path=path,
                         field=_FIELD)
    require_keys(unwrapped, _VISUAL_KEYS, family="Text4Vis")
    fusion = _fusion_state(state, unwrapped.payload)
    text, base_path = _text_tower(state, clip_checkpoint)
    file_weights = {k: v for k, v in state.items() if not k.startswith("fusion_model.") and k not in OPENAI_SCALARS}
    if base_path is not None and text["text_projection"].shape[1] != state["visual.proj"].shape[1]:
        raise InputError(f"text_projection is {list(text['text_projection'].shape)}, but the Text4Vis image tower "
                         f"projects to {state['visual.proj'].shape[1]}: not the CLIP this model was trained from",
                         path=base_path, field="clip_checkpoint")
    merged = {**file_weights, **text}
    net = ClipNet(ClipDimensions.from_state_dict(merged, path))
    expected = {k: v.shape for k, v in net.state_dict().items()}
    text_keys = {k for k in expected if not k.startswith("visual.") and k != "logit_scale"}
    # every key is checked against the file it comes from, under the name that file uses
    in_file = {k: v for k, v in expected.items() if base_path is None or k not in text_keys}
    _check(in_file, file_weights, path, "Text4Vis")
    if base_path is not None:
        _check({k: v for k, v in expected.items() if k in text_keys}, text, base_path, "CLIP text")
    load_strict(net, merged, path, family=FAMILY)

    head = None
    if fusion:
        if "frame_position_embeddings.weight" not in fusion:
            raise InputError(f"has fusion_model weights but lacks fusion_model.frame_position_embeddings.weight "
                             f"(it has {', '.join(sorted(fusion)[:3])} ...)", path=path, field=_FIELD)
        positions, width = fusion["frame_position_embeddings.weight"].shape
        layers = count_blocks(fusion, "transformer.resblocks.")
        head = TemporalFusion(width, layers, openai_heads(net.dims.text_width), positions)
        _check({f"fusion_model.{k}": v.shape for k, v in head.state_dict().items()},
               {f"fusion_model.{k}": v for k, v in fusion.items()}, path, "Text4Vis fusion")
        load_strict(head, fusion, path, family=FAMILY)
        head.eval()
    return net.eval(), head, base_path


@register_model(FAMILY, card=CARD)
def text4vis(checkpoint: str | os.PathLike | None = None, clip_checkpoint: str | os.PathLike | None = None,
             frames: int = 8, template: str = TEMPLATE) -> Text4VisAdapter:
    """Text4Vis from its official checkpoint; ``clip_checkpoint``: the OpenAI CLIP file that supplies the text
    tower when the checkpoint has none (the released ones; a train_nce.py file uses its own and ignores it).

    ``frames``: frames per clip (the model's ``num_segments``: 8, 16 or 32). ``template``: the class-name
    prompt (official: ``"a video of a person {}."``).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    frames = positive_int(FAMILY, "frames", frames)
    if "{}" not in str(template):
        raise InputError(f"text4vis: template must contain '{{}}' where the text goes, got {template!r}",
                         field="--model-args")
    net, head, base_path = build(path, clip_checkpoint)
    if head is not None and frames > head.frame_position_embeddings.num_embeddings:
        raise InputError(f"text4vis: frames={frames}, but the fusion head has only "
                         f"{head.frame_position_embeddings.num_embeddings} frame positions", field="--model-args")
    return Text4VisAdapter(net, head, template=str(template), spec=text4vis_frame_spec(net.dims.image_size, frames),
                           checkpoint=path, clip_checkpoint=base_path)
