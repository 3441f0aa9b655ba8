"""Train the packaged synthetic-world dual encoders (``synth-bag-of-frames``, ``synth-temporal``).

    python -m instract_eval.training.synth --model all --seed 0 --out adapters/weights/

Why a script and not only weights: the shipped weights must be reproducible, so everything that
decides them is here and seeded, and the seeds are written into each weights file.

Data. Training worlds come from `generate_world` with seeds disjoint from every evaluation world
(the default world is seed 0, tests use small seeds; training uses ``1000 + 100 * seed + k``).
Clips go through the evaluation pipeline itself (`clip_loader` with the model's `FrameSpec`, which
equals the synthetic tasks' protocol), so training sees the same MP4 artefacts, sampling and
normalisation as evaluation. Each clip's text comes from the world's annotation files
(Semantic, Logic, Dynamics, ActionBench captions and SRT labels) and is parsed back into its
meaning, a list of (object, action) steps, from the world's vocabulary.

Loss. A symmetric multi-positive InfoNCE over the batch: every clip and its time-reversal
against every text of the batch, where the texts are the clips' captions plus hard negatives
made from each caption's meaning: the antonym caption, order-swapped steps, one action replaced,
the acting objects replaced (colour, shape or both). The reversed clip is a positive of the
reversed caption (antonyms in reverse order), i.e. of the antonym caption for a single step.
Which (clip, text) pairs are positive, negative or unknown is decided from the meanings, never
from string identity, so an SRT label ("move left") is a positive of every clip that moves one
object left, and a caption naming an object is neither positive nor negative for an SRT clip of
that action whose object the label file does not name.

Both models get exactly the same batches and negatives; the bag-of-frames model simply cannot
use the order they teach. Reversal is applied as a flip of the decoded frames, which is exactly
what ``ClipRequest(reverse=True)`` decodes (checked on a few clips at start-up).

Cost and reproducibility: on two CPU cores the data take about 25 s (three worlds generated in
parallel, then decoded) and each model about 1-1.5 min of training. Everything is seeded, and
the weights files are written canonically, so rerunning the command with the same torch version
and thread count (recorded in the metadata) reproduces the shipped files byte for byte.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from instract_eval.adapters.protocols import task_frame_spec
from instract_eval.adapters.synth_models import (
    BAG_OF_FRAMES,
    MODEL_NAMES,
    TEMPORAL,
    ArchitectureConfig,
    SynthNet,
    Tokenizer,
    WeightsDocument,
    build_net,
    parameter_count,
    save_synth_weights,
)
from instract_eval.media import ClipRequest, FrameSpec, clip_loader, load_clip

from instract_eval.synth import GENERATOR_VERSION, generate_world, writers
from instract_eval.synth.captions import STEP_SEPARATOR
from instract_eval.synth.sizes import WorldSize
from instract_eval.synth.vocabulary import ACTION_BY_NAME, ACTION_NAMES, ACTIONS, COLOURS, OBJECTS, SHAPES, ObjectKind

# ------------------------------------------------------------------------------------------------
# Configuration

WORLD_SEED_BASE = 1000      # evaluation worlds use seed 0 and small test seeds; training never does
WORLDS_PER_SEED = 3

# A training world: the trimmed-clip tasks, larger than `default`, without the untrimmed TAL videos.
TRAIN_WORLD = WorldSize(
    name="train", canvas=32, fps=8,
    semantic_rows=240, logic_rows=160, dynamics_pools=10, dynamics_clips_per_pool=9, actionbench_rows=160,
    srt_test_per_class=3, srt_train_per_seen_class=(3, 6), tal_videos=0, tal_duration_s=(12.0, 14.0),
)

# The pixels both models are trained with: the synth protocol's sampling at its native 32 px.
FRAME_SPEC = FrameSpec(num_frames=8, sampling="uniform", fps=8.0, size=32, crop=32,
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (stored in the weights' metadata)."""

    steps: int = 600
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 0.02
    warmup_steps: int = 40
    temperature: float = 0.07      # initial; learned, clamped to >= 0.01
    negatives_per_clip: int = 5    # hard-negative captions drawn per clip per batch

    def as_json(self) -> dict:
        return asdict(self)


ARCHITECTURES = {
    BAG_OF_FRAMES: dict(kind="bag-of-frames"),
    TEMPORAL: dict(kind="temporal"),
}


