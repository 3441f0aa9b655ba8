"""``vifi-clip``: ViFi-CLIP (Rasheed, Khattak et al., CVPR 2023), CLIP fine-tuned end to end on video.

Why a family of its own and not ``clip`` with other weights: the checkpoint is not a CLIP file and
the official model scores differently.

- Video: every frame through the fine-tuned CLIP image tower, the features **averaged over time
  without normalising each frame** (``trainers/vificlip.py``: ``view(b, t, -1).mean(dim=1)``), then
  normalised for the score. The ``clip`` adapter normalises per frame first; that is not this model.
- Text: the class text is the prompt ``CTX_INIT + " " + text + "."`` (``"a photo of a {}."`` for
  every released fully fine-tuned model; the prefix is read from the checkpoint's yacs config when
  present), OpenAI's BPE at 77 tokens, through the fine-tuned text transformer. Captions longer than
  the context are cut as ``clip.tokenize(truncate=True)`` does (the official call would raise).
- Score: ``exp(logit_scale) * cosine`` with the checkpoint's learnt scale.

The released files (SharePoint, user-provided) are what the official ``epoch_saving`` writes:
``{'model', 'optimizer', 'lr_scheduler', 'max_accuracy', 'epoch', 'config'}`` where ``config`` is a
yacs ``CfgNode`` (read by the restricted unpickler as inert data) and ``model`` is the state dict of
the DistributedDataParallel-wrapped model: ``module.image_encoder.*`` (CLIP's ``visual.*``),
``module.text_encoder.*`` (the text transformer, positions, ``ln_final``, ``text_projection``),
``module.logit_scale`` and ``module.prompt_learner.complete_text_embeddings`` (token embeddings of
the training classes' prompts, which the official loaders delete). The file has **no token
embedding**: the official prompt learner embeds tokens with the table of the pre-trained OpenAI
CLIP it was built from, so that file (``ViT-B-16.pt``) is a required second input,
``clip_checkpoint=PATH``; the official code casts those embeddings to fp16 when it builds the
prompts, and so does this port. "Bridge and prompt" checkpoints (learnt context vectors, visual
prompt tokens) are a different architecture and are refused by name.

Frames follow the official test pipeline (``datasets/build.py``): 32 frames at the midpoints of
equal segments, shorter side to ``int(256 / 224 * size)``, centre crop, **ImageNet** mean/std (the
mmaction ``img_norm_cfg``, not CLIP's statistics).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, FrameSpec

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import file_sha256, key_report, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.clip_net import ClipDimensions, ClipNet, cosine_logits, per_frame
from ..core.tokenizers import openai_tokenize
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["VifiClipAdapter", "vifi_clip", "vifi_frame_spec", "DEFAULT_PROMPT_PREFIX"]

FAMILY = "vifi-clip"
DEFAULT_PROMPT_PREFIX = "a photo of a"  # utils/config.py: TRAINER.ViFi_CLIP.CTX_INIT
_SHAREPOINT = "https://mbzuaiac-my.sharepoint.com/:u:/g/personal/uzair_khattak_mbzuai_ac_ae"
_OPENAI_B16 = ("https://openaipublic.azureedge.net/clip/models/"
               "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt")
# The keys every ViFi-CLIP file has and the sizes are read from (official names, after `module.`).
_REQUIRED = ("image_encoder.conv1.weight", "image_encoder.positional_embedding", "image_encoder.proj",
             "text_encoder.positional_embedding", "text_encoder.ln_final.weight", "text_encoder.text_projection",
             "logit_scale")
# Keys only "bridge and prompt" (VL prompting) checkpoints have.
_PROMPTING = ("prompt_learner.ctx", "VPT")
# Official key prefix -> OpenAI CLIP key prefix.
_RENAMES = (("image_encoder.", "visual."), ("text_encoder.", ""))


def vifi_frame_spec(size: int = 224, frames: int = 32) -> FrameSpec:
    """The official val pipeline: segment midpoints, short side to 256/224 of the crop, ImageNet statistics."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=int(256 / 224 * size), crop=size,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")


def _user_tag(name: str, share: str, frames: int, what: str) -> WeightTag:
    return WeightTag(name=name, source="user", base="openai-vit-b-16", args={"frames": frames},
                     frame_spec=vifi_frame_spec(224, frames),
                     where=(f"download {what} from {_SHAREPOINT}/{share} (linked from the ViFi-CLIP README, "
                            "muzairkhattak/ViFi-CLIP) and pass checkpoint=PATH, with clip_checkpoint=PATH to "
                            "OpenAI's ViT-B-16.pt"))


