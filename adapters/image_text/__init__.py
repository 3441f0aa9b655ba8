"""Adapters of image-text models used on video (frame by frame, or with a temporal head)."""
