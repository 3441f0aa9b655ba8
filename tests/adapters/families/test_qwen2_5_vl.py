"""``qwen2.5-vl`` on tiny ``save_pretrained`` directories, through ``create_model`` (the card's loading path).

The reference is transformers' ``Qwen2_5_VLForConditionalGeneration``: the scores equal a hand
computation from its logits on the full (prompt + caption) sequence, the letter protocol picks a
planted letter, the patch layout is the processor's, and bad directories are refused in one line.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.generative.qwen2_5_vl import qwen_video_patches
from instract_eval.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
from generative_tiny import tiny_qwen2_5_vl  # noqa: E402

TINY = Path(__file__).resolve().parents[2] / "data" / "official" / "qwen2_5_vl" / "qwen2_5_vl-tiny"
CAPTIONS = ["a person cuts an onion", "open the jar", "Someone's SLICING vegetables, quickly!!"]


def _model(checkpoint=TINY, **kwargs):
    return create_model("qwen2.5-vl", checkpoint=str(checkpoint), frames=4, size=32, **kwargs)


def _clips(batch=2, frames=4, side=32, seed=0):
    return torch.randn(batch, frames, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _by_hand(model, clip, caption):
    """Sum and count of the caption's log-probabilities from one full forward of the transformers class."""
    inputs = model.prompt_inputs(clip, model.prompt)
    tokens = model.text_ids(caption)
    prefix = inputs["input_ids"].shape[1]
    ids = torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)
    types = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, len(tokens), dtype=torch.long)], dim=1)
    with torch.no_grad():
        logits = model.net(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types,
                           pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"],
                           second_per_grid_ts=inputs["second_per_grid_ts"]).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[prefix - 1 + j, t]) for j, t in enumerate(tokens)), len(tokens)


@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("normalisation", ["mean", "sum"])
def test_log_likelihood_equals_the_transformers_logits(normalisation, reuse):
    model = _model(normalisation=normalisation, reuse_prefix=reuse)
    clips = _clips()
    scores = model.score(clips, [CAPTIONS] * 2)
    for row in range(2):
        for column, caption in enumerate(CAPTIONS):
            total, count = _by_hand(model, clips[row], caption)
            expected = total / count if normalisation == "mean" else total
            assert float(scores[row, column]) == pytest.approx(expected, rel=1e-6, abs=1e-5)
    assert model.scoring.startswith(normalisation)


def test_the_video_matters_and_rows_are_batch_invariant():
    model = _model()
    clips = _clips(3)
    scores = model.score(clips, [CAPTIONS] * 3)
    assert not torch.allclose(scores[0], scores[1])
    alone = torch.cat([model.score(clips[i:i + 1], [CAPTIONS]) for i in range(3)])
    torch.testing.assert_close(scores, alone, rtol=0, atol=1e-5)


def test_letter_protocol_picks_the_planted_answer():
    model = _model(protocol="letter")
    bias = torch.zeros(model.net.config.text_config.vocab_size)
    bias[model.text_ids("B")[0]] = 30.0
    model.net.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    scores = model.score(_clips(2), [CAPTIONS] * 2)
    assert scores.argmax(dim=1).tolist() == [1, 1] and float(scores.min()) >= 0.0
    assert model.list_dependent_scores and "letter" in model.scoring


def test_prompt_is_the_chat_template_with_the_video_tokens():
    model = _model()
    inputs = model.prompt_inputs(_clips(1)[0], "What happens?")
    text = model.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                           "<|vision_start|>")
    assert text.endswith("<|vision_end|>What happens?<|im_end|>\n<|im_start|>assistant\n")
    video = int((inputs["input_ids"] == model.video_token_id).sum())
    assert video == 2 * 4 * 4 // 4  # grid (t 2, h 4, w 4) merged 2x2
    assert inputs["pixel_values_videos"].shape == (32, 3 * 2 * 8 * 8)
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    assert torch.equal(inputs["mm_token_type_ids"] == 2, inputs["input_ids"] == model.video_token_id)
    assert inputs["second_per_grid_ts"].tolist() == [1.0]  # temporal_patch_size 2 / video_fps 2
    # As a localizer the frames span the whole video: its time positions follow their real rate
    # (4 frames over 120 s), or its answers in seconds would be those of an 8 s video.
    spread = model.prompt_inputs(_clips(1)[0], "When?", 4 / 120.0)
    assert spread["second_per_grid_ts"].tolist() == [60.0]