CARD = ModelCard(
    family=FAMILY,
    description="ViFi-CLIP: fully fine-tuned CLIP ViT-B/16, frame features averaged, exp(logit_scale)·cosine",
    capabilities=(DUAL_ENCODER,),
    tags=(
        _user_tag("k400-zero-shot", "EW0shb6XYDxFi3BH6DT70rgBPDwgW_knQ8jDsarxINXezw?e=RbixXc", 32,
                  "the zero-shot ViFi-CLIP model trained on Kinetics-400 (32x224)"),
        _user_tag("k400-zero-shot-image-ft", "EdA6n7TCQEFAse5X1g1I08AByLCWHM69axTyK9OyVZy86Q?e=NaipU1", 32,
                  "the zero-shot 'CLIP image-FT' model (only the image tower tuned, 32x224)"),
        _user_tag("k400-zero-shot-text-ft", "Eea6hW-_RBdJo4T5JJ_sWgEBNGFdA91tPTq9MQ-XkO5dMg?e=hGneeQ", 32,
                  "the zero-shot 'CLIP text-FT' model (only the text tower tuned, 32x224)"),
        _user_tag("k400-supervised", "EfqisYTGKlVIiPI0QHG-pxMBuBMA0906jX_kPpaRGw9Ksw?e=TdbaBU", 16,
                  "the fully supervised Kinetics-400 ViFi-CLIP model (16x224)"),
        WeightTag(name="openai-vit-b-16", source="url", url=_OPENAI_B16,
                  sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
                  notes="the base CLIP the ViFi-CLIP tags need as clip_checkpoint (token embedding); "
                        "not a ViFi-CLIP checkpoint itself"),
    ),
    default_tag="k400-zero-shot",
    frame_spec=vifi_frame_spec(224, 32),
    tokenizer="OpenAI CLIP BPE (shipped), context 77, prompt 'a photo of a {}.'",
    code_licence="none stated (muzairkhattak/ViFi-CLIP has no licence file; built on X-CLIP, MIT)",
    weights_licence="none stated (fine-tuned from OpenAI CLIP, MIT)",
    paper="Rasheed, Khattak, Maaz, Khan, Khan: Fine-tuned CLIP Models are Efficient Video Learners, CVPR 2023",
    citation="hanoonavificlip",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the fine-tuned weights are SharePoint links that need a browser; download them by hand",
    checkpoint_formats=("official epoch_saving pickle {'model': {'module.…'}, 'config': yacs CfgNode, …}",
                        "plain ViFiCLIP state dict (with or without module.)"),
    code_version="1",
)


