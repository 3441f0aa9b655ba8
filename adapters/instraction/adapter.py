"""The registered ``instraction`` model: an InstrAction checkpoint as a dual encoder with action tokens.

What the official evaluation (``model/eval.py``, ``model.encode(video, ids)``) does, and this adapter:

- video: the mixed embedding ``s norm(global) + (1 - s) norm(mean_k action tokens)``; a checkpoint
  without a Perceiver (the "ViCLIP + HNs" ablation) gives the class token;
- text: the EOT feature of the 32-token CLIP BPE caption @ ``text_projection``;
- score: cosine;
- frames: 16 uniformly over a 5 fps grid of the clip, short side to 224 and the centre square, CLIP
  mean/std (the InstrAct Bench protocol the release evaluates with); ``frames=`` builds for another
  count (the temporal table interpolated, the Perceiver's windows recomputed for it).

``encode_video_tokens`` gives the K action tokens in temporal order (``[B, K, D]``), in the text
embedding's space, for the alignment diagnostic (InstrAction Fig. 8).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import SUPPORTED, ModelCard, WeightTag
from ..core.base import TorchAdapter, require_checkpoint
from ..core.shapes import frame_count, optional_positive, require_clips
from ..protocols import DUAL_ENCODER, TOKEN_ENCODER
from ..registry import register_model
from .checkpoint import FAMILY, load_instraction_net
from .network import InstrActionNet

__all__ = ["InstrAction", "instraction", "instraction_frame_spec", "CARD"]


def instraction_frame_spec(frames: int = 16, size: int = 224) -> FrameSpec:
    """The release's evaluation frames: uniform over a 5 fps grid, short side ``size``, centre crop, CLIP stats."""
    return FrameSpec(num_frames=frames, sampling="uniform", fps=5.0, size=size, crop=size, mean=CLIP_MEAN,
                     std=CLIP_STD)


class InstrAction(TorchAdapter):
    """InstrAction dual encoder (mixed video embedding, text global, cosine) exposing its action tokens."""

    name = FAMILY

    def __init__(self, net: InstrActionNet, *, spec: FrameSpec, checkpoint: str | os.PathLike | None,
                 settings: str = "", tokens: str = "actions"):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.tokens = tokens

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` normalised frames to ``[B, D]`` mixed embeddings (not unit length: the
        release scores them by cosine)."""
        require_clips(FAMILY, clips)
        embedding, _ = self.net.encode_video(clips.to(self.device))
        return embedding.float()

    @torch.no_grad()
    def encode_video_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` frames to ``[B, K, D]`` action tokens in temporal order, or with
        ``tokens="frames"`` to ``[B, T, D]`` raw frame embeddings (each frame's patch tokens after
        ``ln_post @ proj``, averaged): the two sides of the paper's Fig. 8 comparison."""
        require_clips(FAMILY, clips)
        if self.tokens == "frames":
            _, feat_3d = self.net.vision(clips.to(self.device))
            return feat_3d.mean(dim=2).float()
        if self.net.action_perceiver is None:
            raise InputError("instraction: this checkpoint has no Action Perceiver (a 'ViCLIP + HNs' ablation), so "
                             "it has no action tokens for the alignment task", field="--model")
        _, tokens = self.net.encode_video(clips.to(self.device))
        return tokens.float()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` text embeddings (32-token CLIP BPE, EOT feature)."""
        tower = self.net.text_encoder
        ids = tower.tokenize(texts, FAMILY).to(self.device)
        return self.net.encode_text(ids).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """Cosine, as the release's evaluation ranks candidates."""
        return F.normalize(videos.float(), dim=-1) @ F.normalize(texts.float(), dim=-1).T


_REPO = "https://github.com/zyyangzy/InstrAct"

CARD = ModelCard(
    family=FAMILY,
    description="InstrAction (InstrAct): ViCLIP-B/16 + Action Perceiver (8 ordered action tokens), mixed video "
                "embedding, 32-token CLIP text, cosine",
    capabilities=(DUAL_ENCODER, TOKEN_ENCODER),
    tags=(
        WeightTag(name="release", source="user", frame_spec=instraction_frame_spec(16),
                  where=f"the epochNNNN.pth a training run of the official code ({_REPO}, model/main.py) writes, or "
                        "one trained here with `instract-eval train instraction`; no weights are published for "
                        "download; pass the file as checkpoint=PATH",
                  notes="Full model (HNs + Perceiver + DTW + MAM) on ViCLIP-B/16 InternVid-200M; the paper's "
                        "cross-evaluation models are --hard-negative-type verb / order runs of the same code."),
    ),
    default_tag="release",
    frame_spec=instraction_frame_spec(16),
    tokenizer="OpenAI CLIP BPE (shipped), context 32, clip.tokenize(truncate=True) cut",
    code_licence="not stated: no licence file found in zyyangzy/InstrAct @ 8b02694 (its vendored InternVideo "
                 "subset is Apache-2.0); this port is our own code",
    weights_licence="user-trained weights; the ViCLIP backbone's weights are MIT (OpenGVLab/ViCLIP)",
    paper="Yang, Yu, Tan, Li, Xu. InstrAction: Action-Centric Pretraining for Instructional Videos. 2026. "
          "arXiv:2604.08762",
    citation="yang2026instraction",
    status=SUPPORTED,
    checkpoint_formats=("official epochNNNN.pth ({epoch, global_step, model, optimizer, ..., config})",
                        "instract-eval train output ({'model', 'config', 'recipe': 'instraction'})"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def instraction(checkpoint: str | os.PathLike | None = None, frames: int | None = None, num_frames: int | None = None,
                vision_heads: int | None = None, text_heads: int | None = None, tokens: str = "actions") -> InstrAction:
    """InstrAction from an official ``epochNNNN.pth`` or a file our training wrote.

    ``frames`` (or the official name ``num_frames``): frames per clip, default the checkpoint's
    temporal table (16); another count interpolates that table linearly, as the release does when it
    builds for a clip length. ``vision_heads``/``text_heads``: for towers not following width // 64.
    ``tokens``: what ``encode_video_tokens`` gives the alignment task: ``actions`` (the Perceiver's
    K action tokens) or ``frames`` (one raw embedding per frame).
    """
    if tokens not in ("actions", "frames"):
        raise InputError(f"instraction: tokens must be 'actions' or 'frames', got {tokens!r}", field="--model-args")
    path = require_checkpoint(FAMILY, checkpoint)
    count = frame_count(FAMILY, frames, num_frames)
    optional_positive(FAMILY, vision_heads=vision_heads, text_heads=text_heads)
    net = load_instraction_net(path, frames=count, vision_heads=vision_heads, text_heads=text_heads).eval()
    dims = net.dims.backbone
    built = count or dims.checkpoint_frames
    spec = instraction_frame_spec(built, dims.image_size)
    parts = f"heads={dims.vision_heads}/{dims.text_heads};frames={built}" + (";tokens=frames" if tokens == "frames" else "")
    return InstrAction(net, spec=spec, checkpoint=path, settings=parts, tokens=tokens)