# ------------------------------------------------------------------------------------------------
# Meanings: what a caption or label says, so that relations are decided by content


Step = tuple[ObjectKind | None, str]   # (object, action); object None = an SRT label (object unnamed)
Meaning = tuple[Step, ...]

_STEP_TEXTS: dict[str, Step] = {action.caption(kind.name): (kind, action.name) for kind in OBJECTS
                                for action in ACTIONS}


def parse_caption(text: str) -> Meaning:
    """The steps of a caption of the world ("move the red square left, then grow the blue circle")."""
    try:
        return tuple(_STEP_TEXTS[part] for part in text.split(STEP_SEPARATOR))
    except KeyError as error:
        raise ValueError(f"not a caption of the synthetic world: {text!r}") from error


def parse_label(text: str) -> Meaning:
    if text not in ACTION_BY_NAME:
        raise ValueError(f"not an action label of the synthetic world: {text!r}")
    return ((None, text),)


def render(meaning: Meaning) -> str:
    """The text of a meaning: a caption, or the bare action label when the object is unnamed."""
    if len(meaning) == 1 and meaning[0][0] is None:
        return meaning[0][1]
    return STEP_SEPARATOR.join(ACTION_BY_NAME[action].caption(kind.name) for kind, action in meaning)


def opposite(action: str) -> str:
    """What a step looks like played backwards: its antonym (shake and bounce look like themselves)."""
    return ACTION_BY_NAME[action].antonym or action


def reversed_meaning(meaning: Meaning) -> Meaning:
    """The meaning of the clip played backwards: steps in reverse order, each one reversed."""
    return tuple((kind, opposite(action)) for kind, action in reversed(meaning))


POSITIVE, NEGATIVE, UNKNOWN = 1, 0, -1


def relation(text: Meaning, video: Meaning) -> int:
    """Whether ``text`` describes a clip of meaning ``video``: positive, negative or unknown.

    A label (object None) describes every single-step clip of its action. A caption naming an
    object is unknown for a labelled clip of its action, whose object the label file omits.
    """
    if len(text) != len(video):
        return NEGATIVE
    unknown = False
    for (text_kind, text_action), (video_kind, video_action) in zip(text, video):
        if text_action != video_action:
            return NEGATIVE
        if text_kind is not None and video_kind is not None and text_kind != video_kind:
            return NEGATIVE
        if text_kind is not None and video_kind is None:
            unknown = True
    return UNKNOWN if unknown else POSITIVE


# ------------------------------------------------------------------------------------------------
# Hard negatives


def hard_negatives(rng: np.random.Generator, meaning: Meaning, count: int) -> list[Meaning]:
    """Up to ``count`` wrong meanings, the ones that test order and direction first.

    Always first (when they differ from the positive): the antonym in place, the order swap of a
    procedure. Then, drawn at random: one action replaced, the acting objects replaced by other
    objects (a new colour, a new shape, or both).
    """
    first: list[Meaning] = []
    antonym = tuple((kind, opposite(action)) for kind, action in meaning)
    first.append(antonym)
    if len(meaning) > 1:
        orders = [order for order in itertools.permutations(range(len(meaning)))
                  if order != tuple(range(len(meaning)))]
        first.append(tuple(meaning[i] for i in orders[int(rng.integers(len(orders)))]))
    pool = [_replace_action(rng, meaning), _replace_objects(rng, meaning, "colour"),
            _replace_objects(rng, meaning, "shape"), _replace_objects(rng, meaning, "both"),
            _replace_action(rng, meaning)]
    chosen: dict[Meaning, None] = {}
    for candidate in first + [pool[i] for i in rng.permutation(len(pool))]:
        if candidate != meaning and len(chosen) < count:
            chosen.setdefault(candidate, None)
    return list(chosen)


def _replace_action(rng: np.random.Generator, meaning: Meaning) -> Meaning:
    index = int(rng.integers(len(meaning)))
    kind, action = meaning[index]
    others = [a for a in ACTION_NAMES if a != action]
    changed = list(meaning)
    changed[index] = (kind, others[int(rng.integers(len(others)))])
    return tuple(changed)


