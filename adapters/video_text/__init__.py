"""Adapters of video-text models with their own temporal modelling."""
