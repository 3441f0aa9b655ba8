"""Multiple-choice tasks of the synthetic world end to end: registry -> files -> decoding -> metrics."""

from __future__ import annotations

import json

import pytest
import torch

from instract_eval.encoding import Encoder
from instract_eval.media import FrameSpec
from instract_eval.tasks import load_registry, require_data
from instract_eval.tasks.build import mcq_items
from instract_eval.tasks.mcq import evaluate_mcq


class ConstantModel:
    """A collapsed model: every clip and every text gets the same embedding."""

    name = "constant"

    def frame_spec(self):
        return FrameSpec(num_frames=8, size=32, crop=32)

    def encode_video(self, clips):
        assert clips.shape[1:] == (8, 3, 32, 32)
        return torch.ones(clips.shape[0], 4)

    def encode_text(self, texts):
        return torch.ones(len(texts), 4)


@pytest.mark.parametrize(
    "task, chance",
    [("synth-semantic", 1 / 10), ("synth-logic", None), ("synth-aa", 1 / 2), ("synth-vr", 1 / 2),
     ("synth-or", 1 / 2)],
)
def test_a_collapsed_model_scores_exactly_chance(world, task, chance):
    spec = load_registry([world / "tasks.yaml"]).tasks[task]
    items = mcq_items(spec, require_data(spec, environ={}))
    counts = json.loads((world / "manifest.json").read_text())["counts"]
    assert len(items) == counts[task]
    result = evaluate_mcq(Encoder(ConstantModel()), items, task=task, protocol=spec.protocol, ties=spec.ties)
    metrics = result["metrics"]
    expected = chance if chance is not None else sum(1 / len(i.candidates) for i in items) / len(items)
    assert metrics["accuracy"] == pytest.approx(expected)
    assert result["chance"] == pytest.approx(expected)  # the line the leaderboard draws
    assert metrics["num_tied"] == len(items)
    assert result["coverage"]["fraction"] == 1.0


def test_vr_items_pair_each_clip_with_its_reversal(world):
    spec = load_registry([world / "tasks.yaml"]).tasks["synth-vr"]
    for item in mcq_items(spec, require_data(spec, environ={})):
        original, reversed_clip = item.candidates
        assert isinstance(item.query, str)
        assert (original.reverse, reversed_clip.reverse) == (False, True)
        assert (original.path, original.start, original.end) == (reversed_clip.path, reversed_clip.start,
                                                                  reversed_clip.end)


def test_dynamics_pools_with_a_collapsed_model_score_one_over_pool_size(world):
    from instract_eval.tasks.build import retrieval_items
    from instract_eval.tasks.retrieval import evaluate_retrieval

    spec = load_registry([world / "tasks.yaml"]).tasks["synth-dynamics"]
    items = retrieval_items(spec, require_data(spec, environ={}))
    pools = {item.pool for item in items}
    assert len(pools) == json.loads((world / "manifest.json").read_text())["counts"]["synth-dynamics-pools"]
    result = evaluate_retrieval(Encoder(ConstantModel()), items, task=spec.name, protocol=spec.protocol, ties=spec.ties)
    # Every query ties with its whole pool: P(rank 1) = 1/|pool|; summed over a pool that is 1.
    assert result["metrics"]["t2v"]["R@1"] == pytest.approx(len(pools) / len(items))
    assert result["metrics"]["mean"]["R@1"] == pytest.approx(len(pools) / len(items))
    assert set(result["per_pool"]) == pools
    assert sum(entry["num_items"] for entry in result["by_pool_size"].values()) == len(items)
    categories = result["per_category"]
    assert sum(entry["num_items"] for entry in categories.values()) == len(items)
    for category, entry in categories.items():
        members = [item for item in items if item.category == category]
        assert entry["t2v"]["R@1"] == pytest.approx(len({item.pool for item in members}) / len(members))


def test_dynamics_categories_name_each_pool_once(world, tmp_path):
    import shutil

    import yaml

    from instract_eval.errors import InputError
    from instract_eval.tasks.build import retrieval_items

    spec = load_registry([world / "tasks.yaml"]).tasks["synth-dynamics"]
    items = retrieval_items(spec, require_data(spec, environ={}))
    for item in items:  # the synthetic world files each pool under the shape of its object
        assert item.pool.endswith("_" + item.category)
    copy = tmp_path / "world"
    shutil.copytree(world / "instract", copy / "instract")
    (copy / "videos").mkdir()
    shutil.copy(world / "tasks.yaml", copy / "tasks.yaml")
    categories = yaml.safe_load((world / "instract/dynamics_categories.yaml").read_text())
    dropped = sorted(categories)[0]
    del categories[dropped]
    (copy / "instract/dynamics_categories.yaml").write_text(yaml.safe_dump(categories))
    spec = load_registry([copy / "tasks.yaml"]).tasks["synth-dynamics"]
    with pytest.raises(InputError, match=f"dynamics_categories.yaml: gives no category for the pool.*{dropped}"):
        retrieval_items(spec, require_data(spec, environ={}))


def test_actionbench_clips_take_the_protocols_context_and_minimum_length(world, tmp_path):
    """The typed protocol accepts context_s/min_clip_s for every mcq format, so ActionBench reads them too."""
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text((world / "tasks.yaml").read_text().replace("context_s: 0.0, min_clip_s: 0.0",
                                                                "context_s: 1.5, min_clip_s: 2.0"))
    for name in ("synth-aa", "synth-vr"):
        spec = load_registry([tasks]).tasks[name]
        items = mcq_items(spec, require_data(spec, environ={f"INSTRACT_EVAL_DATA_{name.upper().replace('-', '_')}":
                                                            str(world)}))
        requests = [r for item in items for r in (item.query, *item.candidates) if not isinstance(r, str)]
        assert requests and {(r.context_s, r.min_clip_s) for r in requests} == {(1.5, 2.0)}
