"""`run_evaluation` on the tiny synthetic world: invariance, reuse, provenance and the failure modes."""

from __future__ import annotations

import json
import os

import pytest
import torch

from instract_eval.errors import InputError
from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.tasks import load_registry

RANDOM = ModelRequest("random", {"seed": 3})


def metrics_of(report) -> dict:
    """task -> metric name -> value, for comparing runs."""
    return {record["task"]["name"]: {name: m["value"] for name, m in record["metrics"].items()}
            for record in report.records}


def run(world, tmp_path, models=(RANDOM,), tasks=("synth",), **options):
    options.setdefault("output", tmp_path / "results")
    return run_evaluation(list(models), list(tasks), load_registry([world / "tasks.yaml"]), RunOptions(**options))


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """The random model on the whole synth group, batch size 8, no cache."""
    return run(world, tmp_path_factory.mktemp("reference"))


def test_the_synth_group_runs_every_task_and_writes_one_record_each(reference, world):
    tasks = load_registry([world / "tasks.yaml"]).groups["synth"]
    assert [record["task"]["name"] for record in reference.records] == list(tasks)
    assert len(reference.written) == len(tasks) and all(path.is_file() for path in reference.written)


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_metrics_do_not_depend_on_the_batch_size(reference, world, tmp_path, batch_size):
    assert metrics_of(run(world, tmp_path, batch_size=batch_size)) == metrics_of(reference)


def test_decoding_workers_do_not_change_the_metrics(reference, world, tmp_path):
    report = run(world, tmp_path, tasks=["synth-aa", "synth-srt"], workers=2)
    expected = metrics_of(reference)
    assert metrics_of(report) == {task: expected[task] for task in ("synth-aa", "synth-srt")}


def test_each_unique_clip_and_text_is_encoded_once_across_tasks(world, tmp_path):
    """AA, VR and OR share the clips; VR adds their reversals; OR's captions are AA's."""
    report = run(world, tmp_path, tasks=["synth-aa", "synth-vr", "synth-or"])
    work = {record["task"]["name"]: record["run"]["work"] for record in report.records}
    lines = (world / "actionbench" / "ego4d_test.jsonl").read_text().splitlines()
    assert work["synth-aa"]["videos_encoded"] == len(lines)
    assert work["synth-vr"].get("videos_reused") == len(lines)      # the forward clips, from AA
    assert work["synth-vr"]["videos_encoded"] == len(lines)         # the reversed clips are new
    assert work["synth-or"].get("videos_encoded", 0) == 0 and work["synth-or"]["videos_reused"] == len(lines)
    total = sum(w.get("videos_encoded", 0) for w in work.values())
    assert total == 2 * len(lines)


def test_a_second_run_reads_the_cache_and_gets_the_same_numbers(reference, world, tmp_path):
    first = run(world, tmp_path / "a", cache_dir=tmp_path / "cache")
    second = run(world, tmp_path / "b", cache_dir=tmp_path / "cache")
    assert metrics_of(first) == metrics_of(second) == metrics_of(reference)
    for record in second.records:
        work = record["run"]["work"]
        assert work.get("videos_encoded", 0) == work.get("texts_encoded", 0) == work.get("localized", 0) == 0, work


def test_a_changed_model_or_frame_spec_never_reads_another_ones_cache(world, tmp_path):
    cache = tmp_path / "cache"
    run(world, tmp_path / "a", tasks=["synth-aa"], cache_dir=cache)
    other_seed = run(world, tmp_path / "b", models=[ModelRequest("random", {"seed": 4})], tasks=["synth-aa"],
                     cache_dir=cache)
    assert other_seed.records[0]["run"]["work"].get("videos_reused", 0) == 0
    other_frames = run(world, tmp_path / "c", models=[ModelRequest("random", {"seed": 3, "frames": 4})],
                       tasks=["synth-aa"], cache_dir=cache)
    assert other_frames.records[0]["run"]["work"].get("videos_reused", 0) == 0
    assert other_seed.records[0]["model"]["fingerprint"] != other_frames.records[0]["model"]["fingerprint"]


