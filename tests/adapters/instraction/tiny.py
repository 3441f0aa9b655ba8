"""A tiny InstrAction configuration shared by the unit tests (64-wide towers, 16 px frames)."""

from __future__ import annotations

from instract_eval.adapters.instraction.config import InstrActionConfig

TINY = InstrActionConfig(vision_width=64, vision_layers=3, vision_heads=2, patch_size=8, image_size=16, embed_dim=32,
                         text_width=64, text_layers=2, text_heads=2, perceiver_heads=2, perceiver_dim_head=16,
                         decoder_heads=2, decoder_dim_head=16)
