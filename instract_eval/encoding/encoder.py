"""The engines' one door to a model: each unique input encoded once, batched, cached, sharded.

An engine asks an `Encoder` for the embeddings of clip requests under a frame spec, of texts, or
for a localizer's answers on videos; it never calls the model itself. The encoder

- keeps every output it has produced or read (in memory, and in an `OutputCache` on disk when it
  has one), so a clip or text shared by several tasks of a run is encoded once, a second run reads
  the cache, and a killed run resumes from the last whole batch;
- computes only what is missing, in sorted key order split over the ranks of a distributed job,
  and gathers the outputs so every rank sees all of them;
- batches (``batch_size`` clips per forward pass, decoded by ``num_workers`` DataLoader workers),
  moves inputs to the model's device, runs under ``torch.inference_mode`` and, for ``bf16``/
  ``fp16``, under autocast;
- halves the batch after an out-of-memory error and keeps the smaller size for the rest;
- refuses NaN/inf outputs with an error naming the items, since a NaN would rank silently.

A request's cache identity is its key (window, context, clips, reversal) plus the file's path,
size and modification time, so an edited or replaced video is encoded afresh. The temporal clips
of a request (ACE: 3) are stored one by one; engines get them averaged, or kept for engines that
average scores over clips.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instract_eval.adapters.protocols import Segment, has_own_similarity, list_dependent_scores
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest, FrameSpec, clip_loader
from instract_eval.media.decode import decoder_threads

from .cache import OutputCache, digest
from .distributed import SINGLE_PROCESS, Ranks

__all__ = ["EncodedVideos", "ScoredPairs", "Encoder", "PRECISIONS"]

PRECISIONS: Mapping[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class EncodedVideos:
    """Embeddings by request key, and the requests that could not be decoded (with why)."""

    embeddings: dict[str, np.ndarray]
    failed: dict[str, str]


@dataclass(frozen=True)
class ScoredPairs:
    """A pair scorer's scores by (request key, caption list), and the requests that failed (with why)."""

    scores: dict[tuple[str, tuple[str, ...]], np.ndarray]
    failed: dict[str, str]


