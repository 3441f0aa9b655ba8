"""The ``instract-eval`` command line: a thin layer over `instract_eval.scoring`.

Errors in the user's input are printed as one line (``error: FILE: FIELD: what is wrong``) with
exit code 2 and no output file; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__, scoring
from .errors import InputError
from .files import write_atomic
from .text import plain, plural, safe_markup

# Help is rendered as plain text (rich_markup_mode=None, on every Typer: each group renders its
# own): Rich markup would eat the help texts' square brackets ("[s, e]", "[samples, classes]") and
# show a value type (<bool>) for flags, which take none.
app = typer.Typer(
    name="instract-eval",
    help="Evaluation harness for action-centric video-language understanding.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # help uses a wide terminal's width, up to 120 columns
)
score_app = typer.Typer(
    help="Score predictions produced elsewhere: files in, JSON out (rates in [0, 1], ranks 1-based).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(score_app, name="score")
list_app = typer.Typer(help="List what the tool knows: registered tasks and groups, and models.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(list_app, name="list")
leaderboard_app = typer.Typer(help="Publish result records as a static leaderboard site.", no_args_is_help=True,
                              rich_markup_mode=None)
app.add_typer(leaderboard_app, name="leaderboard")

Output = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write the JSON result to this file (default: standard output).",
                 dir_okay=False),
]
Ties = Annotated[
    str,
    typer.Option("--ties", help="Tie policy: expected (exact expectation under random tie-breaking), "
                                "optimistic or pessimistic."),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on error.")]
Include = Annotated[
    Optional[list[Path]],
    typer.Option("--include", metavar="FILE", help="Also read tasks and groups from this registry file (same schema as "
                                   "tasks.yaml); repeatable."),
]
CacheDir = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="The cache that holds the embedded synthetic world of the synth tasks, as "
                                     "for `run` (default: $INSTRACT_EVAL_CACHE or ~/.cache/instract-eval).",
                 file_okay=False),
]
DataRoot = Annotated[
    Optional[Path],
    typer.Option("--data-root", help="Directory the tasks' relative data paths start from "
                                     "(default: $INSTRACT_EVAL_DATA_ROOT)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"instract-eval {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Debug = False,
) -> None:
    """Evaluate video-language models on action understanding, with the official metrics."""


@score_app.command("tal")
def score_tal(
    predictions: Annotated[Path, typer.Option("--predictions", "-p", help="Predictions JSON: "
                                              '{"results": {video: [{"segment": [s, e], "label", "score"}]}}.')],
    ground_truth: Annotated[Optional[Path], typer.Option(
        "--ground-truth", "-g", help='Ground truth JSON: {"database": {video: {"subset", "annotations": '
        '[{"segment": [s, e], "label"}]}}}. Optional with --preset thumos14, which ships the real '
        "THUMOS14 ground truth.")] = None,
    subset: Annotated[Optional[str], typer.Option(
        "--subset", help="Subset to evaluate, matched case-insensitively (default: the preset's, "
        "or the only one in the file).")] = None,
    thresholds: Annotated[Optional[str], typer.Option(
        "--thresholds", help="Comma-separated tIoU thresholds, e.g. 0.3,0.5,0.7 (overrides the preset's; "
        "without either: 0.5:0.05:0.95, the official evaluator's default).")] = None,
    preset: Annotated[Optional[str], typer.Option(
        "--preset", help="Benchmark protocol from tasks.yaml: thumos14 (tIoU 0.3:0.1:0.7, subset test), "
        "activitynet (0.5:0.05:0.95, validation) or epic (0.1:0.1:0.5, validation).")] = None,
    output: Output = None,
    debug: Debug = False,
) -> None:
    """Temporal action localization: mAP per tIoU threshold, average mAP, per-class AP.

    Equal to the official ActivityNet detection evaluator on the same files. Equal scores are
    ordered by a fixed rule (see the README), so there is no tie policy to choose.
    """
    result = scoring.score_localization(
        predictions, ground_truth, subset=subset, thresholds=_parse_thresholds(thresholds), preset=preset,
    )
    _emit(result, output)
    if thresholds is None and preset is None:
        typer.echo("note: no --thresholds or --preset given: used tIoU 0.5:0.05:0.95, the official evaluator's "
                   "default (ActivityNet-1.3); --preset thumos14 or epic gives those benchmarks' own", err=True)


@score_app.command("retrieval")
def score_retrieval(
    similarity: Annotated[Path, typer.Option("--similarity", "-s", help="[texts, videos] similarity "
                                             "matrix (.npy); ground truth on the diagonal.")],
    pools: Annotated[Optional[Path], typer.Option(
        "--pools", help="JSON mapping each pool name to its item indices; retrieval runs inside each "
        "pool and is aggregated weighted by clip count (InstrAct-Dynamics).")] = None,
    text_to_video: Annotated[Optional[Path], typer.Option(
        "--text-to-video", help="int .npy giving each text row's video column (several captions per video).")] = None,
    v2t: Annotated[str, typer.Option(
        "--v2t", help="Video-to-text definition with several captions per video: max_caption "
        "(CLIP4Clip) or any_caption (CLIP_benchmark).")] = "max_caption",
    ties: Ties = "expected",
    output: Output = None,
    debug: Debug = False,
) -> None:
    """Text-to-video and video-to-text retrieval: R@1, R@5, R@10, median and mean rank."""
    if v2t not in ("max_caption", "any_caption"):
        raise InputError(f"unknown definition '{v2t}' (choose max_caption or any_caption)", field="--v2t")
    _emit(scoring.score_retrieval(similarity, pools=pools, text_to_video=text_to_video, ties=ties, v2t=v2t), output)


@score_app.command("mcq")
def score_mcq(
    scores: Annotated[Path, typer.Option("--scores", "-s", help="[queries, candidates] scores (.npy).")],
    answers: Annotated[Optional[Path], typer.Option(
        "--answers", help="int .npy with the correct candidate of each query (default: column 0).")] = None,
    mask: Annotated[Optional[Path], typer.Option(
        "--mask", help="bool .npy, same shape as the scores: which candidates exist.")] = None,
    ties: Ties = "expected",
    output: Output = None,
    debug: Debug = False,
) -> None:
    """Multiple choice: R@1, R@5, median and mean rank of the correct candidate, accuracy."""
    _emit(scoring.score_mcq(scores, answers, mask, ties=ties), output)


@score_app.command("classification")
def score_classification(
    logits: Annotated[Path, typer.Option("--logits", "-l", help="[samples, classes] or "
                                         "[runs, samples, classes] scores (.npy).")],
    labels: Annotated[Path, typer.Option("--labels", "-y", help="int .npy with each sample's class.")],
    ties: Ties = "expected",
    output: Output = None,
    debug: Debug = False,
) -> None:
    """Zero-shot classification: top-1 accuracy and macro F1; mean and std over runs."""
    _emit(scoring.score_classification(logits, labels, ties=ties), output)


@list_app.command("tasks")
def list_tasks(
    include: Include = None,
    data_root: DataRoot = None,
    cache_dir: CacheDir = None,
    debug: Debug = False,
) -> None:
    """Every registered task, the embedded synthetic world's included: its kind, paper, groups, and
    whether its data is present."""
    from rich.table import Table

    from .tasks import locate_data
    from .tasks.resolve import is_embedded, listing_registry

    registry = listing_registry(include or (), cache_dir)
    table = Table(title=f"{plural(len(registry.tasks), 'task')}, {plural(len(registry.groups), 'group')}")
    table.add_column("task", no_wrap=True)
    for column in ("kind", "paper", "groups", "data"):
        table.add_column(column, overflow="fold")
    for spec in registry.tasks.values():
        location = locate_data(spec, data_root)
        if is_embedded(spec, cache_dir):
            data = "embedded world, " + ("present" if location.present else "generated on first use")
        elif location.present:
            data = "present" if location.root is not None else "shipped"
        elif location.root is None:
            data = "no data root"
        else:
            data = f"missing {location.files[location.missing[0]]}"
        table.add_row(*map(safe_markup, (spec.name, spec.kind, spec.paper, ", ".join(registry.groups_of(spec.name)),
                                         data)))
    _print_table(table, "Data paths start at --data-root or $INSTRACT_EVAL_DATA_ROOT; one task's at "
                 "$INSTRACT_EVAL_DATA_<TASK> (e.g. INSTRACT_EVAL_DATA_INSTRACT_SEMANTIC). Each task's "
                 "`data.download` in tasks.yaml says what to fetch and from where. The synth tasks are the "
                 "embedded synthetic world, generated into the cache (--cache-dir) when first used.")


@app.command("check")
def check(
    task: Annotated[list[str], typer.Argument(help="Task or group names (see `instract-eval list tasks`).")],
    include: Include = None,
    data_root: DataRoot = None,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Report missing and unreadable videos instead of failing (an evaluation then "
        "covers the readable ones and records its coverage).")] = False,
    decode: Annotated[Optional[bool], typer.Option(
        "--decode/--no-decode", help="Open each video and read it to its last frame, which finds truncated "
        "downloads (default: for tasks of at most 200 videos).", show_default=False)] = None,
    cache_dir: CacheDir = None,
    debug: Debug = False,
) -> None:
    """Read each task's annotations and check that its videos are there and, for small tasks, that each
    decodes to its last frame, before any model runs."""
    from .tasks.evaluate import check_task_data
    from .tasks.resolve import task_registry

    for spec in task_registry(task, include or (), cache_dir).resolve(task, field="TASK"):
        report = check_task_data(spec, data_root=data_root, allow_missing=allow_missing, decode=decode)
        typer.echo(plain(_check_line(spec.name, report, decode)))
        if report["unreadable"] and not allow_missing:
            path, why = report["unreadable"][0]
            raise InputError(f"{why}; task {spec.name}: {len(report['unreadable'])} of {report['present']} videos "
                             "cannot be read to their last frame: fetch them again, or pass --allow-missing to "
                             "evaluate the rest", path=path)


def _check_line(name: str, report: dict, decode: bool | None) -> str:
    """One task's summary: what was read, and how far (present only, or decoded to the last frame)."""
    from .tasks.evaluate import DECODE_MAX_VIDEOS

    line = f"{name}: {report['items']} items, {report['present']} of {report['videos']} videos present"
    if report["decoded"] is None:
        why = "--no-decode" if decode is False else f"more than {DECODE_MAX_VIDEOS} videos; --decode reads each"
        line += f" (not decoded: {why})"
    else:
        line += f", {report['decoded']} decoded to their last frame"
        if report["unreadable"]:
            path, why = report["unreadable"][0]
            line += f"; {len(report['unreadable'])} unreadable: {path}: {why}"
            if len(report["unreadable"]) > 1:
                line += f" (and {len(report['unreadable']) - 1} more)"
    if report["missing"]:
        line += f"; missing e.g. {report['missing'][0]}"
    return line


