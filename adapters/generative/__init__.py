"""Generative video-language models (Qwen2.5-VL, InternVL3, PerceptionLM) as pair scorers and QA localizers.

`scoring` is the shared base (log-likelihood and letter-choice pair scores, greedy QA
localization), `answers` the timestamp parser; each family module registers its model.
"""
