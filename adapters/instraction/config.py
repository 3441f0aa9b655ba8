"""Every hyperparameter of InstrAction, with the default of the official release.

The official code spreads these over ``model/models/config.yaml`` (sizes, loss weights, the
fine-tuning policy), ``model/args.py`` (the ablation switches, the optimiser) and constants inside
the loss functions (the hard-negative temperature, the DTW smoothing). One frozen dataclass holds
them all so a training run's record names each one, and a config file's ``model:`` section can set
any of them by name. Sizes that a checkpoint fixes (widths, depths, vocabulary, the number of
latents) are read from the checkpoint when one is loaded; the fields here size a fresh model.
"""

from __future__ import annotations

from dataclasses import dataclass

from instract_eval.errors import InputError

__all__ = ["InstrActionConfig", "HARD_NEGATIVE_TYPES"]

HARD_NEGATIVE_TYPES = ("both", "verb", "order")


@dataclass(frozen=True)
class InstrActionConfig:
    """InstrAction's hyperparameters (official defaults; the full model: every term enabled).

    Ablations follow the release's switches: ``use_action_perceiver`` off gives "ViCLIP + HNs"
    (Table 4 row 1: the video embedding is the backbone's class token, no teacher); ``use_dtw`` or
    ``use_mam`` on turns the Perceiver on whatever ``use_action_perceiver`` says, as the release
    does. ``hard_negative_type`` picks which negative captions fill the 12 slots (data side).
    """

    # Ablation switches (args.py: --use-hard-negatives, --use-action-perceiver, --use-dtw, --use-mam).
    use_hard_negatives: bool = True
    use_action_perceiver: bool = True
    use_dtw: bool = True
    use_mam: bool = True
    hard_negative_type: str = "both"

    # Loss weights (config.yaml loss_weights).
    vtc_weight: float = 1.0
    hn_weight: float = 1.0
    dtw_weight: float = 10.0
    mam_weight: float = 1.0

    # Contrastive temperature: learnable, initialised 0.01 and clamped >= 0.01 at every forward.
    temperature_init: float = 0.01
    temperature_min: float = 0.01
    # Hard-negative NCE (hard_negative_loss.py defaults): fixed temperature, no hardness weighting.
    hn_temperature: float = 0.05
    hn_beta: float = 0.0
    # The learned mixes: sigmoid(0) = 0.5 at the start.
    action_mix_init: float = 0.0
    distill_alpha_init: float = 0.0

    # DTW-Align (config.yaml dtw, dtw_loss.py defaults).
    dtw_gamma: float = 0.1
    dtw_scale: float = 0.01
    dtw_margin: float = 0.0
    dtw_order_weight: float = 1.0

    # Data layout (config.yaml data).
    max_negatives: int = 12
    max_verbs: int = 6
    context_length: int = 32
    num_frames: int = 16
    image_size: int = 224
    fps: float = 5.0
    min_time: float = 5.0
    uniform_window: float = 5.0

    # Action Perceiver (config.yaml action_perceiver).
    perceiver_depth: int = 2
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    num_latents: int = 8
    perceiver_ff_mult: int = 2
    temporal_embedding: bool = True
    temporal_dropout: float = 0.1
    local_temporal_attention: bool = True

    # MAM decoder (config.yaml multimodal_decoder).
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_dim_head: int = 64
    decoder_ff_mult: int = 2
    pad_id: int = 0
    mask_embedding_std: float = 0.02

    # Backbone (config.yaml backbone): stochastic depth up to 0.1 over the vision blocks. The sizes
    # (clip_joint_b16 and clip_text_b16) only shape a model built without init=; a checkpoint's own
    # tensors decide them otherwise.
    drop_path_rate: float = 0.1
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    patch_size: int = 16
    embed_dim: int = 512
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    vocab_size: int = 49408

    # Fine-tuning policy (config.yaml finetune, adapters/internvideo.py configure_finetuning);
    # freeze_backbone is args.py's --freeze-backbone (both towers frozen whole).
    freeze_backbone: bool = False
    unfreeze_last_vision_blocks: int = 2
    freeze_temporal_position: bool = False
    freeze_spatial_position: bool = True
    freeze_patch_embedding: bool = True
    freeze_text: bool = True
    unfreeze_last_text_blocks: int = 0
    unfreeze_token_embedding: bool = False
    lr_backbone: float = 1.0
    lr_embeddings: float = 0.1
    lr_action_modules: float = 10.0

    def __post_init__(self) -> None:
        if self.hard_negative_type not in HARD_NEGATIVE_TYPES:
            raise InputError(f"hard_negative_type must be one of {', '.join(HARD_NEGATIVE_TYPES)}, got "
                             f"{self.hard_negative_type!r}", field="model.hard_negative_type")
        for name in ("max_negatives", "max_verbs", "context_length", "num_frames", "image_size", "perceiver_depth",
                     "perceiver_heads", "perceiver_dim_head", "num_latents", "perceiver_ff_mult", "decoder_depth",
                     "decoder_heads", "decoder_dim_head", "decoder_ff_mult", "vision_width", "vision_layers",
                     "vision_heads", "patch_size", "embed_dim", "text_width", "text_layers", "text_heads", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}", field=f"model.{name}")
        for name in ("temperature_init", "temperature_min", "hn_temperature", "dtw_gamma"):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)!r}", field=f"model.{name}")
        for name in ("temporal_dropout", "drop_path_rate"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {getattr(self, name)!r}", field=f"model.{name}")

    @property
    def perceiver_enabled(self) -> bool:
        """The release builds the Perceiver for itself, for DTW and for MAM (instract.py)."""
        return self.use_action_perceiver or self.use_dtw or self.use_mam

    @property
    def text_rows(self) -> int:
        """Rows of the batch's ``text``: caption + negatives, the caption again (MAM), the verbs."""
        return 2 + self.max_negatives + self.max_verbs