@app.command("run")
def run(
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m", metavar="NAME", help="Model name (see `instract-eval list models`), or package.module:factory; "
        "repeatable. Default: synth-bag-of-frames, synth-temporal and actionformer-synth.")] = None,
    task: Annotated[Optional[list[str]], typer.Option(
        "--task", "-t", metavar="NAME", help="Task or group name (see `instract-eval list tasks`); repeatable. "
        "Default: the synth group on the embedded synthetic world.")] = None,
    model_args: Annotated[Optional[list[str]], typer.Option(
        "--model-args", metavar="KEY=VALUE,...", help="key=value,... for the model's factory; one for all models, or one per "
        "--model in the same order.")] = None,
    include: Include = None,
    data_root: DataRoot = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Directory for the result records: OUTPUT/MODEL/TASK.json.",
        file_okay=False)] = Path("results"),
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clip requests per forward pass (a request "
                                            "of K temporal clips is K clips); halved after an out-of-memory "
                                            "error.")] = 8,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes decoding "
                                         "videos (0: decode in the main process).")] = 0,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cuda, cuda:N, mps or cpu (default: the best available).")] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32, or bf16/fp16 autocast (fp16 needs a GPU).")] = "fp32",
    limit: Annotated[Optional[int], typer.Option(
        "--limit", help="Evaluate only the first N items (videos, for localization) of each task: "
        "a smoke run; the record says so.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        "--cache-dir", help="Where model outputs are cached, keyed by the model's fingerprint "
        "(default: $INSTRACT_EVAL_CACHE or ~/.cache/instract-eval).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write cached "
                                           "outputs.")] = False,
    log_samples: Annotated[bool, typer.Option(
        "--log-samples", help="Also write OUTPUT/MODEL/TASK.samples.jsonl: per-sample ids with their scores, "
        "ranks or predictions, for paired comparisons of two runs.")] = False,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Evaluate the videos that are present instead of failing on a missing "
        "one; the record's coverage says what was left out.")] = False,
    site: Annotated[Optional[Path], typer.Option(
        "--site", help="Directory for the leaderboard site of every record in OUTPUT (default: OUTPUT-site, "
        "beside OUTPUT; open its index.html).", file_okay=False)] = None,
    no_site: Annotated[bool, typer.Option("--no-site", help="Do not build the leaderboard site.")] = False,
    debug: Debug = False,
) -> None:
    """Evaluate models on tasks: batched, deduplicated across tasks, cached, resumable, distributed.

    With no arguments it evaluates the three small models trained on the synthetic action world (two dual encoders and an ActionFormer head on the order-aware one's features) on its synth group and prints their comparison.

    Under `torchrun --nproc-per-node N -m instract_eval run ...` the unique inputs are split over the ranks and rank 0 writes.

    Progress goes to standard error: bars in a terminal; elsewhere (a pipe, a CI log) a line when each (model, task) starts and finishes, and between them at most one every 5 s (INSTRACT_EVAL_PROGRESS_INTERVAL=SECONDS).
    """
    from rich.console import Console

    from .adapters.registry import parse_model_args
    from .api import DEFAULT_MODELS, DEFAULT_TASKS, evaluate
    from .encoding.distributed import close_process_group
    from .runner.run import ModelRequest
    from .runner.summary import summary_table

    names = list(model or DEFAULT_MODELS)
    arguments = [parse_model_args(text) for text in (model_args or [])]
    if len(arguments) > 1 and len(arguments) != len(names):
        raise InputError(f"{len(arguments)} --model-args for {len(names)} models: give one for all, or one "
                         "per --model", field="--model-args")
    arguments = arguments * len(names) if len(arguments) == 1 else arguments or [{}] * len(names)
    site = None if no_site else _site_for(output, site)
    console = Console(stderr=True)
    try:
        with _progress(console) as progress:
            report = evaluate([ModelRequest(name, args) for name, args in zip(names, arguments)],
                              list(task or DEFAULT_TASKS), include=list(include or ()), cache_dir=cache_dir,
                              use_cache=not no_cache, progress=progress, output=output, data_root=data_root,
                              batch_size=batch_size, workers=workers, device=device, precision=precision,
                              limit=limit, log_samples=log_samples, allow_missing=allow_missing)
        if report.is_main:
            _print_table(summary_table(report.records, report.skipped))
            for (model_name, why), task_names in _grouped_skips(report.skipped).items():
                subject = "it" if len(task_names) == 1 else "each"
                typer.echo(plain(f"skipped {', '.join(task_names)} for {model_name}: {subject} {why}"))
            typer.echo(f"wrote {plural(len(report.written), 'result record')} to {output}/"
                       + (" with per-sample logs" if log_samples else ""))
            if site is not None:
                from .leaderboard import build_site

                build_site([output], site)
                typer.echo(f"leaderboard of every record in {output}/: {site / 'index.html'}")
    finally:
        close_process_group()


