"""VTimeLLM: equality with the official code on tiny official-layout checkpoints, the answer format,
the localizer on real videos, and one-line refusals of bad files.

The golden data (tests/data/official/vtimellm/, see its README) was produced by huangb23/VTimeLLM's
own code run out of tree on these files: prompt, prompt ids, projected video tokens, the LLM's input
embeddings, logits and the greedy answer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from instract_eval.adapters import card_of, create_model
from instract_eval.adapters.generative.vtimellm import (VIDEO_TOKEN, grounding_question, merge_lora, official_segment,
                                                       prompt_ids, vicuna_v1_prompt, video_frame_indices)
from instract_eval.adapters.protocols import LOCALIZER, PAIR_SCORER, answers_in_text, capabilities_of, localizer_inputs
from instract_eval.cli import main
from instract_eval.errors import InputError

DATA = Path(__file__).resolve().parents[2] / "data" / "official" / "vtimellm"
MAIN = DATA / "main"
SECOND = DATA / "second"
SECOND_ARGS = {"base": str(SECOND / "vicuna-tiny"), "clip": str(MAIN / "clip" / "ViT-L-14.pt"), "stages": 2}
SIZES = {"main": {}, "second": SECOND_ARGS}


@pytest.fixture(scope="module")
def golden():
    with safe_open(str(DATA / "golden.safetensors"), "pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}, file.metadata()


@pytest.fixture(scope="module")
def models():
    return {name: create_model("vtimellm", checkpoint=str(DATA / name), size=32, max_new_tokens=12, **args).eval()
            for name, args in SIZES.items()}


def _close(ours: torch.Tensor, official: torch.Tensor, what: str, tolerance: float = 1e-5) -> None:
    """Cosine >= 0.9999 per row, and equal within ``tolerance`` of the largest official value."""
    cosine = F.cosine_similarity(ours.float(), official.float(), dim=-1).min().item()
    assert cosine >= 0.9999, (what, cosine)
    scale = official.abs().max().item()
    torch.testing.assert_close(ours.float(), official.float(), rtol=0, atol=tolerance * max(scale, 1.0))


@pytest.mark.parametrize("size", list(SIZES))
def test_prompt_ids_embeddings_logits_and_greedy_answer_equal_the_official_code(size, golden, models):
    tensors, meta = golden
    model = models[size]
    features = tensors[f"{size}.features"][None]
    _close(model.net.mm_projector(features[0]).detach(), tensors[f"{size}.projected"], "projected video tokens")
    prompts, answers = json.loads(meta[f"{size}.prompts"]), json.loads(meta[f"{size}.answers"])
    for index, question in enumerate(json.loads(meta["queries"])):
        assert vicuna_v1_prompt(question) == prompts[index]
        assert prompt_ids(model.tokenizer, prompts[index]) == tensors[f"{size}.input_ids_{index}"].tolist()
        inputs = model.inputs_for_features(features, question)
        assert int((inputs["input_ids"] == VIDEO_TOKEN).sum()) == 100
        with torch.no_grad():
            _close(model.net.embed(inputs["input_ids"], features)[0], tensors[f"{size}.inputs_embeds_{index}"],
                   "input embeddings")
            # Through 2-3 float32 layers of another attention kernel (transformers 5's SDPA, 4.31's eager
            # softmax): the logits differ by up to 2e-5 of their range.
            _close(model.net(**inputs).logits[0], tensors[f"{size}.logits_{index}"], "logits", 1e-4)
            output = model.net.generate(**inputs, max_new_tokens=int(meta["max_new_tokens"]), do_sample=False,
                                        num_beams=1, temperature=None, top_p=None, top_k=None, pad_token_id=0)
        assert output[0, inputs["input_ids"].shape[1]:].tolist() == tensors[f"{size}.answer_ids_{index}"].tolist()
        assert model.answer_features(features, question) == answers[index]


def test_the_lora_stages_and_the_projector_bias_of_stage_three_change_the_model(golden):
    tensors, _ = golden
    features = tensors["main.features"][None]
    one = create_model("vtimellm", checkpoint=str(MAIN), stages=1, size=32).eval()
    three = create_model("vtimellm", checkpoint=str(MAIN), size=32).eval()
    assert not torch.allclose(one.net.mm_projector.bias, three.net.mm_projector.bias)
    with torch.no_grad():
        inputs = three.inputs_for_features(features, "During which frames can we see x?")
        assert not torch.allclose(one.net(**inputs).logits, three.net(**inputs).logits, atol=1e-3)


def test_merge_lora_is_w_plus_alpha_over_r_b_a():
    from instract_eval.adapters.core.checkpoints import read_checkpoint

    stage = MAIN / "vtimellm-vicuna-v1-5-7b-stage2"
    config = json.loads((stage / "adapter_config.json").read_text())
    lora = read_checkpoint(stage / "adapter_model.bin").state_dict
    one = create_model("vtimellm", checkpoint=str(MAIN), stages=1, size=32)
    layer = one.net.llm.model.layers[1].mlp.down_proj
    before = layer.weight.detach().clone()
    assert merge_lora(one.net.llm, stage) == len(lora) // 2
    prefix = "base_model.model.model.layers.1.mlp.down_proj"
    expected = before + config["lora_alpha"] / config["r"] * lora[f"{prefix}.lora_B.weight"] @ lora[f"{prefix}.lora_A.weight"]
    torch.testing.assert_close(layer.weight.detach(), expected)


def test_grounding_question_and_answer_format():
    assert grounding_question("  Cut the onion. ") == "During which frames can we see cut the onion?"
    assert vicuna_v1_prompt("Q?").endswith(" USER: <video>\nQ? ASSISTANT:")
    assert official_segment("From 12 to 34.") == (0.12, 0.34)
    assert official_segment("between 05 and 99, then 40 to 60") == (0.05, 0.99)
    assert official_segment("from 5 to 34") is None          # the official pattern wants two digits
    assert official_segment("no time here") is None
    assert video_frame_indices(250).tolist()[:3] == [0, 2, 5] and video_frame_indices(250)[-1] == 249
    assert video_frame_indices(50).tolist().count(0) == 3   # a short video repeats frames, as linspace does


def test_answer_parse_all_reads_every_relative_segment(models):
    model = models["main"]
    assert model.segments_of("from 10 to 50", 20.0) == [(2.0, 10.0)]
    model.answer_parse = "all"
    try:
        assert model.segments_of("from 10 to 20 and from 30 to 40", 10.0) == [(1.0, 2.0), (3.0, 4.0)]
    finally:
        model.answer_parse = "official"


def test_card_and_flags(models):
    model = models["main"]
    assert set(capabilities_of(model)) == {LOCALIZER, PAIR_SCORER}
    assert answers_in_text(model) and localizer_inputs(model) == ("video",)
    card = card_of("vtimellm")
    assert "CC-BY-NC-ND" in card.code_licence and card.tags[0].source == "user"


def test_localize_reads_100_frames_once_and_parses_each_class(world, models, monkeypatch):
    model = models["main"]
    video = next((world / "videos").glob("*.mp4"))
    asked, seen = [], []
    monkeypatch.setattr(model, "video_features",
                        lambda frames: seen.append(tuple(frames.shape)) or torch.zeros(1, frames.shape[0], 768))
    answers = iter(["It happens from 10 to 50.", "I cannot tell."])
    monkeypatch.setattr(model, "answer_features", lambda features, question: asked.append(question) or next(answers))
    model.answer_log.clear()
    segments = model.localize(str(video), ["cut onion", "pour water"], {"pour water": "Pour the water."})
    assert seen == [(100, 3, 32, 32)]
    assert asked == ["During which frames can we see cut onion?", "During which frames can we see pour the water?"]
    from instract_eval.media import probe_video
    duration = probe_video(video).duration
    assert len(segments) == 1 and segments[0].label == "cut onion"
    assert segments[0].start == pytest.approx(0.1 * duration) and segments[0].end == pytest.approx(0.5 * duration)
    assert model.answer_counts() == {"answers": 2, "parsed": 1, "unparsable": 1}


@pytest.mark.slow
def test_runs_synth_tal_from_the_command_line(world, tmp_path, capsys):
    args = f"checkpoint={json.dumps(str(MAIN))},size=32,max_new_tokens=8"
    argv = ["run", "--model", "vtimellm", "--model-args", args, "--include", str(world / "tasks.yaml"),
            "--task", "synth-tal", "--output", str(tmp_path / "out"), "--no-site", "--cache-dir",
            str(tmp_path / "cache"), "--limit", "2"]
    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    _, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(next((tmp_path / "out").rglob("synth-tal.json")).read_text())
    assert 0.0 <= record["metrics"]["average_mAP"]["value"] <= 1.0


# -- bad files: one line naming the file ---------------------------------------------------------

def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "checkpoints"
    shutil.copytree(MAIN, target)
    return target


def test_a_missing_stage_folder_is_named_with_its_argument(tmp_path):
    root = _copy(tmp_path)
    shutil.rmtree(root / "vtimellm-vicuna-v1-5-7b-stage3")
    with pytest.raises(InputError, match=r"stage 3 LoRA folder not found.*stage3=PATH"):
        create_model("vtimellm", checkpoint=str(root))
    assert create_model("vtimellm", checkpoint=str(root), stages=2, size=32) is not None


def test_a_truncated_adapter_file_is_one_line(tmp_path):
    root = _copy(tmp_path)
    file = root / "vtimellm-vicuna-v1-5-7b-stage2" / "adapter_model.bin"
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(InputError) as caught:
        create_model("vtimellm", checkpoint=str(root))
    assert "adapter_model.bin" in str(caught.value) and "\n" not in str(caught.value)


def test_a_projector_or_adapter_of_another_base_is_refused(tmp_path):
    root = _copy(tmp_path)
    shutil.copy(SECOND / "vtimellm-tiny-stage1" / "mm_projector.bin",
                root / "vtimellm-vicuna-v1-5-7b-stage1" / "mm_projector.bin")
    with pytest.raises(InputError, match=r"mm_projector\.bin.*not a VTimeLLM stage-1 projector for a 32-wide LLM"):
        create_model("vtimellm", checkpoint=str(root))
    with pytest.raises(InputError, match=r"adapter_model\.bin.*LoRA of model\.layers\.0\.mlp\.down_proj gives \[48, 80\], the layer is \[32, 64\]"):
        create_model("vtimellm", checkpoint=str(MAIN), stage2=str(SECOND / "vtimellm-tiny-stage2"), stages=2)


def test_a_clip_of_another_width_is_refused(tmp_path):
    from instract_eval.adapters.core.checkpoints import read_checkpoint

    state = read_checkpoint(MAIN / "clip" / "ViT-L-14.pt").state_dict
    state["visual.proj"] = state["visual.proj"][:, :512].clone()
    state["text_projection"] = state["text_projection"][:, :512].clone()
    torch.save(state, tmp_path / "ViT-B-32.pt")
    with pytest.raises(InputError, match="512-d image embeddings"):
        create_model("vtimellm", checkpoint=str(MAIN), clip=str(tmp_path / "ViT-B-32.pt"))


def test_half_precision_runs_and_a_bad_dtype_is_refused(golden):
    tensors, _ = golden
    model = create_model("vtimellm", checkpoint=str(MAIN), size=32, max_new_tokens=4, dtype="bfloat16").eval()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert isinstance(model.answer_features(tensors["main.features"][None], "During which frames can we see x?"), str)
    scores = model.score(torch.randn(1, 100, 3, 32, 32), [["cut the onion", "stir"]])
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
    with pytest.raises(InputError, match="dtype must be one of float32, float16, bfloat16"):
        create_model("vtimellm", checkpoint=str(MAIN), dtype="int8")


def test_read_video_takes_the_frames_at_vtimellms_linspace_indices(world, models, monkeypatch):
    import instract_eval.media as media

    model = models["main"]
    video = next((world / "videos").glob("*.mp4"))
    real, shown = media.decode_frames, []
    monkeypatch.setattr(media, "decode_frames", lambda path, times: shown.append(real(path, times)) or shown[-1])
    frames, duration = model.read_video(str(video))
    info = media.probe_video(video)
    assert frames.shape == (100, 3, 32, 32) and duration == info.duration
    indices = (shown[0].source_times * info.average_fps).round().astype(int)
    assert indices.tolist() == video_frame_indices(info.num_frames).tolist()


def test_a_part_given_from_outside_the_folder_joins_the_cache_key_by_its_contents(tmp_path):
    """clip= (or base=, stage*=) from elsewhere: another file must not read what this one cached,
    and the same file moved elsewhere keeps its key."""
    import shutil

    shutil.copy(MAIN / "clip" / "ViT-L-14.pt", tmp_path / "ViT-L-14.pt")
    inside = create_model("vtimellm", checkpoint=str(MAIN), size=32)
    outside = create_model("vtimellm", checkpoint=str(MAIN), size=32, clip=str(tmp_path / "ViT-L-14.pt"))
    from instract_eval.adapters.core.checkpoints import read_checkpoint

    state = read_checkpoint(MAIN / "clip" / "ViT-L-14.pt").state_dict
    state["visual.proj"] = state["visual.proj"] + 1.0
    (tmp_path / "other").mkdir()
    torch.save(state, tmp_path / "other" / "ViT-L-14.pt")
    other = create_model("vtimellm", checkpoint=str(MAIN), size=32, clip=str(tmp_path / "other" / "ViT-L-14.pt"))
    assert other.weights_fingerprint() != outside.weights_fingerprint()
    (tmp_path / "moved").mkdir()
    shutil.copy(tmp_path / "ViT-L-14.pt", tmp_path / "moved" / "ViT-L-14.pt")
    moved = create_model("vtimellm", checkpoint=str(MAIN), size=32, clip=str(tmp_path / "moved" / "ViT-L-14.pt"))
    assert moved.weights_fingerprint() == outside.weights_fingerprint() != inside.weights_fingerprint()
