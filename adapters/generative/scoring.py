"""Generative video-language models as pair scorers and as QA localizers: the shared base.

A generative VLM (Qwen2.5-VL, InternVL3, PerceptionLM, VTimeLLM) is not an encoder. This module
turns one into the harness's capabilities, the same way for every family:

Pair scorer, log-likelihood protocol (``protocol="likelihood"``, the default)
    A caption's score is its token log-likelihood as the assistant's answer to ``prompt`` about
    the video, under the model's own chat template: ``log p(caption | chat(video, prompt))``.
    ``normalisation="mean"`` (default) divides by the caption's token count, so long captions are
    not penalised for their length; ``"sum"`` keeps the total. The caption is tokenised on its
    own (no special tokens) and appended after the generation prompt; the end-of-turn token is
    not scored. The captions of one clip share the prompt, so the prompt with the video is run
    once and its KV cache is reused by all captions, batched (``reuse_prefix=True``, default);
    ``reuse_prefix=False`` runs every (prompt + caption) sequence in full, the video included
    (the same numbers, slower: ``benchmarks/bench_generative_pair_score.py`` measures both).
    Captions run ``caption_batch`` (16) at a time, which bounds the copies of the cache held at once.
Pair scorer, letter-choice protocol (``protocol="letter"``)
    For multiple choice: the captions are listed as options ``A. ...``, ``B. ...`` in one prompt
    and a caption's score is the probability (softmax over the whole vocabulary) of its letter
    as the first answer token. A caption's score then depends on the other options, so the
    adapter sets ``list_dependent_scores`` and the encoder scores each caption list on its own.
    At most 26 options.
QA localizer (``answers_in_text``)
    One greedy generation (``max_new_tokens``, no sampling) per (video, class) with
    ``localize_prompt`` (the class name, and its description when the task has one). The
    answer's timestamps are parsed by `instract_eval.adapters.generative.answers.parse_segments`
    into segments of that class (score 1.0). An unparsable answer is an empty prediction, kept
    and counted: every answer is in ``answer_log`` and `answer_counts` sums them.

The result records say which protocol was used: ``scoring`` (one line) is written into each pair
scorer result by the engines.

API for a family (small on purpose; subclass `GenerativeVLM`):

``prompt_inputs(self, clip, question, fps=None) -> dict[str, Tensor]``  (required)
    The model inputs (a batch of one) of the user turn holding ``clip`` (``[T, 3, H, W]``, already
    prepared by the frame spec) and the text ``question``, up to and including the generation
    prompt of the assistant turn: ``input_ids``, ``attention_mask`` and the family's pixel inputs.
    ``fps`` is the rate the frames were taken at when it is known (a localizer spreads its frames
    over the whole video); a family whose time positions depend on it uses it.
``repeat_inputs(self, inputs, n) -> dict``  (optional)
    The same inputs for a batch of ``n`` copies (default: every tensor concatenated ``n`` times
    along its first dimension, which fits the flattened pixel inputs of Qwen2.5-VL and InternVL
    and the batched ones of PerceptionLM).
``continuation_inputs(self, inputs, ids, attention) -> dict``  (optional)
    The inputs of the captions' forward after the cached prompt: ``ids`` ``[C, L]`` and the
    ``attention`` mask over prompt and captions (default: just those two; Qwen2.5-VL adds its
    3-D rotary positions).
``token_inputs``  (class attribute)
    Names of per-token inputs besides ``attention_mask`` (Qwen2.5-VL's ``mm_token_type_ids``),
    extended with zeros over the caption tokens when the prompt is not reused.
``text_ids(self, text) -> list[int]``  (optional)
    The ids of an answer text (default: the tokenizer without special tokens).
``relative_timestamps``, ``timestamp_scale``  (class attributes)
    How the localizer's answers state times (see `answers`): seconds by default; VTimeLLM's
    two-digit positions set ``relative_timestamps = True``.

The base gives ``score``, ``log_likelihoods``, ``letter_probabilities``, ``answer`` and
``localize``. ``self.net`` is the transformers model (called as ``net(**inputs)``, and with ``cache=`` for the
shared prefix: transformers 5 names the KV cache ``cache``), ``self.tokenizer`` its tokenizer.
"""