def _grouped_skips(skipped) -> dict[tuple[str, str], list[str]]:
    """(model, reason) -> the tasks skipped for it: a localizer in the synth group is one line, not eight."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for model_name, task_name, why in skipped:
        grouped.setdefault((model_name, why), []).append(task_name)
    return grouped


def _site_for(output: Path, site: Path | None) -> Path:
    """Where `run` writes the leaderboard (default: OUTPUT-site beside OUTPUT), checked before any
    work: the destination must be writable as a site, and the records already in OUTPUT, which the
    site shows too, must be readable."""
    from .files import require_writable_directory
    from .leaderboard.site import check_destination
    from .results import read_records

    require_writable_directory(output, "--output")
    if site is None:
        base = output if output.name not in ("", ".", "..") else output.resolve()
        site = base.parent / f"{base.name}-site"
    check_destination(site, flag="--site")
    require_writable_directory(site, "--site")
    if output.is_dir() and any(output.rglob("*.json")):
        try:
            read_records(output)
        except InputError as error:
            raise InputError(f"{error.message} (run builds the leaderboard of every record in --output: move "
                             "this file away, or pass --no-site)", path=error.path, field=error.field) from None
    return site


def _progress(console):
    """Progress on standard error: bars that vanish when done in a terminal; elsewhere (a pipe, a CI
    log, where bars cannot redraw) timestamped lines, so that a long first run shows life."""
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .runner.progress import LineProgress, progress_interval

    if not console.is_terminal:
        return LineProgress(interval=progress_interval(os.environ))
    # Descriptions hold model and task names from the user's files: shown as text, never as markup.
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


@app.command("features")
def features(
    out: Annotated[Path, typer.Option("--out", help="Directory for the feature files: OUT/<video_id>.npy ([T, C] "
                                      "float32) and OUT/features.json (fps, window, stride, model fingerprint, "
                                      "frame spec, per-video counts).", file_okay=False)],
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="A feature extractor (videomae, "
                                       "vjepa2, milnce-s3d ...) or a dual encoder (its encode_video), see `instract-eval "
                                       "list models`; or package.module:factory.")],
    model_args: Annotated[Optional[str], typer.Option(
        "--model-args", metavar="KEY=VALUE,...", help="key=value,... for the model's factory.")] = None,
    videos: Annotated[Optional[Path], typer.Option(
        "--videos", help="Extract every video file directly in this directory (the file stem is the id).",
        file_okay=False)] = None,
    task: Annotated[Optional[str], typer.Option(
        "--task", "-t", metavar="NAME", help="Extract the videos of this localization task, and write OUT/tasks.yaml "
        "registering NAME-features, the same task on the feature files.")] = None,
    include: Include = None,
    data_root: DataRoot = None,
    window: Annotated[Optional[int], typer.Option(
        "--window", help="Frames per feature (default: the model's frame count; THUMOS14 with VideoMAEv2: 16).")] = None,
    stride: Annotated[Optional[int], typer.Option(
        "--stride", help="Frames between features (default: a quarter of the window; THUMOS14: 4).")] = None,
    fps: Annotated[Optional[float], typer.Option(
        "--fps", help="Rate the videos are resampled at (default: the model's, else the task's, else 30 as for "
        "THUMOS14).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per forward pass; halved after an "
                                            "out-of-memory error.")] = 8,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes decoding "
                                         "videos (0: decode in the main process).")] = 0,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cuda, cuda:N, mps or cpu (default: the best available).")] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32, or bf16/fp16 autocast (fp16 needs a GPU).")] = "fp32",
    cache_dir: Annotated[Optional[Path], typer.Option(
        "--cache-dir", help="Where model outputs are cached, keyed by the model's fingerprint, as for `run` "
        "(default: $INSTRACT_EVAL_CACHE or ~/.cache/instract-eval).", file_okay=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace features in OUT made by another model or with other settings (refused "
        "otherwise).")] = False,
    debug: Debug = False,
) -> None:
    """Per-video feature files for feature-based TAL heads: batched, cached, resumable, distributed like `run`.

    Feature i covers frames [i*stride, i*stride + window) of the video resampled at --fps; a video shorter than one window gets one feature from the whole video, flagged in features.json. Features already in OUT from the same model and settings are kept; a killed run resumes from the cache. Under `torchrun --nproc-per-node N -m instract_eval features ...` the windows are split over the ranks and rank 0 writes.
    """
    from rich.console import Console

    from .adapters.registry import parse_model_args
    from .encoding.distributed import close_process_group
    from .runner.features import FeatureOptions, features_for
    from .runner.run import ModelRequest

    if (videos is None) == (task is None):
        raise InputError("give either --videos DIR or --task TASK (one of them)", field="--videos")
    options = FeatureOptions(out=out, window=window, stride=stride, fps=fps, batch_size=batch_size, workers=workers,
                             device=device, precision=precision, overwrite=overwrite)
    console = Console(stderr=True)
    try:
        with _progress(console) as progress:
            report = features_for(ModelRequest(model, parse_model_args(model_args)), options, videos=videos,
                                  task=task, include=list(include or ()), data_root=data_root, cache_root=cache_dir,
                                  progress=progress)
        if report.is_main:
            typer.echo(plain(f"wrote features of {plural(len(report.extracted), 'video')} "
                             f"({plural(report.num_features, 'feature')}, {report.feature_dim}-d) to {out}/"
                             + (f"; kept {len(report.kept)} already there" if report.kept else "")
                             + f"; window {report.window}, stride {report.stride} at {report.fps:g} fps "
                             f"({report.fps_from})"))
            if report.short:
                typer.echo(plain(f"{plural(len(report.short), 'video')} shorter than one window got one feature "
                                 f"from the whole video (flagged in features.json): "
                                 + ", ".join(report.short[:5]) + (" ..." if len(report.short) > 5 else "")))
            if report.task_name is not None:
                typer.echo(plain(f"evaluate a feature localizer on it with: instract-eval run --model NAME --task "
                                 f"{report.task_name} --include {report.tasks_file}"))
    finally:
        close_process_group()


@app.command("compare")
def compare(
    sources: Annotated[list[Path], typer.Argument(help="Result record files, or directories of them "
                                                  "(the --output of `run`); one column per model of each.")],
    debug: Debug = False,
) -> None:
    """Side-by-side headline metrics of result records, with the difference when there are two columns."""
    from .results import label_by_source
    from .runner.summary import summary_table

    _print_table(summary_table(label_by_source(sources), delta=True))


@app.command("regress")
def regress(
    baseline: Annotated[Path, typer.Option(
        "--baseline", help="Baseline result records: a record file or a result directory (the --output of "
        "`run`). Sample logs beside the records (run --log-samples) give bootstrap intervals.")],
    candidate: Annotated[Path, typer.Option(
        "--candidate", help="Candidate result records, as --baseline; records are paired with the "
        "baseline's by task name.")],
    tolerance: Annotated[float, typer.Option(
        "--tolerance", help="How much worse (absolute, in the metric's unit) a metric may get before it "
        "can regress.")] = 0.01,
    metric_tolerance: Annotated[Optional[list[str]], typer.Option(
        "--metric-tolerance", metavar="[TASK:]METRIC=TOL", help="METRIC=TOL (that metric in every task) or TASK:METRIC=TOL (one task's "
        "metric) replaces --tolerance there; TASK:METRIC wins over METRIC; repeatable.")] = None,
    baseline_model: Annotated[Optional[str], typer.Option(
        "--baseline-model", help="The model (label or name) to take from --baseline when it holds records "
        "of several models for a task.")] = None,
    candidate_model: Annotated[Optional[str], typer.Option(
        "--candidate-model", help="The model (label or name) to take from --candidate, as --baseline-model.")] = None,
    resamples: Annotated[int, typer.Option(
        "--resamples", help="Paired bootstrap resamples (of videos) behind each interval.")] = 10_000,
    confidence: Annotated[float, typer.Option(
        "--confidence", help="Level of each bootstrap interval of the difference.")] = 0.95,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap draws: the same seed gives the same "
                                      "intervals.")] = 0,
    correction: Annotated[str, typer.Option(
        "--correction", help="holm: a metric with an interval regresses only if its p-value stays significant "
        "after Holm's adjustment over all metrics with an interval (the chance of any false alarm stays at "
        "1 - confidence); none: each interval on its own.")] = "holm",
    markdown: Annotated[Optional[Path], typer.Option(
        "--markdown", help="Also write the report as Markdown (a pull-request comment) to this file.",
        dir_okay=False)] = None,
    junit: Annotated[Optional[Path], typer.Option(
        "--junit", help="Also write JUnit XML to this file: one test case per compared task and metric, a "
        "failure for each regression.", dir_okay=False)] = None,
    debug: Debug = False,
) -> None:
    """Regression gate: compare a candidate run's result records with a baseline's and fail on a regression.

    Every metric of the tasks both sides have whose direction is higher- or lower-is-better is compared; one the baseline has and the candidate lacks fails as missing. It regresses when it is worse than the baseline by more than its tolerance and, when both records have sample logs of the same items, its paired bootstrap interval of the difference (videos resampled) lies on the worse side of zero and its p-value survives Holm's adjustment over all such metrics; without that interval the tolerance alone decides.

    Prints the comparison and the verdict. Exit code 0 when nothing regresses, 1 when something does, 2 on bad input (then no file is written), 3 if the comparison itself fails.
    """
    from .regress import compare_results, parse_tolerance, to_junit, to_markdown, to_table

    for path, flag in ((markdown, "--markdown"), (junit, "--junit")):
        if path is not None and not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise InputError(f"directory {path.parent} does not exist", path=path, field=flag)
    try:
        report = compare_results(baseline, candidate, tolerance=tolerance,
                                 tolerances=dict(parse_tolerance(text) for text in metric_tolerance or ()),
                                 baseline_model=baseline_model, candidate_model=candidate_model,
                                 n_resamples=resamples, confidence=confidence, seed=seed,
                                 correction=correction)
    except (InputError, ValueError):
        raise
    except Exception as error:  # a crash must not read as a regression (exit 1) in CI
        if debug:
            raise
        typer.echo(f"error: regress failed unexpectedly ({type(error).__name__}: {error}); rerun with --debug "
                   "for the traceback", err=True)
        raise typer.Exit(3) from None
    outputs = [(path, render(report)) for path, render in ((markdown, to_markdown), (junit, to_junit)) if path]
    for path, text in outputs:
        write_atomic(path, text)
    hints = [f"not compared: {item.task}" + (f" {item.metric}" if item.metric else "") + f": {item.reason}"
             for item in report.not_compared] + [f"note: {note}" for note in report.notes]
    _print_table(to_table(report, f"{candidate} against {baseline}"), "\n".join(map(safe_markup, hints)) or None)
    typer.echo(report.verdict())
    if not report.passed:
        raise typer.Exit(1)


@list_app.command("models")
def list_models(
    details: Annotated[bool, typer.Option("--details", help="Print each model's card: its weight tags and "
                                          "where they come from, preprocessing, tokenizer, licences, paper.")] = False,
    name: Annotated[Optional[str], typer.Argument(help="Only this model (with --details: its card).",
                                                  show_default=False)] = None,
    debug: Debug = False,
) -> None:
    """Every model the registry can create: built-in adapters and installed entry points, with their status.

    Nothing is built and nothing is downloaded: capabilities and weights are read from the model cards.
    """
    from rich.table import Table

    from .adapters.cards import UNSUPPORTED
    from .adapters.protocols import describe_capabilities
    from .adapters.registry import available_models

    entries = available_models()
    if name is not None:
        entries = [entry for entry in entries if entry.name == name]
        if not entries:
            from .adapters.registry import create_model

            create_model(name)  # raises the unknown-model error with close matches
    if details:
        for entry in entries:
            _print_card(entry)
        return
    table = Table(title=plural(len(entries), "model"))
    table.add_column("model", no_wrap=True, min_width=max((len(entry.name) for entry in entries), default=5))
    table.add_column("status", overflow="fold")
    table.add_column("can do", overflow="fold")
    table.add_column("weights", overflow="fold")
    table.add_column("description", overflow="fold")
    for entry in entries:
        card = entry.card
        if card is None:
            table.add_row(safe_markup(entry.name), "?", "?", "?", safe_markup(f"{entry.description} ({entry.source})"))
            continue
        tags = ", ".join(tag.name for tag in card.tags) or ("none published" if card.status == UNSUPPORTED
                                                            else "none needed")
        status = card.status if not card.status_reason else f"{card.status}: {card.status_reason}"
        table.add_row(safe_markup(entry.name), safe_markup(status),
                      describe_capabilities(card.capabilities, "none", ", "), safe_markup(tags),
                      safe_markup(entry.description))
    _print_table(table, "Create one with --model NAME --model-args pretrained=TAG (or checkpoint=PATH); "
                 "instract-eval list models --details [NAME] prints the cards. Any factory also runs as "
                 "--model package.module:factory; third-party packages register models under the "
                 "entry-point group instract_eval.adapters.")


def _print_card(entry) -> None:
    """One model card as labelled lines (rich markup in card text is escaped, control characters dropped)."""
    from rich.console import Console

    from .adapters.protocols import describe_capabilities

    console = Console(width=max(110, Console().width), highlight=False)
    card = entry.card
    console.print(f"[bold]{safe_markup(entry.name)}[/bold]  {safe_markup(entry.description)}")
    if card is None:
        console.print(f"  source: {safe_markup(entry.source)} (no card)\n")
        return
    status = card.status + (f" ({card.status_reason})" if card.status_reason else "")
    lines = [("family", card.family), ("status", status),
             ("capabilities", describe_capabilities(card.capabilities, "none", ", ")),
             ("checkpoint formats", ", ".join(card.checkpoint_formats) or "-"),
             ("tokenizer", card.tokenizer or "-"), ("code licence", card.code_licence or "-"),
             ("weights licence", card.weights_licence or "-"), ("paper", card.paper or "-"),
             ("citation", card.citation or "-"), ("code version", card.code_version),
             ("frame spec", card.frame_spec.key() if card.frame_spec is not None else "-")]
    for label, value in lines:
        console.print(f"  {label}: {safe_markup(str(value))}")
    for tag in card.tags:
        marker = " (default)" if tag.name == card.default_tag else ""
        extra = [f"args {dict(tag.args)}"] if tag.args else []
        if tag.base:
            extra.append(f"needs tag {tag.base} as clip_checkpoint")
        if tag.frame_spec is not None and tag.frame_spec != card.frame_spec:
            extra.append(f"frames {tag.frame_spec.key()}")
        if tag.notes:
            extra.append(tag.notes)
        suffix = f"; {'; '.join(extra)}" if extra else ""
        console.print(f"  tag {safe_markup(tag.name)}{marker}: {safe_markup(tag.location())}{safe_markup(suffix)}")
    console.print()


def _parse_matches(texts: list[str]) -> dict[str, str]:
    """``LABEL=METHOD`` pairs; METHOD must be a reported row's name, so a typo is caught here."""
    from .leaderboard.reported import reported_rows, reported_tasks

    known = {row.method for task in reported_tasks() for row in reported_rows(task)}
    matches = {}
    for text in texts:
        label, equals, method = text.partition("=")
        if not equals or not label.strip() or not method.strip():
            raise InputError(f"'{text}' is not LABEL=METHOD", field="--match")
        if method.strip() not in known:
            raise InputError(f"no paper reports a method named '{method.strip()}' (the names are those of the "
                             "task pages' reported rows)", field="--match")
        matches[label.strip()] = method.strip()
    return matches


