"""`instract-eval features`: feature files equal to the model run on each window by hand, the time
mapping, short videos, a changed model refused, cache and directory reuse, the task copy, ranks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from instract_eval.adapters.baselines import RandomModel
from instract_eval.cli import main
from instract_eval.errors import InputError
from instract_eval.media import FrameSpec, apply_frame_spec, feature_times, read_features
from instract_eval.runner.features import FORMAT, FeatureOptions, extract_features, features_for
from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.tasks import load_registry

REPO = Path(__file__).resolve().parents[2]
VIDEO = "tal_0000"  # tiny world: 101 frames at 8 fps (12.625 s)


class ToyExtractor:
    """A feature extractor only (no text side): per frame the channel means, then their time-weighted
    mean and plain mean, so a feature depends on which frames it saw and in which order."""

    name = "toy-extractor"

    def frame_spec(self) -> FrameSpec:
        return FrameSpec(num_frames=4, sampling="uniform", size=16, crop=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def extract_features(self, clips: torch.Tensor) -> torch.Tensor:
        per_frame = clips.double().mean(dim=(3, 4))  # [B, T, 3]
        weights = torch.arange(1, clips.shape[1] + 1, dtype=torch.float64)[None, :, None]
        return torch.cat([per_frame.mean(dim=1), (per_frame * weights).mean(dim=1)], dim=1).float()


def toy_extractor() -> ToyExtractor:
    return ToyExtractor()


def all_frames(path: Path) -> np.ndarray:
    """Every frame of the file in decoding order, uint8 [N, H, W, 3]: straight from PyAV."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def by_hand(model, frames: np.ndarray, indices: list[int], spec: FrameSpec, method: str = "encode_video") -> np.ndarray:
    clip = apply_frame_spec(torch.from_numpy(frames[indices])[None], spec)
    with torch.inference_mode():
        return getattr(model, method)(clip).numpy()[0]


def options(out: Path, **changes) -> FeatureOptions:
    """CPU, and 8 fps (the tiny world's rate) unless a test says otherwise: neither the random model
    nor the toy extractor names a rate, and the default would be THUMOS14's 30 fps."""
    return FeatureOptions(out=out, device="cpu", **{"fps": 8.0, **changes})


@pytest.fixture(scope="module")
def tal_videos(world, tmp_path_factory):
    """The tiny world's three untrimmed videos alone in a directory."""
    directory = tmp_path_factory.mktemp("tal") / "videos"
    directory.mkdir()
    for path in sorted((world / "videos").glob("tal_*.mp4")):
        shutil.copy2(path, directory / path.name)
    return directory


def one_video(tal_videos: Path) -> list[tuple[str, Path]]:
    return [(VIDEO, tal_videos / f"{VIDEO}.mp4")]