from __future__ import annotations

import copy
import os
import string
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..core.base import TorchAdapter, positive_int
from ..protocols import Segment
from .answers import parse_segments

__all__ = ["GenerativeVLM", "PROTOCOLS", "NORMALISATIONS", "DEFAULT_PROMPT", "DEFAULT_LETTER_PROMPT",
           "DEFAULT_LOCALIZE_PROMPT", "check_generative_args", "scoring_line"]

PROTOCOLS = ("likelihood", "letter")
NORMALISATIONS = ("mean", "sum")
DEFAULT_PROMPT = "Describe what happens in the video in one sentence."
DEFAULT_LETTER_PROMPT = "Which option describes the video?"
DEFAULT_LOCALIZE_PROMPT = ("The video is {duration:.1f} seconds long. When does the action \"{label}\" happen in "
                           "the video?{description} Answer with its start and end times in seconds, as: from S to E.")
_LETTER_SUFFIX = "Answer with the option's letter from the given choices directly."
_ARGS = "--model-args"


def scoring_line(protocol: str, normalisation: str) -> str:
    """The one-line ``scoring`` statement of a protocol (written into results)."""
    if protocol == "letter":
        return "probability of the option's letter, all options listed in one prompt (letter-choice protocol)"
    return f"{normalisation} token log-likelihood of the caption given the video under the chat template"


def check_generative_args(model: str, protocol: Any, normalisation: Any, max_new_tokens: Any) -> None:
    """One line naming a bad ``protocol``, ``normalisation`` or ``max_new_tokens`` argument."""
    if protocol not in PROTOCOLS:
        raise InputError(f"{model}: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}", field=_ARGS)
    if normalisation not in NORMALISATIONS:
        raise InputError(f"{model}: normalisation must be one of {', '.join(NORMALISATIONS)}, got "
                         f"{normalisation!r}", field=_ARGS)
    positive_int(model, "max_new_tokens", max_new_tokens)