def _replace_objects(rng: np.random.Generator, meaning: Meaning, what: str) -> Meaning:
    """Each named object replaced consistently (a repeated actor stays one object)."""
    kinds = [kind for kind, _ in meaning if kind is not None]
    if not kinds:
        return meaning
    mapping: dict[ObjectKind, ObjectKind] = {}
    for kind in dict.fromkeys(kinds):
        colour, shape = kind.colour, kind.shape
        if what in ("colour", "both"):
            colours = [c for c in COLOURS if c != kind.colour]
            colour = colours[int(rng.integers(len(colours)))]
        if what in ("shape", "both"):
            shapes = [s for s in SHAPES if s != kind.shape]
            shape = shapes[int(rng.integers(len(shapes)))]
        mapping[kind] = ObjectKind(colour, shape)
    return tuple((mapping.get(kind, kind) if kind is not None else None, action) for kind, action in meaning)


# ------------------------------------------------------------------------------------------------
# Data: clips of the training worlds, decoded by the evaluation pipeline


@dataclass(frozen=True)
class Sample:
    """One training clip: where it is, and what it shows."""

    request: ClipRequest
    meaning: Meaning


def world_samples(root: Path) -> list[Sample]:
    """Every trimmed clip of a world with the meaning its annotation files give it."""
    videos = root / writers.VIDEOS

    def request(video_id: str, start: float, end: float) -> ClipRequest:
        return ClipRequest(str(videos / f"{video_id}.mp4"), start, end, video_id=f"{root.name}/{video_id}")

    samples = []
    for name in (writers.SEMANTIC, writers.LOGIC):
        for row in json.loads((root / name).read_text(encoding="utf-8")):
            samples.append(Sample(request(row["video_id"], row["start"], row["end"]), parse_caption(row["caption"])))
    for pool in sorted((root / writers.DYNAMICS).glob("*.json")):
        for caption, row in json.loads(pool.read_text(encoding="utf-8")).items():
            samples.append(Sample(request(row["video_id"], row["start"], row["end"]), parse_caption(caption)))
    for row in _jsonl(root / writers.ACTIONBENCH):
        samples.append(Sample(request(row["video_uid"], row["clip_start"], row["clip_end"]),
                              parse_caption(row["clip_text"])))
    for name in (writers.SRT_TRAIN, writers.SRT_TEST):
        for row in _jsonl(root / name):
            samples.append(Sample(request(row["video"], row["start"], row["end"]), parse_label(row["label"])))
    return samples


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_protocol(root: Path, spec: FrameSpec) -> None:
    """Fail unless the world's clip tasks decode with exactly ``spec`` (train = eval preprocessing)."""
    tasks = yaml.safe_load((root / writers.TASKS).read_text(encoding="utf-8"))["tasks"]
    for name in ("synth-semantic", "synth-logic", "synth-dynamics", "synth-aa", "synth-vr", "synth-or"):
        if task_frame_spec(spec, tasks[name]["protocol"]) != spec:
            raise RuntimeError(f"{name} decodes with another frame spec than the models are trained with")


def decode(samples: Sequence[Sample], spec: FrameSpec) -> torch.Tensor:
    """``[N, T, 3, H, W]`` float32 clips of ``samples``, exactly as the evaluation decodes them."""
    loader = clip_loader([s.request for s in samples], spec, batch_size=64, num_workers=0, threads=1)
    clips = torch.cat([batch.clips[:, 0] for batch in loader])
    if clips.shape[0] != len(samples):
        raise RuntimeError(f"decoded {clips.shape[0]} of {len(samples)} clips")
    for sample, clip in zip(samples[:3], clips[:3]):  # reversal in training = the pipeline's reversal
        backwards = load_clip(ClipRequest(sample.request.path, sample.request.start, sample.request.end,
                                          reverse=True), spec)[0]
        if not torch.equal(backwards, clip.flip(0)):
            raise RuntimeError("ClipRequest(reverse=True) is not the time flip of the clip")
    return clips


@dataclass
class TrainingData:
    """The decoded clips of the training worlds (row i of ``clips`` is ``samples[i]``)."""

    samples: list[Sample]
    clips: torch.Tensor
    world_seeds: list[int]
    seconds: float


def training_world_seeds(seed: int, worlds: int = WORLDS_PER_SEED) -> list[int]:
    """The world seeds of training seed ``seed``: ``1000 + 100 * seed + k``, never an evaluation seed."""
    if not 0 <= seed < 1000 or worlds > 100:
        raise ValueError("training seeds are 0..999 with at most 100 worlds each")
    return [WORLD_SEED_BASE + 100 * seed + k for k in range(worlds)]