def test_patch_layout_is_the_processors():
    """Each row holds one patch of one frame pair, flattened (channel, time, y, x); rows run over the
    frame pairs, then over 2x2 merge blocks row by row, then over the patches of a block row by row."""
    frames, side, patch, merge = 3, 32, 8, 2
    t, c, y, x = torch.meshgrid(torch.arange(frames), torch.arange(3), torch.arange(side), torch.arange(side),
                                indexing="ij")
    video = (t * 1_000_000 + c * 100_000 + y * 100 + x).double()
    flat, grid = qwen_video_patches(video, patch, merge, 2)
    assert grid.tolist() == [[2, 4, 4]] and flat.shape == (32, 3 * 2 * patch * patch)
    row = 0
    for group in range(2):
        for block_y in range(2):
            for block_x in range(2):
                for inner_y in range(merge):
                    for inner_x in range(merge):
                        top, left = (block_y * merge + inner_y) * patch, (block_x * merge + inner_x) * patch
                        frame_ids = [min(2 * group + k, frames - 1) for k in range(2)]  # the odd last frame repeated
                        expected = torch.stack([torch.stack([video[f, ch, top:top + patch, left:left + patch]
                                                             for f in frame_ids]) for ch in range(3)])
                        assert torch.equal(flat[row], expected.reshape(-1)), row
                        row += 1


def test_a_second_size_loads_through_create_model(tmp_path):
    directory = tiny_qwen2_5_vl(tmp_path / "wide", hidden=48, layers=3, seed=5)
    model = _model(directory)
    assert model.net.config.text_config.hidden_size == 48 and model.net.config.text_config.num_hidden_layers == 3
    clips = _clips(1)
    total, count = _by_hand(model, clips[0], CAPTIONS[0])
    assert float(model.score(clips, [CAPTIONS[:1]])[0, 0]) == pytest.approx(total / count, rel=1e-6, abs=1e-5)


def test_greedy_answers_and_unparsable_localization_are_counted(world):
    model = _model(max_new_tokens=8)
    video = next(path for path in sorted(world.rglob("*.mp4")))
    assert model.answer(_clips(1)[0], "When?") == model.answer(_clips(1)[0], "When?")
    segments = model.localize(str(video), ["cut", "open"], {"cut": "cutting with a knife"})
    counts = model.answer_counts()
    assert counts["answers"] == 2 and counts["parsed"] + counts["unparsable"] == 2
    assert len(segments) >= 0 and all(s.label in ("cut", "open") for s in segments)
    assert model.decoding == "greedy, max_new_tokens=8"


def _copy(tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(TINY, target)
    return target


def test_a_weight_of_another_shape_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    target = _copy(tmp_path)
    weights = load_file(target / "model.safetensors")
    key = next(k for k in weights if k.endswith("lm_head.weight"))
    weights[key] = weights[key][:, :16].contiguous()
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="model.safetensors.*wrong shape of lm_head.weight") as error:
        _model(target)
    assert "\n" not in str(error.value)


def test_a_missing_weight_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    target = _copy(tmp_path)
    weights = load_file(target / "model.safetensors")
    del weights[next(k for k in weights if "visual.merger" in k)]
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="model.safetensors.*missing .*visual"):
        _model(target)


def test_other_directories_are_refused(tmp_path):
    target = _copy(tmp_path)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "internvl"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="config.json.*not a Qwen2_5_VLForConditionalGeneration"):
        _model(target)
    with pytest.raises(InputError, match="size must be a multiple of .* 16"):
        create_model("qwen2.5-vl", checkpoint=str(TINY), size=40)
    other = _copy(tmp_path / "b")
    (other / "tokenizer.json").unlink()
    (other / "tokenizer_config.json").unlink()
    with pytest.raises(InputError, match="ships no tokenizer"):
        _model(other)
    with pytest.raises(InputError, match="protocol must be one of"):
        _model(protocol="choice")