class GenerativeVLM(TorchAdapter):
    """A generative VLM as a pair scorer and a QA localizer; see the module docstring."""

    name = "generative"
    answers_in_text = True
    localizer_inputs = ("video",)
    relative_timestamps = False
    timestamp_scale = 100.0
    token_inputs: tuple[str, ...] = ()

    def __init__(self, net: Any, tokenizer: Any, *, spec: FrameSpec, checkpoint: str | os.PathLike | None,
                 protocol: str = "likelihood", normalisation: str = "mean", reuse_prefix: bool = True,
                 prompt: str = DEFAULT_PROMPT, letter_prompt: str = DEFAULT_LETTER_PROMPT,
                 localize_prompt: str = DEFAULT_LOCALIZE_PROMPT, max_new_tokens: int = 64, settings: str = "",
                 caption_batch: int = 16):
        check_generative_args(self.name, protocol, normalisation, max_new_tokens)
        caption_batch = positive_int(self.name, "caption_batch", caption_batch)
        described = (f"protocol={protocol};normalisation={normalisation};prompt={prompt!r};"
                     f"letter_prompt={letter_prompt!r};localize_prompt={localize_prompt!r};"
                     f"max_new_tokens={max_new_tokens}" + (f";{settings}" if settings else ""))
        super().__init__(spec=spec, checkpoint=checkpoint, settings=described)
        self.net = net
        self.tokenizer = tokenizer
        self.protocol = protocol
        self.normalisation = normalisation
        self.reuse_prefix = bool(reuse_prefix)
        self.prompt = prompt
        self.letter_prompt = letter_prompt
        self.localize_prompt = localize_prompt
        self.max_new_tokens = int(max_new_tokens)
        self.caption_batch = caption_batch
        # Engine flags (read through instract_eval.adapters.protocols):
        self.scoring = scoring_line(protocol, normalisation)
        self.list_dependent_scores = protocol == "letter"
        self.decoding = f"greedy, max_new_tokens={self.max_new_tokens}"
        self.answer_log: list[dict[str, Any]] = []

    # -- hooks ------------------------------------------------------------------------------------

    def prompt_inputs(self, clip: torch.Tensor, question: str, fps: float | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def repeat_inputs(self, inputs: Mapping[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
        return {key: torch.cat([value] * n) if isinstance(value, torch.Tensor) else value
                for key, value in inputs.items()}

    def continuation_inputs(self, inputs: Mapping[str, torch.Tensor], ids: torch.Tensor,
                            attention: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input_ids": ids, "attention_mask": attention}

    def text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- pair scorer ------------------------------------------------------------------------------

    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips and ``B`` caption lists of one length to ``[B, C]`` scores."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"{self.name} expects clips [B, T, 3, H, W], got {tuple(clips.shape)}")
        if len(texts) != clips.shape[0] or len({len(captions) for captions in texts}) > 1:
            raise ValueError(f"{self.name}: score needs one caption list per clip, all of one length")
        rows = []
        with torch.no_grad():
            for clip, captions in zip(clips, texts):
                if self.protocol == "letter":
                    rows.append(self.letter_probabilities(clip, list(captions)))
                else:
                    total, count = self.log_likelihoods(clip, list(captions))
                    rows.append(total / count if self.normalisation == "mean" else total)
        return torch.stack(rows).float().cpu() if rows else torch.zeros(0, 0)

    def _caption_batch(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [self.text_ids(caption) for caption in captions]
        empty = [caption for caption, row in zip(captions, ids) if not row]
        if empty:
            raise InputError(f"{self.name}: the caption {empty[0]!r} has no tokens to score", field="--task")
        length = max(len(row) for row in ids)
        batch = torch.zeros(len(ids), length, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.long)
        for index, row in enumerate(ids):
            batch[index, :len(row)] = torch.tensor(row)
            mask[index, :len(row)] = 1
        return batch.to(self.device), mask.to(self.device)

    def log_likelihoods(self, clip: torch.Tensor, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each caption's summed token log-probability given the video, and its token count (``[C]`` each).

        Captions run ``caption_batch`` at a time (the prompt's cache is copied for each chunk), so a
        long caption list does not hold one cache copy per caption at once.
        """
        ids, mask = self._caption_batch(captions)
        inputs = self.prompt_inputs(clip.to(self.device), self.prompt)
        prefix = inputs["input_ids"].shape[1]
        first, prompt_cache = None, None
        if self.reuse_prefix:
            out = self.net(**inputs, use_cache=True)
            first, prompt_cache = out.logits[:, -1:].float(), out.cache
        totals = []
        for start in range(0, len(captions), self.caption_batch):
            chunk_mask = mask[start:start + self.caption_batch]
            length = int(chunk_mask.sum(dim=1).max())
            chunk_ids, chunk_mask = ids[start:start + self.caption_batch, :length], chunk_mask[:, :length]
            count = chunk_ids.shape[0]
            if self.reuse_prefix:
                last = start + self.caption_batch >= len(captions)
                cache = prompt_cache if last else copy.deepcopy(prompt_cache)
                cache.batch_repeat_interleave(count)
                attention = torch.cat([inputs["attention_mask"].expand(count, -1), chunk_mask], dim=1)
                rest = self.net(**self.continuation_inputs(inputs, chunk_ids, attention), cache=cache, use_cache=True)
                logits = torch.cat([first.expand(count, 1, -1), rest.logits[:, :-1].float()], dim=1)
            else:
                full = self.repeat_inputs(inputs, count)
                full["input_ids"] = torch.cat([full["input_ids"], chunk_ids], dim=1)
                full["attention_mask"] = torch.cat([full["attention_mask"], chunk_mask], dim=1)
                for key in self.token_inputs:  # per-token inputs: the caption's tokens are text (0)
                    full[key] = torch.cat([full[key], torch.zeros_like(chunk_ids)], dim=1)
                logits = self.net(**full, use_cache=False).logits[:, prefix - 1:-1].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, chunk_ids[..., None])[..., 0]
            totals.append((logp * chunk_mask).sum(dim=1))
        return torch.cat(totals), mask.sum(dim=1).to(torch.float32)

    def letter_prompt_text(self, captions: Sequence[str]) -> str:
        """The letter-choice question: the options listed with their letters."""
        options = "\n".join(f"{letter}. {caption}" for letter, caption in zip(string.ascii_uppercase, captions))
        return f"{self.letter_prompt}\n{options}\n{_LETTER_SUFFIX}"

    def letter_ids(self, count: int) -> list[int]:
        """The token of each of the first ``count`` letters (each must be one token)."""
        ids = []
        for letter in string.ascii_uppercase[:count]:
            tokens = self.text_ids(letter)
            if len(tokens) != 1:
                raise InputError(f"{self.name}: the tokenizer splits the option letter {letter!r} into {tokens}; "
                                 "the letter-choice protocol needs one token per letter", field=_ARGS)
            ids.append(tokens[0])
        return ids

    def letter_probabilities(self, clip: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """``[C]``: the probability of each option's letter as the first answer token."""
        if len(captions) > len(string.ascii_uppercase):
            raise InputError(f"{self.name}: the letter-choice protocol takes at most 26 options, got "
                             f"{len(captions)}", field=_ARGS)
        letters = torch.tensor(self.letter_ids(len(captions)), device=self.device)
        inputs = self.prompt_inputs(clip.to(self.device), self.letter_prompt_text(captions))
        logits = self.net(**inputs, use_cache=False).logits[0, -1].float()
        return torch.softmax(logits, dim=-1)[letters]

    # -- answering and localizing -----------------------------------------------------------------

    def answer(self, clip: torch.Tensor, question: str, fps: float | None = None) -> str:
        """The greedy answer (at most ``max_new_tokens``) to ``question`` about ``clip`` ``[T, 3, H, W]``
        taken at ``fps`` frames a second when known."""
        return self.generate_answer(self.prompt_inputs(clip.to(self.device), question, fps))

    def generate_answer(self, inputs: Mapping[str, torch.Tensor]) -> str:
        """The greedy continuation of prepared prompt ``inputs`` (a batch of one), decoded: the
        decoding every QA localizer records (``decoding``)."""
        prefix = inputs["input_ids"].shape[1]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            output = self.net.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                       temperature=None, top_p=None, top_k=None, pad_token_id=pad)
        return self.tokenizer.decode(output[0, prefix:], skip_special_tokens=True).strip()

    def localize_question(self, label: str, description: str | None, duration: float = 0.0) -> str:
        """The question asked for one class (its description added when the task has one, the
        video's duration so that an answer in seconds can be right)."""
        extra = f" It is described as: {description}" if description else ""
        return self.localize_prompt.format(label=label, description=extra, duration=duration)

    def localize(self, video: str, classes: Sequence[str],
                 descriptions: Mapping[str, str] | None) -> list[Segment]:
        """Segments of every class in ``video``: one answer per class, parsed; unparsable ones count as none."""
        from instract_eval.media import ClipRequest, apply_frame_spec
        from instract_eval.media.clips import decode_clip_frames

        decoded = decode_clip_frames(ClipRequest(path=os.fspath(video)), self.spec)
        clip = apply_frame_spec(decoded.frames, self.spec)[0]
        duration = float(decoded.plan.duration)
        fps = clip.shape[0] / duration if duration > 0 else None  # the frames span the whole video
        segments: list[Segment] = []
        for label in classes:
            description = descriptions.get(label) if descriptions else None
            text = self.answer(clip, self.localize_question(label, description, duration), fps)
            parsed = parse_segments(text, duration, relative=self.relative_timestamps, scale=self.timestamp_scale)
            self.answer_log.append({"video": os.fspath(video), "class": label, "answer": text,
                                    "parsed": parsed is not None, "segments": [list(s) for s in parsed or []]})
            segments.extend(Segment(float(start), float(end), label, 1.0) for start, end in parsed or [])
        return segments

    def answer_counts(self) -> dict[str, int]:
        """How many answers were given, parsed into segments, and unparsable (kept as empty predictions)."""
        parsed = sum(1 for entry in self.answer_log if entry["parsed"])
        return {"answers": len(self.answer_log), "parsed": parsed, "unparsable": len(self.answer_log) - parsed}
