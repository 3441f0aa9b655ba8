"""``internvl3`` on tiny ``save_pretrained`` directories, through ``create_model`` (the card's loading path).

The reference is transformers' ``InternVLForConditionalGeneration``: the scores equal a hand
computation from its logits on the full (prompt + caption) sequence, the letter protocol picks a
planted letter, the prompt is the processor's frame layout, and bad directories are refused in one line.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
from generative_tiny import tiny_internvl3  # noqa: E402

TINY = Path(__file__).resolve().parents[2] / "data" / "official" / "internvl3" / "internvl3-tiny"
CAPTIONS = ["a person cuts an onion", "open the jar", "Someone's SLICING vegetables, quickly!!"]


def _model(checkpoint=TINY, **kwargs):
    return create_model("internvl3", checkpoint=str(checkpoint), frames=4, **kwargs)


def _clips(batch=2, frames=4, side=32, seed=0):
    return torch.randn(batch, frames, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _by_hand(model, clip, caption):
    inputs = model.prompt_inputs(clip, model.prompt)
    tokens = model.text_ids(caption)
    prefix = inputs["input_ids"].shape[1]
    ids = torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)
    with torch.no_grad():
        logits = model.net(input_ids=ids, attention_mask=torch.ones_like(ids),
                           pixel_values=inputs["pixel_values"]).logits[0].double()
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
    bias[model.text_ids("A")[0]] = 30.0
    model.net.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    scores = model.score(_clips(2), [CAPTIONS] * 2)
    assert scores.argmax(dim=1).tolist() == [0, 0]
    assert model.list_dependent_scores and "letter" in model.scoring


def test_prompt_has_one_line_per_frame_as_the_processor_writes():
    model = _model()
    inputs = model.prompt_inputs(_clips(1)[0], "What happens?")
    text = model.tokenizer.decode(inputs["input_ids"][0])
    frames = "\n".join(f"Frame{i}: <img>{'<IMG_CONTEXT>' * 4}</img>" for i in range(1, 5))
    assert text == f"<|im_start|>user\n{frames}\nWhat happens?<|im_end|>\n<|im_start|>assistant\n"
    assert inputs["pixel_values"].shape == (4, 3, 32, 32)
    assert model.tokens_per_frame == 4
    spec = model.frame_spec()
    assert (spec.size, spec.crop, spec.resize, spec.mean) == (32, None, "squash", (0.485, 0.456, 0.406))


def test_a_second_size_loads_through_create_model(tmp_path):
    directory = tiny_internvl3(tmp_path / "wide", hidden=48, layers=3, seed=5)
    model = _model(directory)
    assert model.net.config.text_config.hidden_size == 48
    clips = _clips(1)
    total, count = _by_hand(model, clips[0], CAPTIONS[0])
    assert float(model.score(clips, [CAPTIONS[:1]])[0, 0]) == pytest.approx(total / count, rel=1e-6, abs=1e-5)


def test_greedy_localization_counts_its_answers(world):
    model = _model(max_new_tokens=8)
    video = next(path for path in sorted(world.rglob("*.mp4")))
    model.localize(str(video), ["cut"], None)
    assert model.answer_counts()["answers"] == 1


def _copy(tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(TINY, target)
    return target


def test_bad_directories_are_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    target = _copy(tmp_path)
    weights = load_file(target / "model.safetensors")
    del weights[next(k for k in weights if "multi_modal_projector" in k)]
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="model.safetensors.*missing .*multi_modal_projector") as error:
        _model(target)
    assert "\n" not in str(error.value)
    other = _copy(tmp_path / "b")
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "qwen2_5_vl"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="config.json.*not an InternVLForConditionalGeneration"):
        _model(other)
    third = _copy(tmp_path / "c")
    (third / "chat_template.jinja").unlink()
    with pytest.raises(InputError, match="ships no chat template"):
        _model(third)
