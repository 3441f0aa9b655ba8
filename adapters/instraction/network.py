"""The InstrAction network: ViCLIP's towers, the Action Perceiver, the MAM decoder and the mixed embedding.

Official release: ``model/models/instract.py`` (class ``InstrAct``) over the InternVideo ViCLIP-B/16
towers of ``models/third_party/internvideo_compat``. Facts this port keeps:

- Parameter names and registration order are the release's (``vision_encoder``, ``text_encoder``,
  ``temperature``, ``action_perceiver``, ``text_action_projection``, ``action_mix``,
  ``distill_alpha``, ``text_decoder``), so an official ``epochNNNN.pth`` loads strictly and the
  parameters come in the release's order (`official_parameter_order`, which the optimiser groups
  follow, also fixes the one difference, inside the frozen text tower).
- The backbone gives ``global`` (class token after ``ln_post`` @ ``proj``) and ``feat_3d`` (every
  patch token after ``ln_post`` @ ``proj``, ``[B, T, P, D]``). The release orders the joint
  sequence patch-major, this port frame-major; attention without positions inside the blocks does
  not care (outputs agree to float rounding).
- Stochastic depth while training: rates ``linspace(0, 0.1, layers)`` on every vision block (the
  frozen ones too) and, because the release's ``DropPath`` draws over dimension 0 of a
  sequence-first tensor, one keep/drop draw *per token position* shared by the batch.
- Video embedding (training and inference): ``s * norm(global) + (1 - s) * norm(mean_k tokens)``
  with ``s = sigmoid(action_mix)``; without the Perceiver, the class token itself. Text embedding:
  the EOT feature @ ``text_projection`` (then ``text_action_projection``, the identity at 512 = 512).
- ``forward(batch)``: the temperature is clamped to >= 0.01 in place first, then the enabled terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError

from ..core.clip_net import TextTower
from ..video_text.viclip import JointSpaceTimeVision, ViclipDimensions
from .config import InstrActionConfig
from .losses import dtw_alignment_loss, hard_negative_nce, vtc_loss
from .mam import MaskedActionDecoder
from .perceiver import ActionPerceiver

__all__ = ["PerceiverDims", "DecoderDims", "InstrActionDims", "InstrActionNet", "official_parameter_order",
           "LOSS_KEYS"]

LOSS_KEYS = ("total", "vtc", "hn", "dtw", "dtw_align", "dtw_order", "mam")

# The release's CLIP_TEXT: own parameters first (PyTorch's order), then its children as registered.
_TEXT_ORDER = ("positional_embedding", "text_projection", "transformer", "token_embedding", "ln_final")


@dataclass(frozen=True)
class PerceiverDims:
    dim: int
    context_dim: int
    depth: int
    heads: int
    dim_head: int
    num_latents: int
    ff_mult: int
    temporal_embedding: bool
    local_attention: bool


@dataclass(frozen=True)
class DecoderDims:
    dim: int
    context_dim: int
    vocab_size: int
    depth: int
    heads: int
    dim_head: int
    ff_mult: int


@dataclass(frozen=True)
class InstrActionDims:
    """Backbone sizes (ViCLIP's record), the Perceiver's and the decoder's (None: not built)."""

    backbone: ViclipDimensions
    perceiver: PerceiverDims | None
    decoder: DecoderDims | None
    projection: tuple[int, int] | None = None   # text_action_projection [action_dim, text_dim] when widths differ

    @classmethod
    def fresh(cls, backbone: ViclipDimensions, config: InstrActionConfig) -> InstrActionDims:
        """Sizes for a new Perceiver and decoder on ``backbone`` (the release's config.yaml, at its width)."""
        width = backbone.embed_dim
        perceiver = decoder = None
        if config.perceiver_enabled:
            perceiver = PerceiverDims(width, width, config.perceiver_depth, config.perceiver_heads,
                                      config.perceiver_dim_head, config.num_latents, config.perceiver_ff_mult,
                                      config.temporal_embedding, config.local_temporal_attention)
        if config.use_mam:
            decoder = DecoderDims(width, width, backbone.vocab_size, config.decoder_depth, config.decoder_heads,
                                  config.decoder_dim_head, config.decoder_ff_mult)
        return cls(backbone, perceiver, decoder)


def _drop_path(branch: torch.Tensor, rate: float) -> torch.Tensor:
    """The release's stochastic depth on a sequence-first ``[L, N, D]`` branch: one draw per position."""
    keep = 1.0 - rate
    draw = (keep + torch.rand((branch.shape[0],) + (1,) * (branch.ndim - 1), dtype=branch.dtype,
                              device=branch.device)).floor_()
    return branch * draw / keep


class _StochasticDepth:
    """Runs a `Transformer`'s blocks with the release's drop-path rates (training only)."""

    def __init__(self, transformer: nn.Module, rates: list[float]):
        self.transformer, self.rates = transformer, rates

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for block, rate in zip(self.transformer.resblocks, self.rates):
            normed = block.ln_1(x)
            branch = block.attn(normed, normed, normed, need_weights=False)[0]
            x = x + (_drop_path(branch, rate) if rate > 0 else branch)
            branch = block.mlp(block.ln_2(x))
            x = x + (_drop_path(branch, rate) if rate > 0 else branch)
        return x


class InstrActionNet(nn.Module):
    """The whole model; `forward` takes the official batch dict and returns the loss terms."""

    def __init__(self, dims: InstrActionDims, config: InstrActionConfig, frames: int | None = None):
        super().__init__()
        self.dims, self.config = dims, config
        backbone = dims.backbone
        self.vision_encoder = JointSpaceTimeVision(backbone, frames or backbone.checkpoint_frames)
        self.text_encoder = TextTower(backbone)
        self.temperature = nn.Parameter(torch.tensor(float(config.temperature_init)))
        self.action_perceiver: ActionPerceiver | None = None
        self.text_decoder: MaskedActionDecoder | None = None
        if dims.perceiver is not None:
            p = dims.perceiver
            self.action_perceiver = ActionPerceiver(
                dim=p.dim, context_dim=p.context_dim, depth=p.depth, heads=p.heads, dim_head=p.dim_head,
                num_latents=p.num_latents, ff_mult=p.ff_mult, temporal_embedding=p.temporal_embedding,
                temporal_dropout=config.temporal_dropout, local_attention=p.local_attention)
            if dims.projection is not None:
                self.text_action_projection: nn.Module = nn.Linear(dims.projection[1], dims.projection[0], bias=False)
            else:
                self.text_action_projection = nn.Identity()
            self.action_mix = nn.Parameter(torch.tensor(float(config.action_mix_init)))
            self.distill_alpha = nn.Parameter(torch.tensor(float(config.distill_alpha_init)))
        else:
            self.text_action_projection = nn.Identity()
            self.register_parameter("action_mix", None)
            self.register_parameter("distill_alpha", None)
        if dims.decoder is not None:
            d = dims.decoder
            self.text_decoder = MaskedActionDecoder(
                dim=d.dim, vocab_size=d.vocab_size, depth=d.depth, context_dim=d.context_dim, dim_head=d.dim_head,
                heads=d.heads, ff_mult=d.ff_mult, pad_id=config.pad_id, mask_embedding_std=config.mask_embedding_std)
        layers = backbone.vision_layers
        self.drop_path_rates = [config.drop_path_rate * i / (layers - 1) if layers > 1 else 0.0
                                for i in range(layers)]

    # -- encoders ---------------------------------------------------------------------------------

    def vision(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, 3, H, W]`` to (global ``[B, E]``, feat_3d ``[B, T, P, E]``); stochastic depth in training."""
        runner = None
        if self.training and any(rate > 0 for rate in self.drop_path_rates):
            runner = _StochasticDepth(self.vision_encoder.transformer, self.drop_path_rates)
        return self.vision_encoder.features(clips, runner)

    def text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, L]`` ids to (EOT feature ``[N, E]``, every position ``[N, L, E]``), both @ text_projection."""
        tower = self.text_encoder
        tokens = tower.text_tokens(ids) @ tower.text_projection
        return tokens[torch.arange(ids.shape[0], device=ids.device), ids.argmax(dim=-1)], tokens

    def action_tokens(self, feat_3d: torch.Tensor) -> torch.Tensor:
        if self.action_perceiver is None:
            raise InputError("this InstrAction checkpoint has no Action Perceiver (a 'ViCLIP + HNs' ablation), "
                             "so it has no action tokens", field="action_perceiver")
        return self.action_perceiver(feat_3d)

    def mix(self, global_features: torch.Tensor, action_tokens: torch.Tensor) -> torch.Tensor:
        """The video embedding: ``s norm(global) + (1 - s) norm(mean_k tokens)``, ``s = sigmoid(action_mix)``."""
        weight = torch.sigmoid(self.action_mix)
        return weight * F.normalize(global_features, dim=-1) + (1 - weight) * F.normalize(action_tokens.mean(1), dim=-1)

    def encode_video(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(video embedding ``[B, E]``, action tokens ``[B, K, E]`` or None without a Perceiver)."""
        global_features, feat_3d = self.vision(clips)
        if self.action_perceiver is None:
            return global_features, None
        tokens = self.action_perceiver(feat_3d)
        return self.mix(global_features, tokens), tokens

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_action_projection(self.text(ids)[0])

    # -- training ---------------------------------------------------------------------------------

    @torch.no_grad()
    def clamp_temperature(self) -> None:
        self.temperature.clamp_(min=self.config.temperature_min)

    def teacher(self, feat_3d: torch.Tensor, verbs: torch.Tensor, num_verbs: torch.Tensor) -> torch.Tensor:
        """Verb-guided target: the Perceiver queried by the verb phrases, masked mean over valid ones (no grad)."""
        valid = torch.arange(verbs.shape[1], device=verbs.device)[None] < num_verbs.to(verbs.device)[:, None]
        with torch.no_grad():
            out = self.action_perceiver(feat_3d, queries=verbs, query_mask=valid)
            return out.sum(1) / valid.sum(1, keepdim=True).clamp_min(1)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The official batch (``video`` [B, 3, T, H, W], ``text`` [B, 2 + H + V, L], ``text_mask``
        [B, 1 + H, 1], ``num_verbs`` [B], ``action_mask`` [B, L], ``idx`` [B]) to the loss terms."""
        config = self.config
        self.clamp_temperature()
        video, text = batch["video"], batch["text"]
        batch_size, rows = video.shape[0], config.text_rows
        if video.ndim != 5 or text.ndim != 3 or tuple(text.shape[:2]) != (batch_size, rows):
            raise InputError(f"InstrAction batches are video [B, 3, T, H, W] and text [B, {rows}, L]; got video "
                             f"{tuple(video.shape)} and text {tuple(text.shape)}", field="batch")
        global_features, feat_3d = self.vision(video.float().transpose(1, 2))
        text_global, text_tokens = self.text(text.reshape(-1, text.shape[-1]))
        text_global = text_global.reshape(batch_size, rows, -1)
        text_tokens = text_tokens.reshape(batch_size, rows, text.shape[-1], -1)
        negatives = config.max_negatives
        positive = text_global[:, 0]
        bank = text_global[:, :1 + negatives]
        verbs = text_global[:, -config.max_verbs:]
        idx = batch.get("idx")

        video_embedding, teacher, tokens, alpha = global_features, None, None, 0.0
        if self.action_perceiver is not None:
            num_verbs = batch["num_verbs"]
            tokens = self.action_perceiver(feat_3d)
            video_embedding = self.mix(global_features, tokens)
            positive = self.text_action_projection(positive)
            bank = self.text_action_projection(bank)
            verbs = self.text_action_projection(verbs)
            teacher = self.teacher(feat_3d, verbs, num_verbs)
            alpha = torch.sigmoid(self.distill_alpha)

        terms: dict[str, torch.Tensor] = {}
        terms["vtc"] = vtc_loss(video_embedding, positive, idx, self.temperature, alpha=alpha, teacher=teacher)
        total = config.vtc_weight * terms["vtc"]
        if config.use_hard_negatives:
            terms["hn"] = hard_negative_nce(video_embedding, bank.reshape(-1, bank.shape[-1]), batch["text_mask"],
                                            temperature=config.hn_temperature, beta=config.hn_beta)
            total = total + config.hn_weight * terms["hn"]
        if config.use_dtw and tokens is not None:
            dtw = dtw_alignment_loss(tokens, verbs, batch["num_verbs"], gamma=config.dtw_gamma, scale=config.dtw_scale,
                                     margin=config.dtw_margin, order_weight=config.dtw_order_weight)
            terms.update(dtw=dtw.total, dtw_align=dtw.align, dtw_order=dtw.order)
            total = total + config.dtw_weight * dtw.total
        if config.use_mam and self.text_decoder is not None:
            terms["mam"] = self.text_decoder(text_tokens[:, 1 + negatives], tokens, text[:, 0], batch["action_mask"])
            total = total + config.mam_weight * terms["mam"]
        return {"total": total, **terms}


def official_parameter_order(net: InstrActionNet) -> list[tuple[str, nn.Parameter]]:
    """``net``'s named parameters in the order of the release's ``model.named_parameters()``.

    PyTorch lists a module's own parameters before its children's, so both orders start with
    ``temperature``, ``action_mix``, ``distill_alpha``, and the vision tower's tables and ``proj``
    come before ``conv1`` and ``ln_pre``. The one difference is inside the text tower, where the
    release registers ``transformer`` before ``token_embedding``; it is moved here (a stable sort
    of that tower's entries), so the order is the release's even with the text tower trainable.
    """
    named = list(net.named_parameters())
    rank = {name: index for index, name in enumerate(_TEXT_ORDER)}
    text = [i for i, (name, _) in enumerate(named) if name.startswith("text_encoder.")]
    ordered = sorted((named[i] for i in text), key=lambda item: rank.get(item[0].split(".")[1], len(rank)))
    for slot, item in zip(text, ordered):
        named[slot] = item
    return named
