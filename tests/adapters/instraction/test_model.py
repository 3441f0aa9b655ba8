"""InstrAction's network pieces, recipe and files, on a tiny random model (no golden data needed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from instract_eval.adapters import create_model
from instract_eval.adapters.instraction.mam import MaskedActionDecoder
from instract_eval.adapters.instraction.network import LOSS_KEYS
from instract_eval.adapters.instraction.perceiver import ActionPerceiver, local_window_mask
from instract_eval.errors import InputError
from instract_eval.training.recipe import get_recipe

from .tiny import TINY

torch.set_num_threads(2)


def frames_of(mask: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(row).flatten().tolist() for row in mask]


def test_local_window_16_frames_8_latents():
    assert frames_of(local_window_mask(8, 16)) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13],
                                                   [14, 15]]


def test_local_window_8_frames_4_latents():
    assert frames_of(local_window_mask(4, 8)) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_local_window_not_divisible():
    # floor(q T / K) <= f < ceil((q + 1) T / K): T = 5, K = 3 -> [0, 2), [1, 4), [3, 5)
    assert frames_of(local_window_mask(3, 5)) == [[0, 1], [1, 2, 3], [3, 4]]
    # more latents than frames: T = 3, K = 4 -> [0, 1), [0, 2), [1, 3), [2, 3)
    assert frames_of(local_window_mask(4, 3)) == [[0], [0, 1], [1, 2], [2]]


def perceiver(**kwargs) -> ActionPerceiver:
    torch.manual_seed(0)
    settings = dict(dim=16, context_dim=12, depth=2, heads=2, dim_head=8, num_latents=4, ff_mult=2)
    settings.update(kwargs)
    return ActionPerceiver(**settings).eval()


def test_perceiver_latent_reads_only_its_frames():
    model = perceiver()
    tokens = torch.randn(2, 8, 3, 12)
    changed = tokens.clone()
    changed[:, 4:] = torch.randn_like(changed[:, 4:])          # frames 4..7: latents 2 and 3 only
    a, b = model(tokens), model(changed)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6)
    assert not torch.allclose(a[:, 2:], b[:, 2:], atol=1e-3)
    # without the local window every latent sees every frame
    glob = perceiver(local_attention=False)
    assert not torch.allclose(glob(tokens)[:, :2], glob(changed)[:, :2], atol=1e-3)


def test_perceiver_teacher_queries_zero_padded_verbs_and_ignore_temporal_embedding():
    model = perceiver()
    tokens, verbs = torch.randn(2, 8, 3, 12), torch.randn(2, 3, 16)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    out = model(tokens, queries=verbs, query_mask=valid)
    assert torch.count_nonzero(out[0, 2]) == 0 and torch.count_nonzero(out[1, 1:]) == 0
    with torch.no_grad():
        model.temporal_embedding.add_(5.0)
    assert torch.allclose(model(tokens, queries=verbs, query_mask=valid), out, atol=1e-6)


def decoder() -> MaskedActionDecoder:
    torch.manual_seed(1)
    return MaskedActionDecoder(dim=16, vocab_size=50, depth=2, context_dim=16, dim_head=8, heads=2, ff_mult=2).eval()


def test_mam_loss_is_cross_entropy_at_the_masked_positions():
    model = decoder()
    features, tokens = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    ids = torch.tensor([[49, 5, 6, 7, 48, 0], [49, 9, 48, 0, 0, 0]])
    mask = torch.tensor([[False, True, True, False, False, False], [False, True, False, False, False, True]])
    logits = model.logits(features, tokens, ids, mask)
    # position (1, 5) is masked but padding: it does not count
    expected = (F.cross_entropy(logits[0, 1:2], ids[0, 1:2], reduction="sum")
                + F.cross_entropy(logits[0, 2:3], ids[0, 2:3], reduction="sum")
                + F.cross_entropy(logits[1, 1:2], ids[1, 1:2], reduction="sum")) / 3
    assert model(features, tokens, ids, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    # the masked positions' own features do not enter (they are replaced by the mask embedding)
    altered = features.clone()
    altered[0, 1:3] = torch.randn(2, 16)
    assert torch.allclose(model.logits(altered, tokens, ids, mask), logits, atol=1e-6)


def test_mam_attention_is_causal_and_skips_padding_keys():
    model = decoder()
    features, tokens = torch.randn(1, 6, 16), torch.randn(1, 4, 16)
    ids = torch.tensor([[49, 5, 6, 48, 0, 0]])
    none = torch.zeros(1, 6, dtype=torch.bool)
    base = model.logits(features, tokens, ids, none)
    later = features.clone()
    later[0, 3] = torch.randn(16)                      # a later, visible position: earlier logits unchanged
    assert torch.allclose(model.logits(later, tokens, ids, none)[0, :3], base[0, :3], atol=1e-6)
    assert not torch.allclose(model.logits(later, tokens, ids, none)[0, 3], base[0, 3], atol=1e-4)
    padding = features.clone()
    padding[0, 4] = torch.randn(16)                     # a padding key: nothing but its own row changes
    assert torch.allclose(model.logits(padding, tokens, ids, none)[0, :4], base[0, :4], atol=1e-6)


def test_mam_without_a_maskable_word_is_a_connected_zero():
    model = decoder().train()
    loss = model(torch.randn(1, 4, 16), torch.randn(1, 2, 16), torch.tensor([[49, 3, 48, 0]]),
                 torch.zeros(1, 4, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert model.mask_action_embedding.grad is not None


# ------------------------------------------------------------------------------------------------
# The recipe on a tiny model


def batch(size: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    text = torch.randint(1, 400, (size, TINY.text_rows, TINY.context_length), generator=generator)
    text[:, :, 0], text[:, :, 9], text[:, :, 10:] = 49406, 49407, 0
    mask = torch.zeros(size, 1 + TINY.max_negatives, 1, dtype=torch.long)
    mask[0, 4:] = 1
    action = torch.zeros(size, TINY.context_length, dtype=torch.bool)
    action[:, 2:4] = True
    return {"idx": torch.tensor([0, 0, 1][:size]), "video": torch.randn(size, 3, 16, 16, 16, generator=generator),
            "text": text, "text_mask": mask, "num_verbs": torch.tensor([2, 0, 6][:size]), "action_mask": action}


@pytest.fixture(scope="module")
def recipe():
    return get_recipe("instraction")


def test_forward_gives_every_enabled_term_and_a_weighted_total(recipe):
    torch.manual_seed(0)
    net = recipe.build(TINY).eval()
    out = net(batch())
    assert tuple(out) == LOSS_KEYS
    total = out["vtc"] + out["hn"] + 10.0 * out["dtw"] + out["mam"]
    assert out["total"].item() == pytest.approx(total.item(), rel=1e-6)
    assert out["dtw"].item() == pytest.approx((out["dtw_align"] + out["dtw_order"]).item(), rel=1e-6)
    hn_only = dataclasses.replace(TINY, use_action_perceiver=False, use_dtw=False, use_mam=False)
    net = recipe.build(hn_only).eval()
    assert net.action_perceiver is None and net.text_decoder is None
    assert tuple(net(batch())) == ("total", "vtc", "hn")


def test_temperature_is_clamped_at_every_forward(recipe):
    net = recipe.build(TINY).eval()
    with torch.no_grad():
        net.temperature.fill_(0.001)
    net(batch())
    assert net.temperature.item() == pytest.approx(0.01)


def test_parameter_groups_follow_the_release(recipe):
    net = recipe.build(TINY)
    groups = recipe.parameter_groups(net, TINY)
    names = [group.name for group in groups]
    assert all(len(group.params) == 1 for group in groups)
    # own parameters before children's, as PyTorch (and so the release's optimizer) lists them
    assert names[:6] == ["temperature", "action_mix", "distill_alpha", "vision_encoder.temporal_positional_embedding",
                         "vision_encoder.proj", "vision_encoder.ln_pre.weight"]
    assert not any(name.startswith("text_encoder.") for name in names)
    blocks = {name.split(".")[3] for name in names if ".resblocks." in name}
    assert blocks == {"1", "2"}                                            # the last 2 of 3 blocks
    assert "vision_encoder.conv1.weight" not in names and "vision_encoder.class_embedding" not in names
    assert "vision_encoder.positional_embedding" not in names
    by_name = {group.name: group for group in groups}
    assert by_name["action_perceiver.latents"].lr_scale == 10.0           # the x10 rule is matched first
    assert by_name["vision_encoder.temporal_positional_embedding"].lr_scale == 0.1
    assert by_name["temperature"].lr_scale == 1.0 and not by_name["temperature"].weight_decay
    assert by_name["action_mix"].lr_scale == 10.0 and not by_name["distill_alpha"].weight_decay
    assert not by_name["text_decoder.mask_action_embedding"].weight_decay
    assert not by_name["vision_encoder.ln_post.bias"].weight_decay
    assert by_name["vision_encoder.ln_post.weight"].weight_decay          # LayerNorm gains decay in the release
    # "in_proj_bias" does not end in ".bias": the release decays it
    assert by_name["vision_encoder.transformer.resblocks.2.attn.in_proj_bias"].weight_decay
    assert names[-1].startswith("text_decoder.")
    assert {p.requires_grad for name, p in net.named_parameters() if name.startswith("text_encoder.")} == {False}
    frozen = dataclasses.replace(TINY, freeze_backbone=True)
    names = [group.name for group in recipe.parameter_groups(recipe.build(frozen), frozen)]
    assert names[:3] == ["temperature", "action_mix", "distill_alpha"]
    assert not any(name.startswith(("vision_encoder.", "text_encoder.")) for name in names)


def test_saved_weights_load_through_create_model_with_equal_outputs(recipe, tmp_path):
    torch.manual_seed(0)
    net = recipe.build(TINY).eval()
    recipe.save_weights(net, TINY, tmp_path / "w.pt")
    model = create_model("instraction", checkpoint=str(tmp_path / "w.pt"))
    clips = torch.randn(2, 16, 3, 16, 16)
    embedding, tokens = net.encode_video(clips)
    assert torch.equal(model.encode_video(clips), embedding.detach())
    assert torch.equal(model.encode_video_tokens(clips), tokens.detach())
    weight = torch.sigmoid(net.action_mix)
    mixed = weight * F.normalize(net.vision(clips)[0], dim=-1) + (1 - weight) * F.normalize(tokens.mean(1), dim=-1)
    assert torch.allclose(embedding, mixed, atol=1e-6)
    texts = ["cut the onion", "open the jar"]
    ids = model.net.text_encoder.tokenize(texts, "instraction")
    assert torch.equal(model.encode_text(texts), net.text(ids)[0].detach())
    assert model.frame_spec().num_frames == 16 and model.frame_spec().crop == 16
    payload = torch.load(tmp_path / "w.pt", weights_only=True)
    assert recipe.accepts_checkpoint(payload) and payload["recipe"] == "instraction"
    again = recipe.build(TINY, tmp_path / "w.pt")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), net.state_dict().values()))


def test_other_frame_counts_interpolate_the_temporal_table(recipe, tmp_path):
    net = recipe.build(TINY)
    with torch.no_grad():
        net.vision_encoder.temporal_positional_embedding.copy_(torch.arange(16.0).view(1, 16, 1).expand(1, 16, 64))
    recipe.save_weights(net, TINY, tmp_path / "w.pt")
    model = create_model("instraction", checkpoint=str(tmp_path / "w.pt"), frames=8)
    table = model.net.vision_encoder.temporal_positional_embedding[0, :, 0]
    # linear, align_corners=False, 16 -> 8: the mean of each pair of rows
    assert torch.allclose(table, torch.arange(8.0) * 2 + 0.5)
    assert model.encode_video(torch.randn(1, 8, 3, 16, 16)).shape == (1, 32)


def test_a_viclip_backbone_is_refused_for_evaluation_but_starts_training(recipe, tmp_path):
    net = recipe.build(TINY)
    backbone = {k: v for k, v in net.state_dict().items() if k.startswith(("vision_encoder.", "text_encoder."))}
    backbone["vision_encoder.temporal_positional_embedding"] = backbone[
        "vision_encoder.temporal_positional_embedding"][:, :8].clone()
    backbone["temp"] = torch.tensor(0.02)
    torch.save({"model": backbone}, tmp_path / "viclip.pth")
    with pytest.raises(InputError, match="ViCLIP backbone"):
        create_model("instraction", checkpoint=str(tmp_path / "viclip.pth"))
    started = recipe.build(dataclasses.replace(TINY, vision_heads=1, text_heads=1), tmp_path / "viclip.pth")
    assert started.temperature.item() == pytest.approx(0.02)               # ViCLIP's temp, as the release maps it
    assert started.vision_encoder.temporal_positional_embedding.shape[1] == 16
    assert torch.equal(started.text_encoder.text_projection, net.text_encoder.text_projection)


def test_official_payload_is_recognised_by_its_keys(recipe):
    net = recipe.build(TINY)
    official = {"epoch": 0, "global_step": 1, "model": net.state_dict(), "optimizer": {}, "scheduler": {},
                "scaler": None, "args": {}, "config": {}}
    assert recipe.accepts_checkpoint(official)
    assert not recipe.accepts_checkpoint({"model": {"x": torch.zeros(1)}, "epoch": 0, "global_step": 0,
                                          "optimizer": {}})
    recipe.load_state(net, official)