def test_an_edited_video_is_encoded_again(world, tmp_path):
    import shutil

    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    cache = tmp_path / "cache"
    run(copy, tmp_path / "a", tasks=["synth-aa"], cache_dir=cache)
    video = sorted((copy / "videos").iterdir())[0]
    stat = video.stat()
    import os

    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = run(copy, tmp_path / "b", tasks=["synth-aa"], cache_dir=cache)
    work = again.records[0]["run"]["work"]
    assert work["videos_encoded"] >= 1 and work["videos_reused"] >= 1


def test_the_record_carries_provenance_and_the_log_one_line_per_sample(world, tmp_path):
    report = run(world, tmp_path, tasks=["synth-aa"], log_samples=True)
    path = report.written[0]
    assert path == tmp_path / "results" / "random" / "synth-aa.json"
    record = json.loads(path.read_text())
    assert record == json.loads(json.dumps(report.records[0]))
    assert record["schema"] == "instract-eval/result/1"
    assert record["task"]["groups"] == ["synth"] and record["task"]["kind"] == "mcq"
    assert record["task"]["hash"] == load_registry([world / "tasks.yaml"]).tasks["synth-aa"].spec_hash()
    assert len(record["model"]["fingerprint"]) == 64 and record["model"]["args"] == {"seed": 3}
    assert record["metrics"]["accuracy"]["direction"] == "higher" and record["metrics"]["accuracy"]["headline"]
    assert record["metrics"]["num_tied"]["unit"] == "count"
    assert record["ties"]["policy"] == "expected" and "num_tied" in record["ties"]["num_tied"]
    assert record["frame_spec"]["num_frames"] == 8 and record["frame_spec"]["size"] == 32
    items = len((world / "actionbench" / "ego4d_test.jsonl").read_text().splitlines())
    assert record["dataset"]["coverage"]["evaluated"] == items and len(record["dataset"]["sha256"]) == 64
    assert record["versions"]["torch"] == torch.__version__
    assert record["run"]["device"] == "cpu" and record["run"]["precision"] == "fp32"
    assert record["run"]["wall_time_s"] >= 0
    cores = len(os.sched_getaffinity(0))  # the test runs in one process: it gets every core it may use
    assert record["run"]["decoding"]["workers"] == 0 and record["run"]["decoding"]["decoder_threads"] == cores
    assert record["run"]["decoding"]["thread_type"] == ("frame+slice" if cores > 1 else "single")
    samples = [json.loads(line) for line in path.with_name("synth-aa.samples.jsonl").read_text().splitlines()]
    assert len(samples) == items and {"task", "model", "id", "scores", "answer"} <= set(samples[0])
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_the_dataset_fingerprint_changes_with_an_annotation(world, tmp_path):
    import shutil

    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    before = run(copy, tmp_path / "a", tasks=["synth-aa"]).records[0]["dataset"]["sha256"]
    annotations = copy / "actionbench" / "ego4d_test.jsonl"
    annotations.write_text(annotations.read_text() + "\n")
    after = run(copy, tmp_path / "b", tasks=["synth-aa"]).records[0]["dataset"]["sha256"]
    assert before != after


def test_limit_evaluates_the_first_items_and_says_so(world, tmp_path):
    report = run(world, tmp_path, tasks=["synth-aa", "synth-tal"], limit=2)
    aa, tal = report.records
    assert aa["dataset"]["coverage"]["evaluated"] == 2 and aa["run"]["limit"] == 2
    assert tal["dataset"]["coverage"]["evaluated"] == 2


def test_nan_outputs_are_an_error_naming_the_items(world, tmp_path):
    with pytest.raises(InputError, match=r"NaN or inf video embeddings for 1 item\(s\), e\.g\. ab_\d+@"):
        run(world, tmp_path, models=[ModelRequest("tests.runner.adapters:nan_videos")], tasks=["synth-aa"])
    assert not (tmp_path / "results").exists()


