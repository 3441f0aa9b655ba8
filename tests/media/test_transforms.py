"""Resize, crop, normalise and reverse in torch, against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from instract_eval.media import (
    FrameSpec,
    apply_frame_spec,
    center_crop,
    normalize,
    resize_short_side,
    reverse_time,
    to_float,
)


def test_to_float_moves_channels_first_and_scales() -> None:
    frames = torch.zeros(2, 4, 5, 3, dtype=torch.uint8)
    frames[1, 0, 0] = torch.tensor([255, 51, 0], dtype=torch.uint8)
    images = to_float(frames)
    assert images.shape == (2, 3, 4, 5) and images.dtype == torch.float32
    torch.testing.assert_close(images[1, :, 0, 0], torch.tensor([1.0, 0.2, 0.0]))
    with pytest.raises(ValueError):
        to_float(frames.float())


def test_downscale_by_two_uses_the_antialiasing_triangle_filter() -> None:
    # A ramp along W (value = column), 8 x 16 -> 4 x 8. Each output column averages input columns
    # 2i-1 .. 2i+2 with weights 1/8, 3/8, 3/8, 1/8 (triangle of half-width 2 at distances 1.5, 0.5,
    # 0.5, 1.5), giving 2i + 1/2; at the borders the missing tap is dropped and the weights
    # renormalised: (3*0 + 3*1 + 1*2) / 7 and (1*13 + 3*14 + 3*15) / 7.
    ramp = torch.arange(16, dtype=torch.float32).expand(1, 8, 16).clone()
    out = resize_short_side(ramp, 4)
    assert out.shape == (1, 4, 8)
    expected = torch.tensor([5 / 7, 2.5, 4.5, 6.5, 8.5, 10.5, 12.5, 100 / 7])
    torch.testing.assert_close(out[0], expected.expand(4, 8), atol=1e-5, rtol=0)


def test_uint8_resize_rounds_the_same_filter() -> None:
    ramp = (torch.arange(16) * 10).to(torch.uint8).expand(1, 3, 8, 16).clone()  # [N, C, H, W]
    out = resize_short_side(ramp, 4)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 4, 8)
    expected = [round(10 * v) for v in (5 / 7, 2.5, 4.5, 6.5, 8.5, 10.5, 12.5, 100 / 7)]  # 7, 25, 45, ...
    assert (out[0, 0] - torch.tensor(expected)).abs().max() <= 1
    image = torch.randint(0, 256, (2, 3, 30, 41), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for size in (12, 64):  # down and up
        fast = resize_short_side(image, size).float()
        exact = resize_short_side(image.float(), size)
        assert (fast - exact).abs().max() <= 1.0


def test_upscale_is_plain_bilinear_with_half_pixel_centres() -> None:
    a, b = 10.0, 30.0
    image = torch.tensor([[a, b], [a, b]]).expand(3, 2, 2)
    out = resize_short_side(image, 4)
    torch.testing.assert_close(out[0, 0], torch.tensor([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]))
    torch.testing.assert_close(out[:, 1:], out[:, :1].expand(3, 3, 4))


def test_long_side_is_truncated_like_torchvision() -> None:
    assert resize_short_side(torch.zeros(2, 3, 24, 32), 7).shape == (2, 3, 7, 9)  # 7 * 32 / 24 = 9.33
    assert resize_short_side(torch.zeros(3, 32, 24), 7).shape == (3, 9, 7)
    same = torch.rand(3, 7, 9)
    assert resize_short_side(same, 7) is same


def test_center_crop_offsets_round_down() -> None:
    image = torch.arange(35).reshape(1, 5, 7)
    assert center_crop(image, 2).tolist() == [[[9, 10], [16, 17]]]  # rows 1-2, columns 2-3
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(image, 6)


def test_normalize_per_channel() -> None:
    out = normalize(torch.full((1, 3, 1, 1), 0.5), (0.25, 0.5, 0.75), (0.5, 0.25, 0.125))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.5, 0.0, -2.0]))


def test_apply_frame_spec_end_to_end() -> None:
    frames = torch.zeros(1, 2, 24, 32, 3, dtype=torch.uint8)  # [K, T, H, W, 3]
    frames[0, 0] = torch.tensor([255, 0, 51], dtype=torch.uint8)
    frames[0, 1] = 102
    spec = FrameSpec(2, size=12, crop=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.2))
    out = apply_frame_spec(frames, spec)
    assert out.shape == (1, 2, 3, 8, 8) and out.is_contiguous()
    first = torch.tensor([(1.0 - 0.5) / 0.5, (0.0 - 0.5) / 0.25, (0.2 - 0.5) / 0.2])
    second = torch.tensor([(0.4 - 0.5) / 0.5, (0.4 - 0.5) / 0.25, (0.4 - 0.5) / 0.2])
    torch.testing.assert_close(out[0, 0], first.view(3, 1, 1).expand(3, 8, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1], second.view(3, 1, 1).expand(3, 8, 8), atol=1e-5, rtol=0)


def test_apply_frame_spec_matches_the_float_pipeline_within_a_grey_level() -> None:
    frames = torch.randint(0, 256, (2, 3, 30, 41, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    spec = FrameSpec(3, size=20, crop=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25))
    out = apply_frame_spec(frames, spec)
    reference = normalize(center_crop(resize_short_side(to_float(frames), 20), 16), spec.mean, spec.std)
    assert out.shape == reference.shape == (2, 3, 3, 16, 16)
    tolerance = 1.0 / 255 / min(spec.std) + 1e-6
    assert (out - reference).abs().max() <= tolerance
    with pytest.raises(ValueError):
        apply_frame_spec(frames.float(), spec)


def test_apply_frame_spec_without_resize_or_crop_keeps_the_frame() -> None:
    frames = torch.randint(0, 256, (3, 5, 7, 3), dtype=torch.uint8)
    out = apply_frame_spec(frames, FrameSpec(3, size=None, crop=None, mean=(0, 0, 0), std=(1, 1, 1)))
    torch.testing.assert_close(out, frames.permute(0, 3, 1, 2).float() / 255)


def test_reverse_time_flips_only_the_time_axis() -> None:
    clip = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert reverse_time(clip, 1).tolist() == [[[8, 9, 10, 11], [4, 5, 6, 7], [0, 1, 2, 3]], [[20, 21, 22, 23], [16, 17, 18, 19], [12, 13, 14, 15]]]