@leaderboard_app.command("build")
def leaderboard_build(
    sources: Annotated[list[Path], typer.Argument(help="Result record files, or directories of them (the "
                                                  "--output of `run`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the site (created; a site built "
                                      "there before is replaced, other files are refused).", file_okay=False)],
    match: Annotated[Optional[list[str]], typer.Option(
        "--match", metavar="LABEL=METHOD", help="LABEL=METHOD: our model LABEL is the paper's METHOD, so the page shows the "
        "difference; repeatable. Names that agree ignoring case and punctuation match without it.")] = None,
    no_reported: Annotated[bool, typer.Option("--no-reported", help="Leave out the papers' published "
                                              "numbers.")] = False,
    title: Annotated[str, typer.Option("--title", help="The site's title.")] = "instract-eval leaderboard",
    debug: Debug = False,
) -> None:
    """Build a static leaderboard site: an index with one sortable table per task group and a page per
    task with every metric, breakdowns, plots, the papers' reported numbers and each row's provenance.

    The pages are self-contained (no server, nothing fetched), so they open from file:// or any static host.
    """
    from .leaderboard import build_site

    board = build_site(sources, out, matches=_parse_matches(list(match or ())), include_reported=not no_reported,
                       title=title)
    typer.echo(f"wrote {len(board.tasks) + 1} pages for {plural(board.num_records, 'result record')}: "
               f"{out / 'index.html'}")