def test_each_feature_is_the_model_on_its_window_of_frames_at_the_source_rate(tal_videos, tmp_path):
    report = extract_features(ModelRequest("random", {"seed": 5}), one_video(tal_videos),
                              options(tmp_path / "f", window=8, stride=3, fps=8.0))
    frames = all_frames(tal_videos / f"{VIDEO}.mp4")
    assert len(frames) == 101
    features = read_features(tmp_path / "f" / f"{VIDEO}.npy")
    assert features.shape == ((101 - 8) // 3 + 1, 64) == (32, 64)  # windows [3i, 3i + 8) inside 101 frames
    model = RandomModel(seed=5)
    spec = FrameSpec(num_frames=8, sampling="fps", fps=8.0, size=32, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    for i in range(len(features)):
        np.testing.assert_allclose(features[i], by_hand(model, frames, list(range(3 * i, 3 * i + 8)), spec),
                                   rtol=0, atol=1e-6)
    assert report.num_features == 32 and report.extracted == [VIDEO] and not report.short


def test_at_half_the_source_rate_frame_k_is_the_source_frame_shown_at_k_plus_half_over_fps(tal_videos, tmp_path):
    extract_features(ModelRequest("random"), one_video(tal_videos), options(tmp_path / "f", window=8, stride=4,
                                                                              fps=4.0))
    frames = all_frames(tal_videos / f"{VIDEO}.mp4")
    features = read_features(tmp_path / "f" / f"{VIDEO}.npy")
    # 12.625 s at 4 fps: 50 whole frames; frame k is shown at (k + 1/2) / 4 s = source frame 2k + 1
    assert len(features) == (50 - 8) // 4 + 1
    spec = FrameSpec(num_frames=8, sampling="fps", fps=4.0, size=32, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    for i in (0, 1, len(features) - 1):
        indices = [2 * (4 * i + j) + 1 for j in range(8)]
        np.testing.assert_allclose(features[i], by_hand(RandomModel(), frames, indices, spec), rtol=0, atol=1e-6)


def test_metadata_maps_each_feature_to_the_centre_of_its_frames(tal_videos, tmp_path):
    extract_features(ModelRequest("random"), one_video(tal_videos), options(tmp_path / "f", window=8, stride=2))
    document = json.loads((tmp_path / "f" / "features.json").read_text())
    assert document["format"] == FORMAT
    assert (document["fps"], document["window"], document["stride"], document["offset"]) == (8.0, 8, 2, 0)
    assert document["model"] == "random" and document["output"] == "encode_video" and document["feature_dim"] == 64
    entry = document["videos"][VIDEO]
    assert entry == {"num_features": 47, "duration": 12.625, "fps": 8.0, "source_fps": 8.0, "frames": 101,
                     "file": f"{VIDEO}.npy"}
    times = feature_times(entry["num_features"], fps=document["fps"], stride_frames=document["stride"],
                          window_frames=document["window"], offset_frames=document["offset"])
    # feature i saw frames 2i .. 2i + 7, each shown during [k/8, (k+1)/8): their centres average to (2i + 4) / 8
    for i in (0, 10, 46):
        centres = [(k + 0.5) / 8 for k in range(2 * i, 2 * i + 8)]
        assert times[i] == pytest.approx(np.mean(centres), abs=1e-12) == pytest.approx((2 * i + 4) / 8)
    assert times[-1] + 4 / 8 <= entry["duration"]  # the last window ends inside the video
    assert document["frame_spec"]["sampling"] == "fps" and document["frame_spec"]["num_frames"] == 8


def test_a_video_shorter_than_one_window_gets_one_flagged_feature_from_the_whole_video(tal_videos, tmp_path):
    report = extract_features(ModelRequest("random"), one_video(tal_videos), options(tmp_path / "f", window=120))
    document = json.loads((tmp_path / "f" / "features.json").read_text())
    entry = document["videos"][VIDEO]
    assert entry["num_features"] == 1 and entry["short"]["frames"] == 101
    assert entry["short"]["covers_s"] == [0.0, 12.625] and "repeat" in entry["short"]["why"]
    assert report.short == [VIDEO]
    features = read_features(tmp_path / "f" / f"{VIDEO}.npy")
    assert features.shape == (1, 64)
    # 120 frames at the midpoints of 120 equal parts of [0, 12.625]: source frame floor(t * 8)
    indices = [int(np.floor((j + 0.5) * 12.625 / 120 * 8)) for j in range(120)]
    assert len(set(indices)) == 101  # every frame seen, some twice: stated, not padded with black
    spec = FrameSpec(num_frames=120, sampling="uniform", size=32, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    np.testing.assert_allclose(features[0], by_hand(RandomModel(), all_frames(tal_videos / f"{VIDEO}.mp4"), indices,
                                                    spec), rtol=0, atol=1e-6)


def test_a_feature_extractor_is_asked_for_extract_features(tal_videos, tmp_path):
    extract_features(ModelRequest("tests.runner.test_features:toy_extractor"), one_video(tal_videos),
                     options(tmp_path / "f", window=4, stride=4, fps=None))
    document = json.loads((tmp_path / "f" / "features.json").read_text())
    assert document["output"] == "extract_features" and document["feature_dim"] == 6
    # the video's fps is the feature grid's (what a head multiplies by), its file's own rate is kept apart
    assert document["videos"][VIDEO]["fps"] == 30.0 and document["videos"][VIDEO]["source_fps"] == 8.0
    features = read_features(tmp_path / "f" / f"{VIDEO}.npy")
    assert features.shape == ((378 - 4) // 4 + 1, 6)  # 12.625 s at 30 fps: 378 whole frames
    spec = FrameSpec(num_frames=4, sampling="fps", fps=30.0, size=16, crop=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    # no fps from the model or a task: the THUMOS14 convention, 30 fps; frame k shown at (k + 1/2) / 30 s
    assert document["fps"] == 30.0
    frames = all_frames(tal_videos / f"{VIDEO}.mp4")
    indices = [int(np.floor((4 * 3 + j + 0.5) / 30 * 8)) for j in range(4)]
    np.testing.assert_allclose(features[3], by_hand(ToyExtractor(), frames, indices, spec, "extract_features"),
                               rtol=0, atol=1e-6)


def test_a_changed_model_or_setting_is_refused_unless_overwrite(tal_videos, tmp_path):
    out = tmp_path / "f"
    extract_features(ModelRequest("random", {"seed": 0}), one_video(tal_videos), options(out))
    first = read_features(out / f"{VIDEO}.npy")
    with pytest.raises(InputError, match="another model.*--overwrite") as caught:
        extract_features(ModelRequest("random", {"seed": 1}), one_video(tal_videos), options(out))
    assert caught.value.path == str(out / "features.json") and "\n" not in str(caught.value)
    with pytest.raises(InputError, match="stride 2; this run's is 3"):
        extract_features(ModelRequest("random", {"seed": 0}), one_video(tal_videos), options(out, stride=3))
    assert np.array_equal(read_features(out / f"{VIDEO}.npy"), first)  # nothing was touched
    report = extract_features(ModelRequest("random", {"seed": 1}), one_video(tal_videos), options(out, overwrite=True))
    assert report.extracted == [VIDEO]
    assert not np.array_equal(read_features(out / f"{VIDEO}.npy"), first)
    assert json.loads((out / "features.json").read_text())["model_args"] == {"seed": 1}


def test_overwrite_removes_the_listed_files_of_videos_no_longer_extracted(tal_videos, tmp_path):
    out = tmp_path / "f"
    videos = sorted((v.stem, v) for v in tal_videos.glob("*.mp4"))
    extract_features(ModelRequest("random"), videos, options(out))
    (out / "notes.txt").write_text("mine")
    extract_features(ModelRequest("random", {"seed": 2}), videos[:1], options(out, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["features.json", "notes.txt", f"{VIDEO}.npy"]


def test_a_second_run_encodes_nothing_from_the_cache_or_from_the_directory(tal_videos, tmp_path):
    videos = sorted((v.stem, v) for v in tal_videos.glob("*.mp4"))
    cache = tmp_path / "cache"
    first = extract_features(ModelRequest("tests.runner.test_features:toy_extractor"), videos,
                             options(tmp_path / "a", cache_dir=cache, stride=2))
    assert first.work["videos_encoded"] == first.num_features > 0
    again = extract_features(ModelRequest("tests.runner.test_features:toy_extractor"), videos,
                             options(tmp_path / "b", cache_dir=cache, stride=2))
    assert again.work.get("videos_encoded", 0) == 0 and again.work["videos_reused"] == first.num_features
    for video, _ in videos:
        assert np.array_equal(read_features(tmp_path / "a" / f"{video}.npy"),
                              read_features(tmp_path / "b" / f"{video}.npy"))
    # the same directory without a cache: the files there are kept, a removed one is made again
    (tmp_path / "b" / f"{VIDEO}.npy").unlink()
    resumed = extract_features(ModelRequest("tests.runner.test_features:toy_extractor"), videos,
                               options(tmp_path / "b", stride=2))
    assert resumed.extracted == [VIDEO] and sorted(resumed.kept) == [v for v, _ in videos if v != VIDEO]
    assert resumed.work["videos_encoded"] == json.loads((tmp_path / "b" / "features.json").read_text()
                                                        )["videos"][VIDEO]["num_features"]
    assert np.array_equal(read_features(tmp_path / "a" / f"{VIDEO}.npy"),
                          read_features(tmp_path / "b" / f"{VIDEO}.npy"))


def test_the_task_copy_registers_the_feature_files_as_the_task_videos(world, tmp_path):
    out = tmp_path / "f"
    report = features_for(ModelRequest("random"), options(out, fps=None), task="synth-tal",
                          include=[world / "tasks.yaml"], use_cache=False)
    assert report.task_name == "synth-tal-features" and report.tasks_file == out / "tasks.yaml"
    registry = load_registry([out / "tasks.yaml"])
    spec = registry.tasks["synth-tal-features"]
    original = load_registry([world / "tasks.yaml"]).tasks["synth-tal"]
    assert spec.kind == "localization" and spec.metrics == original.metrics and spec.seed == original.seed
    assert spec.data["videos"] == str(out.resolve())
    assert spec.data["ground_truth"] == str((world / "tal" / "ground_truth.json").resolve())
    assert dict(spec.protocol) == {"tiou_thresholds": "thumos14", "subset": "test"}
    assert report.fps == 8.0  # the random model gives no rate: the task's protocol does
    # a second task on the same videos joins the file and reuses every feature
    again = features_for(ModelRequest("random"), options(out, fps=None), task="synth-lap",
                         include=[world / "tasks.yaml"], use_cache=False)
    assert again.extracted == [] and len(again.kept) == 3
    assert set(load_registry([out / "tasks.yaml"]).tasks) >= {"synth-tal-features", "synth-lap-features"}
    # and `run` evaluates a feature-reading localizer on it (the random one places segments by feature rows)
    report = run_evaluation([ModelRequest("random", {"feature_fps": 4.0})], ["synth-tal-features"], registry,
                            RunOptions(output=None, device="cpu"))
    assert report.records[0]["dataset"]["coverage"]["evaluated"] == 3


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case, expected", [
    ("missing", "the video directory does not exist"),
    ("empty", "no video files"),
    ("window", "--window: must be a positive whole number of frames, got 0"),
    ("stride", "--stride: must be a positive whole number of frames, got -1"),
    ("both", "give either --videos DIR or --task TASK"),
    ("kind", "task synth-semantic is a mcq task; features are extracted for localization tasks"),
    ("capability", "features needs a feature extractor or dual encoder model"),
])
def test_bad_input_is_one_line_and_exit_code_2(case, expected, world, tal_videos, tmp_path, capsys):
    out = str(tmp_path / "out")
    (tmp_path / "empty").mkdir()
    args = {
        "missing": ["--videos", str(tmp_path / "nowhere")],
        "empty": ["--videos", str(tmp_path / "empty")],
        "window": ["--videos", str(tal_videos), "--window", "0"],
        "stride": ["--videos", str(tal_videos), "--stride", "-1"],
        "both": ["--videos", str(tal_videos), "--task", "synth-tal"],
        "kind": ["--task", "synth-semantic", "--include", str(world / "tasks.yaml")],
        "capability": ["--videos", str(tal_videos), "--model", "tests.runner.test_features:not_a_video_model"],
    }[case]
    model = [] if "--model" in args else ["--model", "random"]
    code, err = run_cli(["features", *model, "--out", out, "--device", "cpu", *args], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not Path(out).exists()


class TextOnly:
    name = "text-only"

    def encode_text(self, texts):
        return torch.zeros(len(texts), 2)


def not_a_video_model() -> TextOnly:
    return TextOnly()


def test_a_fixed_frame_model_needs_its_own_window(tal_videos, tmp_path):
    from instract_eval.runner.features import window_spec

    fixed = FrameSpec(num_frames=16, fixed_frames=True)
    assert window_spec(fixed, window=16, fps=30.0).num_frames == 16
    with pytest.raises(InputError, match="takes exactly 16 frames.*--window 16"):
        window_spec(fixed, window=8, fps=30.0, model="videomae")


def test_the_cli_writes_and_says_where(tal_videos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["features", "--model", "random", "--videos", str(tal_videos), "--out", str(tmp_path / "f"),
              "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--window", "102", "--fps", "8"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "wrote features of 3 videos (3 features, 64-d)" in printed and "window 102, stride 25 at 8 fps" in printed
    assert "2 videos shorter than one window" in printed  # tal_0000 and tal_0002 have 101 frames, tal_0001 102
    document = json.loads((tmp_path / "f" / "features.json").read_text())
    assert {v: e["num_features"] for v, e in document["videos"].items()} == {"tal_0000": 1, "tal_0001": 1,
                                                                              "tal_0002": 1}


@pytest.mark.slow
def test_two_gloo_ranks_write_the_files_one_process_writes(world, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    common = ["features", "--model", "random", "--model-args", "seed=4", "--videos", str(world / "videos"),
              "--device", "cpu", "--batch-size", "4", "--stride", "3", "--fps", "8"]
    ranks = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             "-m", "instract_eval", *common, "--out", str(tmp_path / "ranks"), "--cache-dir", str(tmp_path / "c2")]
    done = subprocess.run(ranks, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single = [sys.executable, "-m", "instract_eval", *common, "--out", str(tmp_path / "one"),
              "--cache-dir", str(tmp_path / "c1")]
    done = subprocess.run(single, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ranks").iterdir()) and len(names) > 40
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "ranks" / name).read_bytes(), name
