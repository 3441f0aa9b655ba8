"""AdaTAD's network (`instract_eval.adapters.tal.adatad`) against independent computations.

The official code (sming256/OpenTAD ``opentad/models/backbones/vit_adapter.py``) needs mmcv and
mmaction2, which do not install here, so its formulas are written out by hand in these tests:
the plain VideoMAE part is transformers' own ``VideoMAEModel`` / ``VideoMAELayer`` forward, the
temporal-informative adapter an explicit loop over windows, positions and time steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instract_eval.adapters.tal.adatad import (AdaTADConfig, AdaTADLocalizer, AdaTADTest, build_network, frame_times,
                                               load_backbone, to_seconds, video_timing, window_candidates,
                                               window_frame_indices, window_starts)
from instract_eval.adapters.tal.nms import batched_nms
from instract_eval.errors import InputError
from instract_eval.media import apply_frame_spec, decode_frames

# A tiny AdaTAD: 32-wide ViT of 2 blocks on 32 px frames (2x2 patches), 4-frame VideoMAE clips.
TINY = dict(hidden_size=32, num_layers=2, num_heads=2, patch_size=16, chunk_frames=4, position_size=32, frames=32,
            snippet_stride=2, image_size=32, embd_dim=16, fpn_dim=16, head_dim=16, n_head=2, backbone_arch=(2, 1, 2),
            regression_range=((0, 4), (4, 8), (8, 10000)))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**changes) -> AdaTADConfig:
    return AdaTADConfig(**{**TINY, **changes})


def _randomise_adapters(backbone, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in backbone.adapters.values():
            for parameter in adapter.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def _plain_videomae_tokens(encoder, frames: torch.Tensor, clip: int) -> torch.Tensor:
    """transformers' VideoMAEModel on each chunk of ``clip`` frames: ``[B * chunks, N, C]``."""
    batch, count = frames.shape[:2]
    chunks = frames.reshape(batch * (count // clip), clip, *frames.shape[2:])
    return encoder(pixel_values=chunks).last_hidden_state


def test_backbone_is_plain_videomae_at_init_and_with_the_adapter_scale_at_zero():
    torch.manual_seed(0)
    config = tiny(frames=8)
    backbone = build_network(config, 3).backbone.eval()
    frames = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        reference = _plain_videomae_tokens(backbone.encoder, frames, 4)
        at_init, chunks, grid = backbone.tokens(frames)
    assert (chunks, grid) == (2, (2, 2, 2))
    torch.testing.assert_close(at_init, reference, atol=1e-5, rtol=1e-5)   # up_proj starts at zero
    _randomise_adapters(backbone)
    with torch.no_grad():
        adapted = backbone.tokens(frames)[0]
        assert (adapted - reference).abs().max() > 1e-2                   # the adapters do act
        for adapter in backbone.adapters.values():
            adapter.gamma.zero_()
        torch.testing.assert_close(backbone.tokens(frames)[0], reference, atol=1e-5, rtol=1e-5)
        features = backbone(frames)                                        # [2, C, 8]
    # snippet features: spatial mean per tubelet step, chunks in order, linear resize 4 -> 8 steps
    pooled = reference.reshape(2, 2, 2, 4, 32).mean(dim=3).reshape(2, 4, 32).numpy()
    source = np.clip((np.arange(8) + 0.5) * 4 / 8 - 0.5, 0, 3)
    expected = np.stack([[np.interp(source, np.arange(4), pooled[b, :, c]) for c in range(32)] for b in range(2)])
    np.testing.assert_allclose(features.numpy(), expected, atol=1e-5)


def test_position_table_is_resized_per_temporal_slice():
    config = tiny(position_size=64, frames=8)
    backbone = build_network(config, 2).backbone
    table = backbone.encoder.embeddings.position_embeddings[0]              # [2 * 4 * 4, C] for 64 px
    resized = backbone.positions(2, 2)[0]
    assert resized.shape == (2 * 2 * 2, 32)
    for step in range(2):
        square = table[step * 16:(step + 1) * 16].reshape(4, 4, 32).permute(2, 0, 1)[None]
        expected = F.interpolate(square, size=(2, 2), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
        torch.testing.assert_close(resized[step * 4:(step + 1) * 4], expected.reshape(4, 32))
    assert torch.equal(backbone.positions(4, 4)[0], table)                  # its own grid: unchanged
    with torch.no_grad():
        assert backbone(torch.randn(1, 8, 3, 32, 32)).shape == (1, 32, 8)   # 32 px frames on a 64 px table


def _hand_adapter(adapter, x: torch.Tensor, chunks: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """The official Adapter.forward written out: z = GELU(down x); for every window and spatial
    position, a depthwise 3-tap convolution (zero padding) over the window's tubelet steps and a
    pointwise one; z + that; x + gamma * up(.)."""
    steps, height, width = grid
    down_w, down_b = adapter.down_proj.weight.double(), adapter.down_proj.bias.double()
    dw_w, dw_b = adapter.dwconv.weight.double()[:, 0, :], adapter.dwconv.bias.double()
    pw_w, pw_b = adapter.conv.weight.double()[:, :, 0], adapter.conv.bias.double()
    up_w, up_b = adapter.up_proj.weight.double(), adapter.up_proj.bias.double()
    z = x.double() @ down_w.T + down_b
    z = 0.5 * z * (1.0 + torch.erf(z / np.sqrt(2.0)))
    out = z.clone()
    windows = x.shape[0] // chunks
    length = chunks * steps
    for window in range(windows):
        for position in range(height * width):
            rows = [(window * chunks + tau // steps, (tau % steps) * height * width + position) for tau in range(length)]
            sequence = torch.stack([z[r] for r in rows])                    # [length, hidden]
            for tau in range(length):
                mixed = dw_b.clone()
                for k in range(3):
                    source = tau + k - 1
                    if 0 <= source < length:
                        mixed = mixed + dw_w[:, k] * sequence[source]
                out[rows[tau]] = z[rows[tau]] + pw_w @ mixed + pw_b
    return x.double() + adapter.gamma.double() * (out @ up_w.T + up_b)


def test_adapted_block_equals_the_official_formulas_by_hand():
    torch.manual_seed(1)
    config = tiny(frames=12)                                   # 3 chunks of 4 frames: 6 tubelet steps
    backbone = build_network(config, 2).backbone.eval()
    _randomise_adapters(backbone, seed=3)
    chunks, grid = 3, (2, 2, 2)
    x = torch.randn(2 * chunks, 8, 32)                        # two windows
    with torch.no_grad():
        ours = backbone.block(1, x, chunks, grid)
        plain = backbone.encoder.encoder.layer[1](x)           # transformers' own VideoMAELayer forward
        expected = _hand_adapter(backbone.adapters["1"], plain, chunks, grid)
    torch.testing.assert_close(ours.double(), expected, atol=1e-5, rtol=1e-5)
    # the temporal convolution crosses chunk boundaries: chunk 0's last step reaches chunk 1's first
    nudged = x.clone()
    nudged[0, 4:8] += 1.0                                       # window 0, chunk 0, tubelet step 1
    with torch.no_grad():
        changed = (backbone.block(1, nudged, chunks, grid) - ours).abs().amax(dim=-1)
    assert changed[1, :4].min() > 1e-4                          # chunk 1, step 0 (adjacent in time)
    assert changed[1, 4:].max() == 0 and changed[3:].max() == 0  # two steps away / the other window: untouched


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    def run(checkpointing: bool):
        torch.manual_seed(5)
        net = build_network(tiny(gradient_checkpointing=checkpointing, drop_path=0.3), 3).train()
        _randomise_adapters(net.backbone, seed=7)
        calls = []
        original = net.backbone.block
        net.backbone.block = lambda *args: calls.append(args[0]) or original(*args)
        torch.manual_seed(11)                                    # the same stochastic-depth draws
        frames = torch.randn(2, 32, 3, 32, 32)
        mask = torch.ones(2, 32, dtype=torch.bool)
        mask[1, 20:] = False
        out = net(frames, mask)
        loss = sum((logits ** 2).sum() for logits in out.cls_logits) + sum(o.sum() for o in out.offsets)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.requires_grad}
        frozen = [p.grad for name, p in net.named_parameters() if name.startswith("backbone.encoder.")]
        return float(loss.detach()), grads, calls, frozen

    loss_plain, grads_plain, calls_plain, frozen = run(False)
    loss_cp, grads_cp, calls_cp, _ = run(True)
    assert calls_plain == [0, 1]
    assert calls_cp == [0, 1, 1]        # block 1 is recomputed in backward; block 0's input needs no gradient
    assert loss_cp == pytest.approx(loss_plain, rel=1e-6)
    assert grads_cp.keys() == grads_plain.keys() and any(k.startswith("backbone.adapters.") for k in grads_cp)
    for name in grads_plain:
        torch.testing.assert_close(grads_cp[name], grads_plain[name], atol=1e-6, rtol=1e-5, msg=name)
    assert all(g is None for g in frozen)                      # the ViT is frozen


def test_windows_frames_and_seconds_follow_opentad():
    # every window * (1 - overlap) snippets, the last right-aligned; OpenTAD repeats it when the
    # strides land exactly on the end (10 snippets, window 4: 0, 2, 4, 6, then 8 -> 6 again)
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6, 6]
    assert window_starts(11, 4, 0.5) == [0, 2, 4, 6, 7]
    assert window_starts(3, 4, 0.5) == [0]
    assert window_starts(8, 4, 0.0) == [0, 4]
    config = tiny(frames=8)                         # 8 frames every 2nd frame
    indices, valid = window_frame_indices(config, 13, 0)
    assert indices.tolist() == [0, 2, 4, 6, 8, 10, 12, 12] and valid == 7
    indices, valid = window_frame_indices(config, 40, 3)
    assert indices.tolist() == [6, 8, 10, 12, 14, 16, 18, 20] and valid == 8
    double = tiny(frames=8, scale_factor=2, snippet_stride=4)   # 8 frames, 4 features, frames every 2nd
    indices, valid = window_frame_indices(double, 40, 1)
    assert indices.tolist() == [4, 6, 8, 10, 12, 14, 16, 18] and valid == 4
    seconds = to_seconds(torch.tensor([[-1.0, 2.5], [10.0, 99.0]]), snippet_stride=4, window_start_frame=24,
                         fps=30.0, duration=5.0)
    torch.testing.assert_close(seconds, torch.tensor([[20 / 30, 34 / 30], [64 / 30, 5.0]]))
    assert np.allclose(frame_times(np.array([0, 3]), 8.0), [0.0625, 0.4375])


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from instract_eval.synth.tal_training import ensure_tal_training

    return ensure_tal_training(tmp_path_factory.mktemp("adatad") / "split", seed=0, size="tiny")


LABELS = ["appear", "bounce", "shrink"]


def _localizer(config: AdaTADConfig, seed: int = 0) -> AdaTADLocalizer:
    torch.manual_seed(seed)
    net = build_network(config, len(LABELS)).eval()
    _randomise_adapters(net.backbone, seed)
    return AdaTADLocalizer(net, LABELS, test=AdaTADTest(), checkpoint=None)


def test_localize_returns_valid_segments_from_the_video(split):
    video = split.video_root / "talval_0000.mp4"
    total, fps, duration = video_timing(video)
    assert (total, fps) == (79, pytest.approx(8.0))
    model = _localizer(tiny())
    found = model.localize(str(video), LABELS, None)
    assert found and len(found) <= AdaTADTest().nms.max_seg_num
    assert all(0.0 <= s.start <= s.end <= duration and 0.0 < s.score <= 1.0 and s.label in LABELS for s in found)
    only = model.localize(str(video), ["bounce", "not-a-class"], None)
    assert only and {s.label for s in only} == {"bounce"}
    with pytest.raises(InputError, match="none of the task's classes"):
        model.localize(str(video), ["unknown"], None)


def test_localize_is_the_network_on_the_videos_frames(split):
    """One window covering the whole video (64 frames every 2nd of 79): detect() equals the network
    run on frames decoded independently at those indices, with OpenTAD's timing."""
    video = split.video_root / "talval_0001.mp4"
    total, fps, duration = video_timing(video)
    config = tiny(frames=64)
    model = _localizer(config, seed=2)
    segs, scores, labels = model.detect(video)
    indices = np.minimum(np.r_[np.arange(0, total, 2), np.full(64 - len(range(0, total, 2)), (total - 1) // 2 * 2)],
                         total - 1)
    frames = apply_frame_spec(decode_frames(video, (indices + 0.5) / fps).frames, config.frame_spec())
    mask = torch.arange(64) < len(range(0, total, 2))
    with torch.no_grad():
        outputs = model.net(frames[None], mask[None])
    found, score, label = window_candidates(outputs, 0, pre_nms_thresh=0.001, pre_nms_topk=2000)
    expected = batched_nms((found * 2 / fps).clamp(0, duration), score, label, AdaTADTest().nms)
    torch.testing.assert_close(segs, expected[0])
    torch.testing.assert_close(scores, expected[1])
    assert torch.equal(labels, expected[2])


def test_candidates_take_the_best_valid_point_class_pairs_over_all_levels():
    from instract_eval.adapters.tal.actionformer import ActionFormerOutputs

    logits = [torch.tensor([[[0.0, 3.0], [5.0, -9.0], [1.0, 2.0]]]), torch.tensor([[[4.0, 0.5]]])]
    offsets = [torch.tensor([[[1.0, 2.0], [0.5, 0.5], [3.0, 3.0]]]), torch.tensor([[[1.0, 1.0]]])]
    masks = [torch.tensor([[True, True, False]]), torch.tensor([[True]])]
    points = [torch.tensor([[0.0, 0, 4, 1], [1.0, 0, 4, 1], [2.0, 0, 4, 1]]), torch.tensor([[0.0, 4, 99, 2]])]
    segs, scores, labels = window_candidates(ActionFormerOutputs(logits, offsets, masks, points), 0,
                                             pre_nms_thresh=0.5, pre_nms_topk=3)
    # valid (point, class) scores: sigmoid 0, 3, 5, -9, 4, 0.5; the 3 best above 0.5: 5, 4, 3 (point 2 is padding)
    torch.testing.assert_close(scores, torch.sigmoid(torch.tensor([5.0, 4.0, 3.0])))
    assert labels.tolist() == [0, 0, 1]
    torch.testing.assert_close(segs, torch.tensor([[0.5, 1.5], [-2.0, 2.0], [-1.0, 2.0]]))


def _mmaction_state(encoder, prefix: str) -> dict[str, torch.Tensor]:
    """An HF VideoMAE encoder written out under the official / mmaction2 names, by hand."""
    state = {f"{prefix}patch_embed.projection.weight": encoder.embeddings.patch_embeddings.projection.weight,
             f"{prefix}patch_embed.projection.bias": encoder.embeddings.patch_embeddings.projection.bias}
    for i, layer in enumerate(encoder.encoder.layer):
        attention = layer.attention.attention
        block = f"{prefix}blocks.{i}."
        state[block + "attn.qkv.weight"] = torch.cat([attention.query.weight, attention.key.weight,
                                                      attention.value.weight])
        state[block + "attn.q_bias"] = attention.query.bias
        state[block + "attn.v_bias"] = attention.value.bias
        state[block + "attn.proj.weight"] = layer.attention.output.dense.weight
        state[block + "attn.proj.bias"] = layer.attention.output.dense.bias
        for ours, theirs in (("layernorm_before", "norm1"), ("layernorm_after", "norm2")):
            state[block + f"{theirs}.weight"] = getattr(layer, ours).weight
            state[block + f"{theirs}.bias"] = getattr(layer, ours).bias
        state[block + "mlp.layers.0.0.weight"] = layer.intermediate.dense.weight
        state[block + "mlp.layers.0.0.bias"] = layer.intermediate.dense.bias
        state[block + "mlp.layers.1.weight"] = layer.output.dense.weight
        state[block + "mlp.layers.1.bias"] = layer.output.dense.bias
    return {k: v.detach().clone() for k, v in state.items()}


def write_mmaction_backbone(path, config: AdaTADConfig, seed: int = 4):
    """A random VideoMAE in the AdaTAD configs' ``pretrain=`` layout (mmaction2), and its encoder."""
    torch.manual_seed(seed)
    source = build_network(config, 1).backbone.eval()
    state = _mmaction_state(source.encoder, "backbone.")
    state["backbone.fc_norm.weight"] = torch.ones(32)
    state["cls_head.fc_cls.weight"] = torch.zeros(400, 32)
    torch.save({"state_dict": state, "meta": {"note": "mmaction2"}}, path)
    return source


def test_backbone_loads_mmaction_and_opentad_files(tmp_path):
    config = tiny(frames=8)
    frames = torch.randn(1, 8, 3, 32, 32)
    source = write_mmaction_backbone(tmp_path / "videomae.pth", config)
    target = build_network(config, 1).backbone.eval()
    assert load_backbone(target, tmp_path / "videomae.pth") == 0
    with torch.no_grad():
        torch.testing.assert_close(target.tokens(frames)[0], _plain_videomae_tokens(source.encoder, frames, 4))
    # an OpenTAD detector checkpoint: the backbone under module.backbone.model.backbone, with its adapters
    _randomise_adapters(source, seed=9)
    state = _mmaction_state(source.encoder, "module.backbone.model.backbone.")
    for name, value in source.adapters.state_dict().items():
        index, rest = name.split(".", 1)
        state[f"module.backbone.model.backbone.blocks.{index}.adapter.{rest}"] = value.clone()
    state["module.rpn_head.cls_head.conv.weight"] = torch.zeros(20, 512, 3)
    torch.save({"epoch": 5, "state_dict": state, "state_dict_ema": state}, tmp_path / "opentad.pth")
    fresh = build_network(config, 1).backbone.eval()
    assert load_backbone(fresh, tmp_path / "opentad.pth") == len(source.adapters.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.tokens(frames)[0], source.tokens(frames)[0])
    # another width is refused in one line naming the file
    with pytest.raises(InputError, match="opentad.pth.*wrong shape"):
        load_backbone(build_network(dataclasses.replace(config, hidden_size=64, num_heads=2), 1).backbone,
                      tmp_path / "opentad.pth")


def test_bad_weights_are_refused_in_one_line(tmp_path):
    from instract_eval.adapters import create_model

    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt.*not an adatad weights file"):
        create_model("adatad", checkpoint=str(tmp_path / "other.pt"))
    torch.save({"epoch": 1, "state_dict": {"module.backbone.model.backbone.blocks.0.attn.qkv.weight": torch.zeros(3)},
                "optimizer": {}}, tmp_path / "opentad.pth")
    with pytest.raises(InputError, match="official OpenTAD checkpoint has no class names: pass labels=FILE"):
        create_model("adatad", checkpoint=str(tmp_path / "opentad.pth"))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="opentad.pth.*lacks embeddings.patch_embeddings"):
        create_model("adatad", checkpoint=str(tmp_path / "opentad.pth"), labels=str(tmp_path / "labels.txt"))
    torch.save({"recipe": "adatad", "state_dict": {}, "labels": ["a"], "config": {"frames": 32, "colour": 1}},
               tmp_path / "unknown.pt")
    with pytest.raises(InputError, match="unknown AdaTAD settings: colour"):
        create_model("adatad", checkpoint=str(tmp_path / "unknown.pt"))
    with pytest.raises(ValueError, match="multiple of the VideoMAE clip length"):
        tiny(frames=30)


OFFICIAL = Path(__file__).resolve().parents[2] / "data" / "official" / "adatad"
OFFICIAL_ARGS = dict(labels=str(OFFICIAL / "category_idx.txt"), frames=32, image_size=32, snippet_stride=2, n_head=2,
                     vit_heads=2)


def _proposals(net, feats, masks, row):
    with torch.no_grad():
        out = net.head(feats, masks[:, None])
    points = torch.cat(out.points)
    offsets = torch.cat([o[row] for o in out.offsets])
    valid = torch.cat([m[row] for m in out.masks])
    segments = torch.stack((points[:, 0] - offsets[:, 0] * points[:, 3], points[:, 0] + offsets[:, 1] * points[:, 3]), -1)
    return segments[valid], torch.cat([c[row] for c in out.cls_logits]).sigmoid()[valid]


def test_official_opentad_checkpoint_gives_opentads_head_outputs():
    """``opentad_tiny.pth`` (OpenTAD's layout) read by the factory: the head's proposals and scores
    equal OpenTAD's own ``forward_test`` on a full and on a padded window (``golden.pt``)."""
    from instract_eval.adapters import create_model

    model = create_model("adatad", checkpoint=str(OFFICIAL / "opentad_tiny.pth"), **OFFICIAL_ARGS)
    golden = torch.load(OFFICIAL / "golden.pt", weights_only=True)
    assert model.labels == ["Jump", "Throw", "Wave"] and model.config.head_variant == "opentad"
    assert model.config.adapter_layers == (0, 1) and model.config.adapter_ratio == 0.25
    for row in (0, 1):
        segments, scores = _proposals(model.net, golden["feats"], golden["masks"], row)
        torch.testing.assert_close(segments, golden[f"proposals_{row}"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scores, golden[f"scores_{row}"], atol=1e-6, rtol=1e-5)
    # the release's ActionFormer (H6's port as it is) differs from OpenTAD's on the padded window only
    release = build_network(dataclasses.replace(model.config, head_variant="release"), 3).eval()
    release.load_state_dict(model.net.state_dict())
    segments, scores = _proposals(release, golden["feats"], golden["masks"], 1)
    assert (scores - golden["scores_1"]).abs().max() > 1e-3
    # the raw weights are not the averaged ones, and the backbone came from the file
    raw = create_model("adatad", checkpoint=str(OFFICIAL / "opentad_tiny.pth"), weights="raw", **OFFICIAL_ARGS)
    payload = torch.load(OFFICIAL / "opentad_tiny.pth", weights_only=True)
    gamma = "module.backbone.model.backbone.blocks.1.adapter.gamma"
    assert raw.net.backbone.adapters["1"].gamma.item() == pytest.approx(payload["state_dict"][gamma].item())
    assert model.net.backbone.adapters["1"].gamma.item() == pytest.approx(payload["state_dict_ema"][gamma].item())
    with pytest.raises(InputError, match="size='b' was asked for but the file's ViT is 32 wide"):
        create_model("adatad", checkpoint=str(OFFICIAL / "opentad_tiny.pth"), size="b", **OFFICIAL_ARGS)
    with pytest.raises(InputError, match="not an official AdaTAD size.*vit_heads"):
        create_model("adatad", checkpoint=str(OFFICIAL / "opentad_tiny.pth"),
                     **{**OFFICIAL_ARGS, "vit_heads": None})


def test_official_checkpoint_localizes_a_video(split):
    from instract_eval.adapters import create_model

    model = create_model("adatad", checkpoint=str(OFFICIAL / "opentad_tiny.pth"), **OFFICIAL_ARGS)
    video = split.video_root / "talval_0000.mp4"
    found = model.localize(str(video), model.labels, None)
    duration = video_timing(video)[2]
    assert found and all(0.0 <= s.start <= s.end <= duration for s in found)