def test_a_missing_capability_fails_before_anything_is_decoded(world, tmp_path, monkeypatch):
    import instract_eval.encoding.encoder as encoder

    def no_decoding(*args, **kwargs):
        raise AssertionError("a clip was decoded")

    monkeypatch.setattr(encoder, "clip_loader", no_decoding)
    models = [RANDOM, ModelRequest("tests.runner.adapters:localizer_only")]
    # The first model could run synth-aa, but nothing runs until every pair has been checked.
    with pytest.raises(InputError, match="task synth-aa needs a dual encoder or pair scorer model; "
                                         ".* provides: localizer"):
        run(world, tmp_path, models=models, tasks=["synth-tal", "synth-aa"])  # named on its own: an error


def test_group_members_a_model_cannot_serve_are_skipped_with_the_reason(world, tmp_path):
    report = run(world, tmp_path, models=[ModelRequest("tests.runner.adapters:localizer_only")], tasks=["synth"])
    assert [record["task"]["name"] for record in report.records] == ["synth-tal", "synth-lap"]
    skipped = {task: why for _, task, why in report.skipped}
    assert set(skipped) == {"synth-semantic", "synth-logic", "synth-dynamics", "synth-aa", "synth-vr", "synth-or",
                            "synth-srt"}
    assert skipped["synth-aa"].startswith("needs a dual encoder")


def test_out_of_memory_halves_the_batch_and_keeps_the_numbers(reference, world, tmp_path):
    report = run(world, tmp_path, models=[ModelRequest("tests.runner.adapters:out_of_memory_above",
                                                       {"max_batch": 2, "seed": 3})], tasks=["synth-aa", "synth-srt"],
                 batch_size=8)
    expected = metrics_of(reference)
    assert metrics_of(report) == {task: expected[task] for task in ("synth-aa", "synth-srt")}
    work = report.records[0]["run"]["work"]
    assert work["oom_retries"] == 2  # 8 -> 4 -> 2, then 2 for the rest of the run
    assert report.records[1]["run"]["work"].get("oom_retries", 0) == 0


def test_out_of_memory_at_batch_size_one_is_a_clear_error(world, tmp_path):
    with pytest.raises(InputError, match="out of memory on a single input"):
        run(world, tmp_path, models=[ModelRequest("tests.runner.adapters:out_of_memory_above", {"max_batch": 0})],
            tasks=["synth-aa"])


