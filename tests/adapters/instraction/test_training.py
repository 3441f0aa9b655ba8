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


def _tiny_config(tmp_path, body: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(
        body + "model: {vision_width: 64, vision_layers: 3, vision_heads: 2, patch_size: 8, image_size: 32, "
        "embed_dim: 32, text_width: 64, text_layers: 2, text_heads: 2, perceiver_heads: 2, perceiver_dim_head: 16, "
        "decoder_heads: 2, decoder_dim_head: 16, num_frames: 8, fps: 8.0, min_time: 0.0, uniform_window: 0.0")
    return path


def test_the_full_model_trains_from_a_plain_contrastive_file_and_every_file_evaluates(tmp_path):
    from instract_eval.training.checkpoints import latest_checkpoint

    split = ensure_instract_training(tmp_path / "split", seed=0, size="tiny")
    data = DataSource(root=split.root)
    plain = _tiny_config(tmp_path, "train: {steps: 1, batch_size: 4, checkpoint_every: 1}\n", "plain.yaml")
    text = plain.read_text().replace("uniform_window: 0.0", "uniform_window: 0.0, use_hard_negatives: false, "
                                     "use_action_perceiver: false, use_dtw: false, use_mam: false}")
    plain.write_text(text)
    backbone = train(TrainRequest(model="instraction", out=tmp_path / "plain", data=data, config_file=plain)).weights
    assert create_model("instraction", checkpoint=str(backbone)).net.action_perceiver is None
    full = _tiny_config(tmp_path, "train: {steps: 1, batch_size: 4, checkpoint_every: 1}\n")
    full.write_text(full.read_text() + "}")
    report = train(TrainRequest(model="instraction", out=tmp_path / "full", data=data, config_file=full,
                                init=backbone))
    trained = create_model("instraction", checkpoint=str(report.weights))
    assert trained.net.action_perceiver is not None and trained.net.text_decoder is not None
    start = create_model("instraction", checkpoint=str(backbone))
    clips = torch.randn(2, 8, 3, 32, 32)
    # the backbone came from the file: the first (frozen) vision block is the file's, bit for bit
    first = "vision_encoder.transformer.resblocks.0.attn.in_proj_weight"
    assert torch.equal(trained.net.state_dict()[first], start.net.state_dict()[first])
    # the loop's own checkpoint (optimizer state and all) evaluates as well, with the same numbers
    from_checkpoint = create_model("instraction", checkpoint=str(latest_checkpoint(tmp_path / "full")))
    assert torch.equal(from_checkpoint.encode_video(clips), trained.encode_video(clips))
    # tokens=frames: one raw embedding per frame, for the alignment diagnostic's comparison
    frames = create_model("instraction", checkpoint=str(report.weights), tokens="frames")
    assert frames.encode_video_tokens(clips).shape == (2, 8, 32)
    assert frames.weights_fingerprint() != trained.weights_fingerprint()


def test_training_from_a_file_with_other_head_counts_than_the_config_is_one_line(tmp_path):
    import pytest

    from instract_eval.errors import InputError

    split = ensure_instract_training(tmp_path / "split", seed=0, size="tiny")
    plain = _tiny_config(tmp_path, "train: {steps: 1, batch_size: 4}\n", "plain.yaml")
    plain.write_text(plain.read_text().replace("uniform_window: 0.0", "uniform_window: 0.0, use_action_perceiver: "
                                               "false, use_dtw: false, use_mam: false}"))
    backbone = train(TrainRequest(model="instraction", out=tmp_path / "plain", data=DataSource(root=split.root),
                                  config_file=plain)).weights
    recipe = get_recipe("instraction")
    from dataclasses import replace

    config = replace(TINY, image_size=32, num_frames=8, vision_heads=1)
    with pytest.raises(InputError, match=r"was trained with vision_heads 2, the config says 1: set model.vision_heads: 2"):
        recipe.build(config, backbone)


def test_the_packaged_format_is_small_and_evaluates_like_the_full_precision_model(tmp_path):
    from instract_eval.adapters.instraction.checkpoint import write_packaged
    from instract_eval.adapters.instraction.recipe import fresh_net, recorded_config
    from dataclasses import replace

    config = replace(TINY, image_size=32, num_frames=8)
    torch.manual_seed(0)
    net = fresh_net(config).eval()
    full, packed = tmp_path / "full.pt", tmp_path / "packed.safetensors"
    get_recipe("instraction").save_weights(net, config, full)
    write_packaged(net, recorded_config(net, config), packed)
    assert packed.stat().st_size < 0.55 * full.stat().st_size     # fp16, no decoder
    reference, small = create_model("instraction", checkpoint=str(full)), create_model("instraction",
                                                                                       checkpoint=str(packed))
    assert small.net.text_decoder is None and small.net.action_perceiver is not None
    clips = torch.randn(3, 8, 3, 32, 32)
    cosine = torch.nn.functional.cosine_similarity(small.encode_video(clips), reference.encode_video(clips))
    assert cosine.min() > 0.999
    texts = ["move the red square left", "grow the blue circle, then rotate the green triangle clockwise"]
    cosine = torch.nn.functional.cosine_similarity(small.encode_text(texts), reference.encode_text(texts))
    assert cosine.min() > 0.999