@app.command("train")
def train(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The model to train: instraction, actionformer, "
                                         "tridet or adatad; or package.module:RecipeClass.")],
    config: Annotated[Optional[Path], typer.Option(
        "--config", metavar="FILE", help="YAML or JSON with a 'train:' section (the loop's settings) and a 'model:' "
        "section (the model's hyperparameters); every key is checked.", dir_okay=False)] = None,
    data: Annotated[str, typer.Option(
        "--data", metavar="DIR|synth", help="The training data in the model's official layout, or 'synth': a training "
        "split of the synthetic world (seeds disjoint from every evaluation world), generated once into the cache.")
    ] = "synth",
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Directory for config.json, train.jsonl, checkpoints/, weights.pt and eval/ (default: "
        "runs/MODEL).", file_okay=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out, exactly "
                                         "where it stopped (same settings required).")] = False,
    init: Annotated[Optional[Path], typer.Option(
        "--init", metavar="FILE", help="Start from these weights (a backbone, or the model's own or official "
        "checkpoint) instead of the model's default initialisation.", dir_okay=False)] = None,
    eval_task: Annotated[Optional[list[str]], typer.Option(
        "--eval-task", metavar="TASK", help="Evaluate through the harness on this task or group every eval_every "
        "steps and at the end, records under OUT/eval/; repeatable.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimizer steps in all (train.steps).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs, when no step count is set "
                                                  "(train.epochs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Examples per step and process "
                                                      "(train.batch_size).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of every random choice (train.seed).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="DataLoader processes preparing examples "
                                                   "(train.workers).")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="fp32, or bf16/fp16 autocast "
                                                     "(train.precision; fp16 needs a GPU).")] = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cuda, cuda:N, mps or cpu (default: the best available).")] = None,
    set_values: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="SECTION.KEY=VALUE", help="Override one setting, e.g. model.use_dtw=false or "
        "train.lr=1e-4; repeatable, applied after --config.")] = None,
    cache_dir: CacheDir = None,
    debug: Debug = False,
) -> None:
    """Train a model with the shared loop: seeded, checkpointed, resumable, DDP under torchrun.

    Writes OUT/config.json (every setting), OUT/train.jsonl (losses per logged step, evaluations), OUT/checkpoints/ (model, optimizer, scheduler, RNG states) and OUT/weights.pt, which `instract-eval run --model MODEL --model-args checkpoint=OUT/weights.pt` evaluates like any baseline.
    """
    from .encoding.distributed import close_process_group
    from .paths import default_cache_dir
    from .training.config import parse_assignment
    from .training.loop import TrainRequest, train as run_training
    from .training.recipe import DataSource

    overrides = [parse_assignment(text) for text in (set_values or [])]
    for key, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size), ("seed", seed),
                       ("workers", workers), ("precision", precision)):
        if value is not None:
            overrides.append(("train", key, value))
    if eval_task:
        overrides.append(("train", "eval_tasks", list(eval_task)))
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    if data == "synth":
        source = DataSource(cache / "synth-training", synth=True)
    else:
        if not Path(data).is_dir():
            raise InputError("training data directory not found (give a directory, or 'synth')", path=data,
                             field="--data")
        source = DataSource(Path(data))
    request = TrainRequest(model=model, out=out if out is not None else Path("runs") / model, data=source,
                           config_file=config, overrides=overrides, resume=resume, init=init, device=device,
                           cache_dir=cache_dir)

    def show(entry) -> None:
        if "eval" in entry:
            for task_name, metrics in entry["eval"].items():
                values = ", ".join(f"{name} {value:.4g}" for name, value in metrics.items()
                                   if isinstance(value, (int, float)))
                typer.echo(plain(f"step {entry['step']}: {task_name}: {values}"), err=True)
            return
        losses = ", ".join(f"{name} {value:.4g}" for name, value in entry.items()
                           if name not in ("step", "epoch", "lr", "grad_norm", "seconds") and value is not None)
        typer.echo(f"step {entry['step']} (epoch {entry['epoch']}, lr {entry['lr']:.3g}): {losses}", err=True)

    try:
        report = run_training(request, on_log=show)
        if report.is_main:
            where = f" (resumed at step {report.started_at})" if report.started_at else ""
            typer.echo(f"trained {model} for {plural(report.steps, 'step')}{where}: weights {report.weights}; "
                       f"log {request.out / 'train.jsonl'}")
            typer.echo(f"evaluate it with: instract-eval run --model {report.evaluation_model} --model-args "
                       f"checkpoint={report.weights}")
    finally:
        close_process_group()


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the world into (created; an "
                                      "earlier world there is replaced, other files are refused).")],
    seed: Annotated[int, typer.Option("--seed", help="Every random choice of the world derives from it.")] = 0,
    size: Annotated[str, typer.Option("--size", help="tiny (tests, about 1 s) or default (about 6 s).")] = "default",
    debug: Debug = False,
) -> None:
    """Generate the procedural action world: real MP4s and every synth-* task in the benchmarks' formats."""
    from .synth import SIZES, generate_world

    if size not in SIZES:
        raise InputError(f"unknown size '{size}' (choose from {', '.join(SIZES)})", field="--size")
    try:
        manifest = generate_world(out, seed=seed, size=size)
    except FileExistsError as error:
        raise InputError(str(error), path=out, field="--out") from None
    counts = ", ".join(f"{name} {count}" for name, count in manifest.counts.items())
    typer.echo(f"wrote the synth world (seed {seed}, {size}) to {out} in {manifest.seconds:.1f} s: {counts}")
    typer.echo(f"register it with: instract-eval list tasks --include {Path(out) / 'tasks.yaml'}")


def _print_table(table, hint: str | None = None) -> None:
    """A rich table on standard output, at least 110 columns wide so that tables do not wrap in
    narrow or non-terminal outputs, and an optional hint line under it."""
    from rich.console import Console

    console = Console(width=max(110, Console().width))
    console.print(table)
    if hint:
        console.print(hint, highlight=False)


def _parse_thresholds(text: str | None) -> list[float] | None:
    if text is None:
        return None
    values = []
    for part in text.split(","):
        try:
            values.append(float(part))
        except ValueError:
            raise InputError(f"'{part.strip()}' is not a number", field="--thresholds") from None
    return values


def _emit(result: dict, output: Path | None) -> None:
    """Print the JSON result, or write it atomically: a failed run never leaves a partial file."""
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    directory = output.parent if str(output.parent) else Path(".")
    if not directory.exists():
        raise InputError(f"directory {directory} does not exist", field="--output")
    write_atomic(output, text)  # a file where the directory should be: one line with its errno


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning bad input into one line and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, prog_name="instract-eval")
    except (InputError, ValueError) as exc:
        if "--debug" in argv:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {plain(message)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