def test_fp16_on_the_cpu_and_an_absent_gpu_are_refused(world, tmp_path):
    with pytest.raises(InputError, match="fp16 autocast needs a GPU"):
        run(world, tmp_path, tasks=["synth-aa"], device="cpu", precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            run(world, tmp_path, tasks=["synth-aa"], device="cuda")


def test_bf16_autocast_runs_on_the_cpu_and_is_cached_apart_from_fp32(world, tmp_path):
    model, cache = [ModelRequest("synth-temporal")], tmp_path / "cache"
    fp32 = run(world, tmp_path / "a", models=model, tasks=["synth-aa"], device="cpu", cache_dir=cache).records[0]
    bf16 = run(world, tmp_path / "b", models=model, tasks=["synth-aa"], device="cpu", precision="bf16",
               cache_dir=cache).records[0]
    assert bf16["run"]["precision"] == "bf16" and bf16["run"]["work"].get("videos_reused", 0) == 0
    assert abs(bf16["metrics"]["accuracy"]["value"] - fp32["metrics"]["accuracy"]["value"]) <= 1 / 3


def test_one_model_with_two_argument_sets_gets_two_labels_and_two_files(world, tmp_path):
    report = run(world, tmp_path, models=[ModelRequest("random", {"seed": 1}), ModelRequest("random", {"seed": 2})],
                 tasks=["synth-aa"])
    labels = [record["model"]["label"] for record in report.records]
    assert labels[0] != labels[1] and all(label.startswith("random@") for label in labels)
    assert len(set(report.written)) == 2 and all(path.is_file() for path in report.written)


def test_retrieval_tie_counts_reach_the_record(world, tmp_path):
    record = run(world, tmp_path, models=[ModelRequest("null")], tasks=["synth-dynamics"]).records[0]
    assert record["ties"]["num_tied"]["t2v.num_tied"] > 0 and "v2t.num_tied" in record["ties"]["num_tied"]


def test_an_output_path_under_a_file_fails_before_any_work(world, tmp_path, monkeypatch):
    import instract_eval.encoding.encoder as encoder

    monkeypatch.setattr(encoder, "clip_loader", lambda *a, **k: pytest.fail("a clip was decoded"))
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        run(world, tmp_path, tasks=["synth-aa"], output=tmp_path / "file" / "results")
    with pytest.raises(InputError, match="is a file"):
        run(world, tmp_path, tasks=["synth-aa"], cache_dir=tmp_path / "file")


def test_a_record_written_without_samples_removes_an_older_log(world, tmp_path):
    first = run(world, tmp_path, tasks=["synth-aa"], log_samples=True).written[0]
    log = first.with_name("synth-aa.samples.jsonl")
    assert log.is_file()
    run(world, tmp_path, tasks=["synth-aa"])
    assert first.is_file() and not log.exists()


def test_the_python_api_runs_like_the_command_line(world, tmp_path, monkeypatch):
    import instract_eval

    monkeypatch.chdir(tmp_path)
    report = instract_eval.evaluate([ModelRequest("random", {"seed": 3}), "null"], ["synth-aa"],
                                    include=[world / "tasks.yaml"], use_cache=False, output=None)
    assert [record["model"]["name"] for record in report.records] == ["random", "null"]
    assert report.records[1]["metrics"]["accuracy"]["value"] == 0.5  # zeros tie: exactly chance
    assert report.written == [] and not list(tmp_path.iterdir())


PAIR_TASKS = ["synth-semantic", "synth-logic", "synth-dynamics", "synth-aa", "synth-vr", "synth-or", "synth-srt"]


def test_a_pair_scorer_answers_mcq_retrieval_and_classification_with_the_dual_encoders_numbers(world, tmp_path):
    """It scores (clip, captions) itself; wrapping the random model's cosine, the metrics must match,
    in every engine that takes a pair scorer (retrieval within each pool, classification per group)."""
    scorer = ModelRequest("tests.runner.adapters:random_pair_scorer", {"seed": 3})
    report = run(world, tmp_path / "a", models=[scorer], tasks=["synth"], cache_dir=tmp_path / "cache")
    assert [record["task"]["name"] for record in report.records] == PAIR_TASKS
    assert {task for _, task, _ in report.skipped} == {"synth-tal", "synth-lap"}
    dual = metrics_of(run(world, tmp_path / "b", tasks=PAIR_TASKS))
    for task, values in metrics_of(report).items():
        assert values == pytest.approx(dual[task], abs=1e-9), task
    dynamics = next(record for record in report.records if record["task"]["name"] == "synth-dynamics")
    assert dynamics["details"]["scoring"]["method"] == "pair scorer" and dynamics["details"]["scoring"]["pairs"] > 0
    again = run(world, tmp_path / "c", models=[scorer], tasks=PAIR_TASKS, cache_dir=tmp_path / "cache")
    assert all(record["run"]["work"].get("videos_encoded", 0) == 0 for record in again.records)


def test_sample_logs_carry_ranks_that_reproduce_the_metrics(world, tmp_path):
    """Random scores have no ties, so R@1 is the share of samples ranked first, per pool for retrieval."""
    report = run(world, tmp_path, tasks=["synth-semantic", "synth-dynamics"], log_samples=True)
    logs = {path.name.split(".")[0]: [json.loads(line) for line in path.read_text().splitlines()]
            for path in (tmp_path / "results" / "random").glob("*.samples.jsonl")}
    semantic, dynamics = (next(r for r in report.records if r["task"]["name"] == name)
                          for name in ("synth-semantic", "synth-dynamics"))
    ranks = [sample["rank"] for sample in logs["synth-semantic"]]
    assert sum(rank == 1 for rank in ranks) / len(ranks) == pytest.approx(semantic["metrics"]["R@1"]["value"])
    assert all(sample["video"] for sample in logs["synth-semantic"])
    for pool, metrics in dynamics["details"]["per_pool"].items():
        members = [sample for sample in logs["synth-dynamics"] if sample["pool"] == pool]
        for direction in ("t2v", "v2t"):
            hits = sum(sample[f"{direction}_rank"] == 1 for sample in members) / len(members)
            assert hits == pytest.approx(metrics[direction]["R@1"]), (pool, direction)