class Encoder:
    """Outputs of ``model`` for the engines; see the module docstring.

    ``counts`` records the work done, for result records and benchmarks. Over the whole job (all
    ranks): ``videos_encoded`` (unique requests that went through the model), ``texts_encoded``,
    ``videos_reused`` and ``texts_reused`` (served from memory or disk), ``localized`` and
    ``localized_reused``. This rank's own work: ``clips_encoded`` (a request of K temporal clips
    is K clips), ``forward_passes`` (model calls) and ``oom_retries``.
    """

    def __init__(self, model: Any, *, batch_size: int = 8, num_workers: int = 0, allow_missing: bool = False,
                 device: str | torch.device = "cpu", precision: str = "fp32", text_batch_size: int = 256,
                 cache: OutputCache | None = None, ranks: Ranks = SINGLE_PROCESS, progress: Any = None):
        if batch_size < 1 or text_batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {min(batch_size, text_batch_size)}",
                             field="--batch-size")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise InputError(f"the number of decoding workers must be 0 (decode in this process) or more, got "
                             f"{num_workers!r}", field="--workers")
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})",
                             field="--precision")
        self.model = model
        self.batch_size = batch_size
        self.text_batch_size = text_batch_size
        self.num_workers = num_workers
        self.allow_missing = allow_missing
        self.device = torch.device(device)
        self.precision = precision
        self.cache = cache
        self.ranks = ranks
        self.progress = progress
        self.label = ""  # whose work the progress shows (the runner sets "MODEL TASK")
        self.counts: Counter[str] = Counter()
        # How clips are decoded, for the run's record: worker processes and decoder threads each.
        threads = decoder_threads(max(1, num_workers))
        self.decoding = {"workers": num_workers, "decoder_threads": threads,
                         "thread_type": "frame+slice" if threads > 1 else "single",
                         "gop_sharing": "requests sorted by video and time, each keyframe interval decoded once"}
        self._outputs: dict[str, dict[str, Any]] = {}
        self._forward_limit: dict[str, int] = {}

    # -- what the engines ask for ------------------------------------------------------------

    def videos(self, requests: Iterable[ClipRequest], spec: FrameSpec, *, method: str = "encode_video",
               keep_clips: bool = False) -> EncodedVideos:
        """``model.<method>`` of each unique request; missing or broken files raise unless ``allow_missing``.

        ``method`` is ``encode_video`` (``[B, D]``) or ``encode_video_tokens`` (``[B, K, D]``).
        With ``keep_clips`` each embedding has a leading axis over the request's temporal clips.
        """
        unique = {request.key(): request for request in requests}
        identity = {key: _file_identity(request) for key, request in unique.items()}
        namespace = self._namespace(method, frame_spec=spec.key())
        stored = self._stored(namespace)
        todo = self._agreed_todo(key for key in unique if identity[key] not in stored)
        self.counts["videos_reused"] += len(unique) - len(todo)

        def encode_share(share: list[str]) -> dict[str, Any]:
            return self._encode_clips([unique[key] for key in share], spec, method, namespace, identity)

        failures = self._compute_shared(todo, encode_share, stored)
        self.counts["videos_encoded"] += len(todo) - len(failures)
        if failures and not self.allow_missing:
            first = min(failures, key=lambda failure: failure.key)
            raise first.to_error()
        embeddings = {}
        for key in unique:
            output = stored.get(identity[key])
            if output is not None:
                embeddings[key] = output if keep_clips else output.mean(axis=0)
        failed = {failure.key: f"{failure.path}: {failure.message}" for failure in sorted(failures)}
        return EncodedVideos(embeddings, failed)

    def texts(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """``model.encode_text`` of each unique text."""
        unique = list(dict.fromkeys(texts))
        namespace = self._namespace("encode_text")
        stored = self._stored(namespace)
        todo = self._agreed_todo(text for text in unique if text not in stored)
        self.counts["texts_reused"] += len(unique) - len(todo)

        def encode_share(share: list[str]) -> dict[str, Any]:
            outputs: dict[str, Any] = {"outputs": {}, "failures": []}
            for start in range(0, len(share), self.text_batch_size):
                chunk = share[start:start + self.text_batch_size]
                encoded = self._forward("encode_text", self.model.encode_text, chunk).numpy()
                _check_finite(encoded, chunk, "text embeddings")
                batch = dict(zip(chunk, encoded))
                self._store(namespace, batch)
                outputs["outputs"].update(batch)
            return outputs

        self._compute_shared(todo, encode_share, stored)
        self.counts["texts_encoded"] += len(todo)
        return {text: stored[text] for text in unique}

    def pair_scores(self, pairs: Iterable[tuple[ClipRequest, Sequence[str]]], spec: FrameSpec) -> ScoredPairs:
        """``model.score`` of each unique (clip request, caption list): a pair scorer's answers.

        A clip needed with several caption lists is decoded once and scored once, against their
        concatenation (each list on its own for a scorer with ``list_dependent_scores``); the scores
        of a request's temporal clips are averaged. Missing or broken
        files raise unless ``allow_missing``, as for `videos`.
        """
        wanted: dict[str, dict[tuple[str, ...], None]] = {}
        requests: dict[str, ClipRequest] = {}
        for request, texts in pairs:
            requests[request.key()] = request
            wanted.setdefault(request.key(), {})[tuple(texts)] = None
        identity = {key: _file_identity(request) for key, request in requests.items()}

        def entry(key: str, texts: tuple[str, ...]) -> str:
            return f"{identity[key]}|{digest(list(texts))}"

        separate = list_dependent_scores(self.model)
        namespace = self._namespace("score", frame_spec=spec.key())
        stored = self._stored(namespace)
        todo = self._agreed_todo(key for key, lists in wanted.items() if any(entry(key, t) not in stored for t in lists))
        self.counts["videos_reused"] += len(requests) - len(todo)

        def score_share(share: list[str]) -> dict[str, Any]:
            loader = clip_loader(_decoding_order(requests[key] for key in share), spec, batch_size=self.batch_size,
                                 num_workers=self.num_workers, on_error=self._on_decode_error)
            outputs: dict[str, Any] = {}
            for batch in self._progress(loader, "scoring pairs", total=len(share),
                                        step=lambda batch: len(batch.keys)):
                size, num_clips = batch.clips.shape[:2]
                # One job per clip and its caption lists, concatenated; or, for a scorer whose scores
                # depend on the whole list (letter choice), one job per (clip, caption list).
                jobs = [(row, lists) for row, key in enumerate(batch.keys)
                        for lists in ([[*wanted[key]]] if not separate else [[texts] for texts in wanted[key]])]
                for members, texts in _same_length_groups([[t for ts in lists for t in ts] for _, lists in jobs]):
                    rows = [jobs[member][0] for member in members]
                    clips = batch.clips[rows].flatten(0, 1)
                    per_clip = [texts[i // num_clips] for i in range(len(rows) * num_clips)]
                    scores = self._forward("score", lambda index: self.model.score(
                        clips[index].to(self.device), [per_clip[i] for i in index]), list(range(len(clips))))
                    scores = scores.reshape(len(rows), num_clips, -1).mean(dim=1).numpy()
                    keys = [batch.keys[row] for row in rows]
                    _check_finite(scores, keys, "(clip, caption) scores")
                    for member, key, row in zip(members, keys, scores):
                        start = 0
                        for caption_list in jobs[member][1]:
                            outputs[entry(key, caption_list)] = row[start:start + len(caption_list)]
                            start += len(caption_list)
                self.counts["clips_encoded"] += size * num_clips
                self._store(namespace, {k: v for k, v in outputs.items() if k not in stored})
            return {"outputs": outputs, "failures": list(loader.failures)}

        failures = self._compute_shared(todo, score_share, stored)
        self.counts["videos_encoded"] += len(todo) - len(failures)
        if failures and not self.allow_missing:
            raise min(failures, key=lambda failure: failure.key).to_error()
        scores = {(key, texts): stored[entry(key, texts)] for key, lists in wanted.items() for texts in lists
                  if entry(key, texts) in stored}
        failed = {failure.key: f"{failure.path}: {failure.message}" for failure in sorted(failures)}
        return ScoredPairs(scores, failed)

    @property
    def own_similarity(self) -> bool:
        """Whether the model ranks with a score of its own (``similarity``) rather than the cosine."""
        return has_own_similarity(self.model)

    def similarity(self, videos: np.ndarray, texts: np.ndarray) -> np.ndarray:
        """The model's own score of each of ``[B, D]`` videos against each of ``[N, D]`` texts: ``[B, N]``.

        Computed on the model's device under inference mode, returned as float64. Models without
        ``similarity`` are scored by the engines' cosine; this is for those with one (CLIP's
        logit scale, SigLIP's sigmoid with bias, MIL-NCE's raw dot product).
        """
        videos = np.asarray(videos, dtype=np.float32)
        texts = np.asarray(texts, dtype=np.float32)
        with torch.inference_mode():
            scores = self.model.similarity(torch.from_numpy(videos).to(self.device),
                                           torch.from_numpy(texts).to(self.device))
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (len(videos), len(texts)):
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise InputError(f"similarity returned {shape} for {len(videos)} videos and {len(texts)} texts; "
                             f"expected ({len(videos)}, {len(texts)})", field="--model")
        values = scores.detach().double().cpu().numpy()
        if not np.isfinite(values).all():
            raise InputError("the model's similarity returned NaN or inf scores", field="--model")
        return values

    def localize(self, videos: Sequence[tuple[str, str | os.PathLike]], classes: Sequence[str],
                 descriptions: Mapping[str, str] | None) -> list[Any]:
        """``model.localize`` of each ``(name, file)``, in order, under inference mode and the run's
        autocast like every other model call; answers are returned unchecked.

        The namespace includes the class list and the descriptions, so an aligned and a
        conflicting LAP run are cached apart. Only well-formed answers (lists of `Segment`) are
        written to disk; anything else goes back to the engine, which rejects it with the video.
        """
        paths = {name: Path(path) for name, path in videos}
        identity = {name: f"{name}|{_stat(path)}" for name, path in paths.items()}
        namespace = self._namespace("localize", classes=list(classes), descriptions=descriptions)
        stored = self._stored(namespace)
        todo = self._agreed_todo(name for name in paths if identity[name] not in stored)
        self.counts["localized_reused"] += len(paths) - len(todo)

        def localize_share(share: list[str]) -> dict[str, Any]:
            outputs: dict[str, Any] = {}
            for name in self._progress(share, "localizing videos"):
                given = None if descriptions is None else copy.deepcopy(dict(descriptions))
                with torch.inference_mode(), self._autocast():
                    answer = self.model.localize(str(paths[name]), list(classes), given)
                self.counts["forward_passes"] += 1
                outputs[identity[name]] = answer
                if _is_segment_list(answer):
                    self._store(namespace, {identity[name]: [_segment_row(s) for s in answer]}, to_memory=False)
            return {"outputs": outputs, "failures": []}

        self._compute_shared(todo, localize_share, stored)
        self.counts["localized"] += len(todo)
        return [stored[identity[name]] for name, _ in videos]

    # -- shared machinery ----------------------------------------------------------------------

    def _namespace(self, output: str, **identity: Any) -> dict[str, Any]:
        """What, besides the model, fixes an output: its kind, the precision and device type it was
        computed in (bf16 and fp32 embeddings differ), and the frame spec or class list."""
        return {"output": output, "precision": self.precision, "device": self.device.type, **identity}

    @property
    def _on_decode_error(self) -> str:
        """Stop at the first broken file, unless missing files are allowed or other ranks must be
        told first (then every rank's failures are gathered and the first one raised on all)."""
        return "skip" if self.allow_missing or self.ranks.distributed else "raise"

    def _agreed_todo(self, missing: Iterable[str]) -> list[str]:
        """The keys to compute, sorted and the same on every rank: the union of what each one lacks.

        Ranks can see different caches (one read the directory after another wrote to it, or
        each node has its own), and splitting two different lists would drop items silently.
        """
        todo = set(missing)
        if self.ranks.distributed:
            todo = set().union(*self.ranks.gather(sorted(todo)))
        return sorted(todo)

    def _stored(self, namespace: Mapping[str, Any]) -> dict[str, Any]:
        """The outputs of ``namespace`` known so far: read from disk the first time it is used."""
        name = digest(namespace)
        if name not in self._outputs:
            loaded = self.cache.load(namespace) if self.cache is not None else {}
            if namespace["output"] == "localize":
                loaded = {key: [Segment(float(a), float(b), str(c), float(d)) for a, b, c, d in rows]
                          for key, rows in loaded.items()}
            self._outputs[name] = loaded
        return self._outputs[name]

    def _store(self, namespace: Mapping[str, Any], outputs: Mapping[str, Any], *, to_memory: bool = True) -> None:
        """Outputs of one batch: to disk at once (that is what a resumed run finds), and to memory."""
        if self.cache is not None:
            self.cache.store(namespace, outputs)
        if to_memory:
            self._stored(namespace).update(outputs)

    def _compute_shared(self, todo: list[str], compute: Callable[[list[str]], dict[str, Any]],
                        stored: dict[str, Any]) -> list[Any]:
        """Run ``compute`` on this rank's share of ``todo``, merge every rank's outputs into ``stored``,
        and return every rank's failures (videos that could not be decoded).

        An exception on any rank (a NaN, a broken file, a bug in the adapter) is raised on every
        rank after the gather, so no rank waits forever for one that failed.
        """
        share = self.ranks.shard(todo)
        error: Exception | None = None
        result: dict[str, Any] = {"outputs": {}, "failures": []}
        try:
            result = compute(share) if share else result
        except Exception as caught:  # raised below, on every rank
            if not self.ranks.distributed:
                raise
            error = caught
        # Other ranks get the error as a picklable copy; this rank re-raises its own, traceback included.
        shared = error if error is None or isinstance(error, InputError) else RuntimeError(
            f"rank {self.ranks.rank} failed: {type(error).__name__}: {error}")
        gathered = self.ranks.gather((result, shared))
        if error is not None:
            raise error
        errors = [e for _, e in gathered if e is not None]
        if errors:
            raise errors[0]
        failures: list[Any] = []
        for part, _ in gathered:
            stored.update(part["outputs"])
            failures.extend(part["failures"])
        return failures

    def _encode_clips(self, requests: list[ClipRequest], spec: FrameSpec, method: str,
                      namespace: Mapping[str, Any], identity: Mapping[str, str]) -> dict[str, Any]:
        loader = clip_loader(_decoding_order(requests), spec, batch_size=self.batch_size,
                             num_workers=self.num_workers, on_error=self._on_decode_error)
        encode = getattr(self.model, method)
        outputs: dict[str, Any] = {}
        for batch in self._progress(loader, "encoding videos", total=len(requests),
                                    step=lambda batch: len(batch.keys)):
            size, num_clips = batch.clips.shape[:2]
            clips = batch.clips.flatten(0, 1)
            encoded = self._forward(method, lambda chunk: encode(chunk.to(self.device)), clips)
            encoded = encoded.reshape(size, num_clips, *encoded.shape[1:]).numpy()
            _check_finite(encoded, batch.keys, "video embeddings")
            self.counts["clips_encoded"] += size * num_clips
            stored = {identity[key]: value for key, value in zip(batch.keys, encoded)}
            self._store(namespace, stored)
            outputs.update(stored)
        return {"outputs": outputs, "failures": list(loader.failures)}

    def _forward(self, method: str, call: Callable[[Any], torch.Tensor], inputs: Any) -> torch.Tensor:
        """``call`` on ``inputs`` in chunks, halving the chunk after an out-of-memory error.

        The reduced size is remembered per method, so one oversized batch costs one retry, not one
        per batch. Returns float32 on the CPU.
        """
        limit = self._forward_limit.get(method, len(inputs))
        pieces, start = [], 0
        while start < len(inputs):
            chunk = inputs[start:start + limit]
            try:
                with torch.inference_mode(), self._autocast():
                    output = call(chunk)
            except torch.OutOfMemoryError:
                if len(chunk) == 1:
                    raise InputError(f"the model ran out of memory on a single input in {method}; try "
                                     "--precision bf16, a smaller --batch-size or another --device",
                                     field="--batch-size") from None
                limit = max(1, len(chunk) // 2)
                self._forward_limit[method] = limit
                self.counts["oom_retries"] += 1
                _free_accelerator_memory(self.device)
                print(f"warning: out of memory in {method} at batch size {len(chunk)}; continuing with {limit}",
                      file=sys.stderr)
                continue
            self.counts["forward_passes"] += 1
            if not isinstance(output, torch.Tensor) or output.ndim < 2 or output.shape[0] != len(chunk):
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise InputError(f"{method} returned {shape} for {len(chunk)} inputs; expected one row per input",
                                 field="--model")
            pieces.append(output.detach().float().cpu())
            start += len(chunk)
        return torch.cat(pieces)

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _progress(self, items: Iterable[Any], what: str, *, total: int | None = None,
                  step: Callable[[Any], int] | None = None) -> Iterable[Any]:
        """``items``, advancing a bar "LABEL: what" of the shared progress display (rank 0 only)."""
        if self.progress is None or not self.ranks.is_main:
            yield from items
            return
        total = total if total is not None else len(items)  # type: ignore[arg-type]
        bar = self.progress.add_task(f"{self.label}: {what}" if self.label else what, total=total)
        try:
            for item in items:
                yield item
                self.progress.advance(bar, step(item) if step else 1)
        finally:
            self.progress.remove_task(bar)


def _decoding_order(requests: Iterable[ClipRequest]) -> list[ClipRequest]:
    """Requests by video, then by time: consecutive batches then walk each video forward, so the
    media layer decodes each keyframe interval they need once (outputs are stored by key, so the
    order changes nothing else)."""
    return sorted(requests, key=lambda r: (r.path, r.start, np.inf if r.end is None else r.end, r.key()))


def _same_length_groups(lists: list[list[str]]) -> list[tuple[list[int], list[list[str]]]]:
    """Rows grouped by caption-list length (a pair scorer takes B lists of one length C)."""
    groups: dict[int, list[int]] = {}
    for row, texts in enumerate(lists):
        groups.setdefault(len(texts), []).append(row)
    return [(rows, [lists[row] for row in rows]) for rows in groups.values()]


def _file_identity(request: ClipRequest) -> str:
    """The request's key plus where its file is and which version of it: the cache identity."""
    return f"{request.key()}|{_stat(Path(request.path))}"


def _stat(path: Path) -> str:
    try:
        info = path.stat()
    except OSError:
        return f"{path}|absent"
    return f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}"


def _is_segment_list(answer: Any) -> bool:
    """Whether ``answer`` can be stored as JSON and read back unchanged."""
    return isinstance(answer, list) and all(
        isinstance(item, Segment) and isinstance(item.label, str)
        and all(isinstance(v, (int, float)) and np.isfinite(v) for v in (item.start, item.end, item.score))
        for item in answer)


def _segment_row(segment: Segment) -> list:
    return [segment.start, segment.end, segment.label, segment.score]


def _free_accelerator_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _check_finite(values: np.ndarray, keys: Sequence[str], what: str) -> None:
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        named = [keys[i] for i in np.flatnonzero(bad)[:3]]
        raise InputError(f"the model returned NaN or inf {what} for {int(bad.sum())} item(s), "
                         f"e.g. {', '.join(named)}", field="--model")
