"""``perception-lm`` against timm's PE tower and transformers' PerceptionLM, run out of tree.

``tests/data/official/perception_lm/make_golden.py`` built the tiny model with timm's Eva as the
vision tower (the published layout), saved it with ``save_pretrained`` and stored the tower's
tokens and the full model's logits. Here the same directory is loaded through ``create_model``
with the native PE tower: the tokens, logits and caption log-likelihood must match.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from instract_eval.adapters import create_model
from instract_eval.adapters.generative.perception_lm import native_pe_tower
from instract_eval.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
from generative_tiny import plm_config, plm_tokenizer  # noqa: E402

HERE = Path(__file__).resolve().parents[2] / "data" / "official" / "perception_lm"
TINY = HERE / "perception_lm-tiny"
CAPTIONS = ["a person cuts an onion", "open the jar", "Someone's SLICING vegetables, quickly!!"]


@pytest.fixture(scope="module")
def golden():
    return load_file(HERE / "golden.safetensors")


def _model(checkpoint=TINY, **kwargs):
    return create_model("perception-lm", checkpoint=str(checkpoint), frames=3, **kwargs)


def test_the_native_tower_equals_timms(golden):
    model = _model()
    with torch.no_grad():
        tokens = model.net.model.vision_tower(golden["frames"].flatten(0, 1)).last_hidden_state
    assert tokens.shape == golden["tower_tokens"].shape
    cosine = F.cosine_similarity(tokens.flatten(0, 1), golden["tower_tokens"].flatten(0, 1), dim=-1)
    assert float(cosine.min()) >= 0.9999
    torch.testing.assert_close(tokens, golden["tower_tokens"], rtol=0, atol=1e-5)


def test_logits_and_the_caption_score_equal_the_official_model(golden):
    model = _model(normalisation="sum", prompt="Describe the video.")
    ids = golden["input_ids"]
    with torch.no_grad():
        logits = model.net(input_ids=ids, attention_mask=torch.ones_like(ids),
                           pixel_values_videos=golden["frames"]).logits
    torch.testing.assert_close(logits, golden["logits"], rtol=0, atol=1e-5)
    inputs = model.prompt_inputs(golden["frames"][0], "Describe the video.")
    assert torch.equal(inputs["input_ids"][0], ids[0, :int(golden["prompt_length"])])
    for reuse in (True, False):
        model.reuse_prefix = reuse
        score = float(model.score(golden["frames"], [["a person cuts an onion"]])[0, 0])
        assert score == pytest.approx(float(golden["caption_logprob_sum"]), rel=1e-6, abs=1e-5)


def test_mean_is_the_sum_over_the_token_count_and_rows_are_batch_invariant():
    clips = torch.randn(3, 3, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    mean, total = _model(), _model(normalisation="sum")
    counts = torch.tensor([len(mean.text_ids(c)) for c in CAPTIONS], dtype=torch.float32)
    torch.testing.assert_close(mean.score(clips, [CAPTIONS] * 3), total.score(clips, [CAPTIONS] * 3) / counts,
                               rtol=1e-6, atol=1e-6)
    scores = mean.score(clips, [CAPTIONS] * 3)
    alone = torch.cat([mean.score(clips[i:i + 1], [CAPTIONS]) for i in range(3)])
    torch.testing.assert_close(scores, alone, rtol=0, atol=1e-5)
    assert not torch.allclose(scores[0], scores[1])


def test_letter_protocol_picks_the_planted_answer():
    model = _model(protocol="letter")
    bias = torch.zeros(model.net.config.text_config.vocab_size)
    bias[model.text_ids("C")[0]] = 30.0
    model.net.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    clips = torch.randn(2, 3, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    assert model.score(clips, [CAPTIONS] * 2).argmax(dim=1).tolist() == [2, 2]


def test_prompt_and_frames_are_the_processors():
    model = _model()
    inputs = model.prompt_inputs(torch.zeros(3, 3, 56, 56), "What happens?")
    text = model.tokenizer.decode(inputs["input_ids"][0])
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + "<|video|>" * 12
                    + "What happens?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert inputs["pixel_values_videos"].shape == (1, 3, 3, 56, 56)
    spec = model.frame_spec()
    assert (spec.size, spec.crop, spec.resize, spec.mean, spec.interpolation) == (56, None, "squash", (0.5,) * 3,
                                                                                 "bicubic")


def test_a_second_size_loads_through_create_model(tmp_path):
    from transformers import PerceptionLMForConditionalGeneration

    torch.manual_seed(3)
    with native_pe_tower():  # the same on-disk layout as timm's, written without timm
        net = PerceptionLMForConditionalGeneration(plm_config(hidden=48, layers=3, vision_width=96,
                                                              vision_depth=1))
    net.save_pretrained(tmp_path / "wide")
    plm_tokenizer().save_pretrained(tmp_path / "wide")
    keys = set(net.state_dict())
    assert "model.vision_tower.timm_model.blocks.0.gamma_1" in keys
    model = _model(tmp_path / "wide")
    assert model.net.config.text_config.hidden_size == 48
    assert model.net.model.vision_tower.timm_model.blocks[0].attn.qkv.in_features == 96
    clips = torch.randn(1, 3, 3, 56, 56)
    assert model.score(clips, [CAPTIONS]).shape == (1, 3)


def _copy(tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(TINY, target)
    return target


def test_bad_directories_are_one_line(tmp_path):
    from safetensors.torch import load_file as load, save_file

    target = _copy(tmp_path)
    weights = load(target / "model.safetensors")
    del weights[next(k for k in weights if k.endswith("blocks.1.gamma_2"))]
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="model.safetensors.*missing .*blocks.1.gamma_2") as error:
        _model(target)
    assert "\n" not in str(error.value)
    other = _copy(tmp_path / "b")
    config = json.loads((other / "config.json").read_text())
    config["vision_config"]["architecture"] = "vit_base_patch16_224"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="config.json.*vit_base_patch16_224.*PE towers"):
        _model(other)
    with pytest.raises(InputError, match="normalisation must be one of"):
        _model(normalisation="max")