class VifiClipAdapter(TorchAdapter):
    """ViFi-CLIP as a video-text dual encoder (see the module docstring)."""

    name = FAMILY

    def __init__(self, net: ClipNet, *, prompt_prefix: str, spec: FrameSpec, checkpoint: Path, clip_checkpoint: Path):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=f"prompt={prompt_prefix!r}")
        self.net = net
        self.prompt_prefix = prompt_prefix
        self.clip_checkpoint = clip_checkpoint
        self._base_sha256: str | None = None

    def weights_fingerprint(self) -> str:
        """The checkpoint's fingerprint and the base CLIP file's (its token table shapes every text)."""
        if self._base_sha256 is None:
            self._base_sha256 = file_sha256(self.clip_checkpoint)
        return f"{super().weights_fingerprint()};clip={self._base_sha256}"

    def prompts(self, texts: list[str]) -> list[str]:
        """The official class text: ``prefix + " " + text + "."``."""
        return [f"{self.prompt_prefix} {text}." for text in texts]

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, D]``: the mean of the frame features (not normalised)."""
        return per_frame(self.net.encode_image, clips.to(self.device)).mean(dim=1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` (not normalised; `similarity` normalises)."""
        ids = openai_tokenize(self.prompts(list(texts)), self.net.dims.context_length).to(self.device)
        return self.net.encode_text(ids).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official logits: ``exp(logit_scale) * cosine``."""
        return cosine_logits(videos, texts, self.net.logit_scale.detach().float().cpu())


def _to_openai(key: str) -> str:
    if key == "logit_scale":
        return key
    for old, new in _RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _to_vifi(key: str) -> str:
    if key == "logit_scale":
        return key
    return "image_encoder." + key[len("visual."):] if key.startswith("visual.") else "text_encoder." + key


def refuse_prompting(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """"Bridge and prompt" checkpoints add learnt prompt tokens to both towers: another architecture."""
    prompting = sorted(k for k in state if k.startswith(_PROMPTING[0]) or _PROMPTING[1] in k)
    if prompting:
        raise InputError(f"is a ViFi-CLIP 'bridge and prompt' checkpoint (learnt prompts: {', '.join(prompting[:3])}),"
                         " which this port does not support; use a fully fine-tuned ViFi-CLIP file",
                         path=path, field="checkpoint")


def build_net(state: Mapping[str, torch.Tensor], token_embedding: torch.Tensor, path: Path) -> ClipNet:
    """Our CLIP port loaded from a ViFiCLIP state dict (official names) and the base token table.

    Keys are checked in the file's own names, so an error points at what the file holds.
    """
    # prompt_learner.*: token embeddings of the training classes' prompts, rebuilt here from the texts
    weights = {k: v for k, v in state.items() if not k.startswith("prompt_learner.")}
    renamed = {_to_openai(k): v for k, v in weights.items()}
    renamed["token_embedding.weight"] = token_embedding
    net = ClipNet(ClipDimensions.from_state_dict(renamed, path))
    expected = {_to_vifi(k): v.shape for k, v in net.state_dict().items() if k != "token_embedding.weight"}
    problems = key_report(expected, weights)
    if problems:
        raise InputError(f"does not fit the ViFi-CLIP architecture read from it: {problems}", path=path,
                         field="checkpoint")
    load_strict(net, renamed, path, family=FAMILY)
    return net.eval()


def base_token_embedding(clip_checkpoint: Any, width: int) -> tuple[torch.Tensor, Path]:
    """The token table of the OpenAI CLIP the checkpoint was fine-tuned from."""
    if clip_checkpoint is None:
        raise InputError("vifi-clip: the checkpoint holds no token embedding (the official model takes it from the "
                         "pre-trained CLIP); pass clip_checkpoint=PATH to OpenAI's ViT-B-16.pt "
                         "(pretrained=TAG fetches it)", field="--model-args")
    path = Path(os.fspath(clip_checkpoint))
    base = unwrap_state_dict(read_checkpoint(path, family="clip"))
    require_keys(base, ["token_embedding.weight"], family="CLIP")
    table = base.state_dict["token_embedding.weight"]
    if table.ndim != 2 or table.shape[1] != width:
        raise InputError(f"token_embedding.weight is {list(table.shape)}, but the ViFi-CLIP text tower is {width} "
                         "wide: this is not the CLIP the checkpoint was fine-tuned from", path=path,
                         field="clip_checkpoint")
    # VLPromptLearner: token_embedding(ids).type(clip_model.dtype), and that dtype is float16
    return table.detach().half().float(), path


def prompt_prefix_of(payload: Mapping[str, Any]) -> str | None:
    """``TRAINER.ViFi_CLIP.CTX_INIT`` from the checkpoint's config, when it has one."""
    try:
        value = payload["config"]["TRAINER"]["ViFi_CLIP"]["CTX_INIT"]
    except (KeyError, TypeError):
        return None
    return value.replace("_", " ") if isinstance(value, str) else None


@register_model(FAMILY, card=CARD)
def vifi_clip(checkpoint: str | os.PathLike | None = None, clip_checkpoint: str | os.PathLike | None = None,
              frames: int = 32, prompt_prefix: str | None = None) -> VifiClipAdapter:
    """ViFi-CLIP from its official checkpoint plus the base OpenAI CLIP file (``clip_checkpoint``).

    ``frames``: frames per clip (32 for the zero-shot models, 16 for the supervised ones).
    ``prompt_prefix``: the words before the text (default: the checkpoint config's ``CTX_INIT``,
    else ``"a photo of a"``).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    frames = positive_int(FAMILY, "frames", frames)
    loaded = read_checkpoint(path, family=FAMILY)
    unwrapped = unwrap_state_dict(loaded, keys=("model", "state_dict"), strip=("module.",))
    require_keys(unwrapped, _REQUIRED, family="ViFi-CLIP")
    refuse_prompting(unwrapped.state_dict, path)
    width = unwrapped.state_dict["text_encoder.positional_embedding"].shape[-1]
    table, base_path = base_token_embedding(clip_checkpoint, width)
    net = build_net(unwrapped.state_dict, table, path)
    if prompt_prefix is None:
        prompt_prefix = prompt_prefix_of(unwrapped.payload) or DEFAULT_PROMPT_PREFIX
    return VifiClipAdapter(net, prompt_prefix=str(prompt_prefix), spec=vifi_frame_spec(net.dims.image_size, frames),
                           checkpoint=path, clip_checkpoint=base_path)

