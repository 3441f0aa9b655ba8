"""Training InstrAction: train-mode randomness as the release draws it, gradients where the policy says,
and a short run of the shared loop on the synthetic training split, loadable for evaluation."""

from __future__ import annotations

import json

import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.instraction.network import _drop_path
from instract_eval.synth.training import ensure_instract_training
from instract_eval.training.loop import TrainRequest, train
from instract_eval.training.recipe import DataSource, get_recipe

from .test_model import batch
from .tiny import TINY

torch.set_num_threads(2)


def test_drop_path_draws_once_per_sequence_position_for_the_whole_batch():
    torch.manual_seed(0)
    out = _drop_path(torch.ones(2000, 3, 4), 0.5)          # sequence-first [L, N, D]
    per_position = out.reshape(2000, -1)
    assert set(per_position.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(per_position.min(1).values, per_position.max(1).values)   # one draw shared by N and D
    assert 0.4 < (per_position[:, 0] > 0).float().mean().item() < 0.6


def test_train_mode_is_stochastic_eval_mode_is_not_and_gradients_follow_the_policy():
    recipe = get_recipe("instraction")
    torch.manual_seed(0)
    net = recipe.build(TINY)
    data = batch()
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(data)["total"], net(data)["total"])
    net.train()
    first = net(data)
    first["total"].backward()     # before the next forward: each forward clamps the temperature in place
    with torch.no_grad():
        assert not torch.equal(first["total"], net(data)["total"])     # drop path and temporal dropout
    trained = {group.name for group in recipe.parameter_groups(net, TINY)}
    for name, parameter in net.named_parameters():
        if name in trained:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None and not parameter.requires_grad, name


def test_a_short_run_of_the_loop_on_the_synthetic_split(tmp_path):
    split = ensure_instract_training(tmp_path / "split", seed=0, size="tiny")
    config = tmp_path / "config.yaml"
    config.write_text(
        "train: {steps: 2, batch_size: 4, warmup_steps: 1, checkpoint_every: 2, log_every: 1}\n"
        "model: {vision_width: 64, vision_layers: 3, vision_heads: 2, patch_size: 8, image_size: 32, embed_dim: 32,\n"
        "        text_width: 64, text_layers: 2, text_heads: 2, perceiver_heads: 2, perceiver_dim_head: 16,\n"
        "        decoder_heads: 2, decoder_dim_head: 16, num_frames: 8}\n")
    report = train(TrainRequest(model="instraction", out=tmp_path / "out", data=DataSource(root=split.root),
                                config_file=config))
    lines = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert lines[0]["lr"] == 0.0                          # the release's warmup: step 0 runs at lr 0
    assert set(lines[1]) >= {"total", "vtc", "hn", "dtw", "dtw_align", "dtw_order", "mam"}
    model = create_model("instraction", checkpoint=str(report.weights))
    assert model.frame_spec().num_frames == 8 and model.frame_spec().size == 32
    clips = torch.randn(2, 8, 3, 32, 32)
    assert model.encode_video(clips).shape == (2, 32) and model.encode_video_tokens(clips).shape == (2, 8, 32)