def _generate(root: Path, world_seed: int) -> float:
    return generate_world(root, seed=world_seed, size=TRAIN_WORLD).seconds


def build_data(seed: int, spec: FrameSpec, *, worlds: int = WORLDS_PER_SEED, processes: int = 1) -> TrainingData:
    """Generate the training worlds of ``seed`` in a temporary directory and decode their clips.

    Worlds are generated in up to ``processes`` processes (a world depends on its seed only, so
    this changes nothing but the wall time); clips are decoded in world order.
    """
    started = time.perf_counter()
    world_seeds = training_world_seeds(seed, worlds)
    samples: list[Sample] = []
    parts = []
    with tempfile.TemporaryDirectory(prefix="instract-synth-train-") as tmp:
        roots = [Path(tmp) / f"world-{world_seed}" for world_seed in world_seeds]
        if processes > 1:
            # spawn, not fork: a forked child would inherit torch's thread pools in whatever state they are
            with ProcessPoolExecutor(max_workers=min(processes, worlds), mp_context=get_context("spawn")) as pool:
                seconds = list(pool.map(_generate, roots, world_seeds))
        else:
            seconds = [_generate(root, world_seed) for root, world_seed in zip(roots, world_seeds)]
        _log(f"generated worlds {world_seeds} ({sum(seconds):.1f} s of generation, "
             f"{time.perf_counter() - started:.1f} s wall)")
        for root in roots:
            check_protocol(root, spec)
            found = world_samples(root)
            parts.append(decode(found, spec))
            samples.extend(found)
            _log(f"{root.name}: {len(found)} clips decoded, {time.perf_counter() - started:.1f} s so far")
    return TrainingData(samples, torch.cat(parts), world_seeds, time.perf_counter() - started)


# ------------------------------------------------------------------------------------------------
# Loss


