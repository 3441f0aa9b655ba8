"""Temporal action localization heads on precomputed feature sequences (ActionFormer) and the NMS they share."""