def multi_positive_nce(logits: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
    """Mean over rows with a positive of ``-log(sum_pos exp / sum_(pos+neg) exp)``; unknowns left out."""
    keep = relations != UNKNOWN
    rows = (relations == POSITIVE).any(dim=1)
    all_terms = torch.logsumexp(logits.masked_fill(~keep, -math.inf), dim=1)
    positive_terms = torch.logsumexp(logits.masked_fill(relations != POSITIVE, -math.inf), dim=1)
    return (all_terms - positive_terms)[rows].mean()


@dataclass
class Batch:
    clips: torch.Tensor          # [B, T, 3, H, W]; the videos are these clips, then the same reversed
    texts: list[str]
    relations: torch.Tensor      # [2B, texts]


def make_batch(rng: np.random.Generator, data: TrainingData, indices: np.ndarray, negatives: int) -> Batch:
    """The clips of ``indices`` and their reversals, against their captions and hard negatives."""
    clips = data.clips[torch.as_tensor(indices)]
    video_meanings = [data.samples[i].meaning for i in indices]
    video_meanings += [reversed_meaning(m) for m in video_meanings]
    text_meanings: dict[Meaning, None] = dict.fromkeys(video_meanings)
    for i in indices:
        for negative in hard_negatives(rng, data.samples[i].meaning, negatives):
            text_meanings.setdefault(negative, None)
    texts = list(text_meanings)
    relations = torch.tensor([[relation(t, v) for t in texts] for v in video_meanings], dtype=torch.long)
    return Batch(clips, [render(t) for t in texts], relations)


def batch_loss(net: SynthNet, tokenizer: Tokenizer, logit_scale: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The loss of a batch; reversed clips reuse the per-frame features of their clips, flipped in time
    (the frame encoder sees one frame at a time, so this is exactly the encoding of the reversed clip)."""
    features = net.video.frame_features(batch.clips)
    videos = F.normalize(net.video.pool(torch.cat([features, features.flip(1)])), dim=-1)
    texts = F.normalize(net.encode_text(tokenizer, batch.texts), dim=-1)
    logits = logit_scale.exp() * videos @ texts.T
    return 0.5 * (multi_positive_nce(logits, batch.relations) + multi_positive_nce(logits.T, batch.relations.T))


# ------------------------------------------------------------------------------------------------
# Training


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_model(name: str, data: TrainingData, tokenizer: Tokenizer, seed: int, config: TrainConfig
                ) -> tuple[SynthNet, dict]:
    """Train one architecture on ``data``; the batches and negatives depend on ``seed`` only."""
    started = time.perf_counter()
    seed_everything(seed)
    architecture = ArchitectureConfig(**ARCHITECTURES[name], num_frames=FRAME_SPEC.num_frames,
                                      frame_size=FRAME_SPEC.crop or 32, vocabulary_size=len(tokenizer))
    net = build_net(architecture)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)))
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and "positions" not in n]
    no_decay = [p for n, p in net.named_parameters() if p.ndim < 2 or "positions" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay + [logit_scale], "weight_decay": 0.0}], lr=config.lr)
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(len(data.samples))
    cursor = 0
    history: list[float] = []
    _log(f"{name}: {parameter_count(net):,} parameters, {config.steps} steps of {config.batch_size} clips")
    net.train()
    for step in range(config.steps):
        if cursor + config.batch_size > len(order):
            order, cursor = rng.permutation(len(data.samples)), 0
        indices = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        batch = make_batch(rng, data, indices, config.negatives_per_clip)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = batch_loss(net, tokenizer, logit_scale, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            logit_scale.clamp_(max=math.log(100.0))
        history.append(loss.item())
        if step % 50 == 0 or step == config.steps - 1:
            recent = np.mean(history[-50:])
            _log(f"{name}: step {step + 1}/{config.steps} loss {recent:.4f} "
                 f"(temperature {math.exp(-logit_scale.item()):.4f}, {time.perf_counter() - started:.0f} s)")
    net.eval()
    summary = {"final_loss_mean_last_50": round(float(np.mean(history[-50:])), 5),
               "first_loss": round(history[0], 5), "temperature": round(math.exp(-logit_scale.item()), 5)}
    return net, summary


def training_metadata(seed: int, data: TrainingData, config: TrainConfig, summary: dict) -> dict:
    return {
        "script": "python -m instract_eval.training.synth",
        "seed": seed,
        "world_seeds": data.world_seeds,
        "world_size": TRAIN_WORLD.as_dict(),
        "generator_version": GENERATOR_VERSION,
        "num_clips": len(data.samples),
        "config": config.as_json(),
        "loss": "symmetric multi-positive InfoNCE; each clip and its time-reversal against the batch's captions "
                "and hard negatives (antonym, order swap, action replaced, objects replaced)",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        **summary,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instract_eval.training.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=(*MODEL_NAMES, "all"), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("adapters/weights"))
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: CPU count, at most 8)")
    args = parser.parse_args(argv)
    threads = args.threads or min(8, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    names = MODEL_NAMES if args.model == "all" else (args.model,)
    config = TrainConfig(steps=args.steps)
    started = time.perf_counter()
    data = build_data(args.seed, FRAME_SPEC, processes=threads)
    _log(f"data: {len(data.samples)} clips from worlds {data.world_seeds} in {data.seconds:.1f} s")
    tokenizer = Tokenizer.from_texts(render(m) for m in _all_meanings())
    for name in names:
        model_started = time.perf_counter()
        net, summary = train_model(name, data, tokenizer, args.seed, config)
        document = WeightsDocument(name=name, architecture=net.config, vocabulary=tokenizer.vocabulary,
                                   frame_spec=FRAME_SPEC,
                                   training=training_metadata(args.seed, data, config, summary))
        path = args.out / f"{name}.safetensors"
        digest = save_synth_weights(path, net, document)
        _log(f"{name}: wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {digest[:16]}) after "
             f"{time.perf_counter() - model_started:.1f} s of training; {summary}")
    _log(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _all_meanings() -> list[Meaning]:
    """One meaning per word source: every object with every action, every label, and the step joiner.

    The vocabulary is the world's caption and label language, fixed by `vocabulary`, so it does not
    depend on which captions the training worlds happened to draw.
    """
    meanings: list[Meaning] = [((kind, action.name),) for kind in OBJECTS for action in ACTIONS]
    meanings += [((None, action.name),) for action in ACTIONS]
    meanings.append(((OBJECTS[0], ACTIONS[0].name), (OBJECTS[1], ACTIONS[1].name)))  # ", then "
    return meanings


def _log(message: str) -> None:
    print(f"[train] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
