"""The shared base of generative VLM adapters (`instract_eval.adapters.generative.scoring`).

On a tiny Qwen2 language model whose "video" is a few tokens derived from the pixels (so the base
is tested without any vision tower): the log-likelihood score equals a hand computation from the
model's logits (mean and sum, with and without the shared-prefix cache), the letter protocol
picks a planted answer, and the localizer keeps and counts unparsable answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from instract_eval.adapters.generative.scoring import GenerativeVLM, scoring_line
from instract_eval.adapters.protocols import (LOCALIZER, PAIR_SCORER, answers_in_text, capabilities_of,
                                              list_dependent_scores, scoring_description)
from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

sys.path.insert(0, str(Path(__file__).parent))
from generative_tiny import byte_tokenizer  # noqa: E402

CAPTIONS = ["a person cuts an onion", "open the jar", "Someone's SLICING vegetables, quickly!!"]


class PixelTokens(GenerativeVLM):
    """A test family: the clip becomes 4 tokens (one per frame) between vision markers."""

    name = "pixel-tokens"

    def prompt_inputs(self, clip, question, fps=None):
        frames = ((clip.mean(dim=(1, 2, 3)) * 37).long().abs() % 200 + 20).tolist()
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}],
            tokenize=False, add_generation_prompt=True)
        before, after = text.split("<|video_pad|>")
        ids = self.text_ids(before) + frames + self.text_ids(after)
        ids = torch.tensor([ids], device=self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _net(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=272, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False)
    return Qwen2ForCausalLM(config).eval()


SPEC = FrameSpec(num_frames=4, sampling="uniform", size=16, crop=16)


def _model(**kwargs):
    return PixelTokens(_net(), byte_tokenizer(), spec=SPEC, checkpoint=None, **kwargs).eval()


def _clips(batch=2):
    return torch.randn(batch, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _by_hand(model, clip, caption):
    inputs = model.prompt_inputs(clip, model.prompt)
    prefix = inputs["input_ids"][0].tolist()
    tokens = model.text_ids(caption)
    ids = torch.tensor([prefix + tokens])
    with torch.no_grad():
        logits = model.net(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    values = [float(logp[len(prefix) - 1 + j, token]) for j, token in enumerate(tokens)]
    return sum(values), len(values)


@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("normalisation", ["mean", "sum"])
def test_log_likelihood_equals_a_hand_computation(reuse, normalisation):
    model = _model(normalisation=normalisation, reuse_prefix=reuse)
    clips = _clips()
    scores = model.score(clips, [CAPTIONS, CAPTIONS[::-1]])
    assert scores.shape == (2, 3)
    for row, captions in enumerate([CAPTIONS, CAPTIONS[::-1]]):
        for column, caption in enumerate(captions):
            total, count = _by_hand(model, clips[row], caption)
            expected = total / count if normalisation == "mean" else total
            assert float(scores[row, column]) == pytest.approx(expected, rel=1e-6, abs=1e-5)


def test_prefix_reuse_changes_nothing():
    clips = _clips(3)
    cached = _model(reuse_prefix=True).score(clips, [CAPTIONS] * 3)
    full = _model(reuse_prefix=False).score(clips, [CAPTIONS] * 3)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)
    # batch invariance: each clip scored alone gives its row
    alone = torch.cat([_model().score(clips[i:i + 1], [CAPTIONS]) for i in range(3)])
    torch.testing.assert_close(cached, alone, rtol=0, atol=1e-5)


def test_the_video_changes_the_score():
    model = _model()
    clips = _clips(2)
    scores = model.score(clips, [CAPTIONS] * 2)
    assert not torch.allclose(scores[0], scores[1])


def test_letter_protocol_picks_the_planted_answer():
    model = _model(protocol="letter")
    letter_c = model.text_ids("C")[0]
    bias = torch.zeros(model.net.config.vocab_size)
    bias[letter_c] = 30.0
    model.net.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    captions = CAPTIONS + ["the fourth option"]
    scores = model.score(_clips(2), [captions] * 2)
    assert scores.shape == (2, 4)
    assert scores.argmax(dim=1).tolist() == [2, 2]
    assert float(scores[0, 2]) > 0.99 and float(scores.sum(dim=1).max()) <= 1.0 + 1e-6
    # The prompt lists every option with its letter, so the scores depend on the whole list.
    text = model.letter_prompt_text(captions)
    assert "A. a person cuts an onion" in text and "D. the fourth option" in text


def test_letter_scores_are_the_probabilities_of_the_letters():
    model = _model(protocol="letter")
    clip = _clips(1)[0]
    inputs = model.prompt_inputs(clip, model.letter_prompt_text(CAPTIONS))
    with torch.no_grad():
        probabilities = torch.softmax(model.net(**inputs).logits[0, -1], dim=-1)
    expected = probabilities[[model.text_ids(letter)[0] for letter in "ABC"]]
    torch.testing.assert_close(model.letter_probabilities(clip, CAPTIONS), expected, rtol=0, atol=1e-7)


def test_flags_say_which_protocol():
    likelihood, letter = _model(), _model(protocol="letter", normalisation="sum")
    assert set(capabilities_of(likelihood)) == {PAIR_SCORER, LOCALIZER}
    assert answers_in_text(likelihood)
    assert not list_dependent_scores(likelihood) and list_dependent_scores(letter)
    assert scoring_description(likelihood) == scoring_line("likelihood", "mean")
    assert "mean token log-likelihood" in scoring_description(likelihood)
    assert "letter" in scoring_description(letter)
    assert _model(normalisation="sum").scoring.startswith("sum token log-likelihood")
    assert likelihood.weights_fingerprint() != letter.weights_fingerprint()


@pytest.mark.parametrize("args, message", [({"protocol": "letters"}, "protocol must be one of"),
                                           ({"normalisation": "max"}, "normalisation must be one of"),
                                           ({"max_new_tokens": 0}, "max_new_tokens must be a positive")])
def test_bad_arguments_are_one_line(args, message):
    with pytest.raises(InputError, match=message):
        _model(**args)


def test_too_many_options_are_refused():
    with pytest.raises(InputError, match="at most 26"):
        _model(protocol="letter").score(_clips(1), [[f"caption {i}" for i in range(27)]])


def test_answer_is_greedy_and_bounded():
    model = _model(max_new_tokens=5)
    clip = _clips(1)[0]
    first, second = model.answer(clip, "When?"), model.answer(clip, "When?")
    assert first == second
    assert len(first) <= 5  # one character at most per byte token (invalid UTF-8 decodes to one U+FFFD)
    assert model.decoding == "greedy, max_new_tokens=5"


def test_localize_keeps_and_counts_unparsable_answers(monkeypatch, tmp_path):
    from instract_eval.adapters.generative import scoring

    model = _model()
    answers = iter(["from 1 to 2.5 seconds", "I do not know.", "0:01 - 0:03 and 4-5s"])
    asked = []

    def answer(clip, question, fps):
        asked.append((question, fps))
        return next(answers)

    monkeypatch.setattr(model, "answer", answer)

    class Plan:
        duration = 6.0

    class Decoded:
        frames = torch.zeros(1, 4, 16, 16, 3, dtype=torch.uint8)
        plan = Plan()

    monkeypatch.setattr("instract_eval.media.clips.decode_clip_frames", lambda request, spec: Decoded())
    assert scoring  # the module under test
    segments = model.localize(str(tmp_path / "v.mp4"), ["cut", "open", "pour"], {"cut": "cutting with a knife"})
    assert [(s.label, s.start, s.end) for s in segments] == [("cut", 1.0, 2.5), ("pour", 1.0, 3.0),
                                                              ("pour", 4.0, 5.0)]
    assert model.answer_counts() == {"answers": 3, "parsed": 2, "unparsable": 1}
    assert [entry["answer"] for entry in model.answer_log][1] == "I do not know."
    assert 'It is described as: cutting with a knife' in model.localize_question("cut", "cutting with a knife")
    # The frames span the whole 6 s video: the model is told its length and the frames' real rate.
    assert all(question.startswith("The video is 6.0 seconds long.") for question, _ in asked)
    assert [fps for _, fps in asked] == [4 / 6.0] * 3


def test_the_localization_engine_counts_parsed_and_unparsable_answers(world, monkeypatch):
    from instract_eval.encoding import Encoder
    from instract_eval.tasks import load_registry, require_data
    from instract_eval.tasks.localization import evaluate_localization, localization_task

    spec = load_registry([world / "tasks.yaml"]).tasks["synth-tal"]
    task = localization_task(spec, require_data(spec, environ={}))
    model = _model(max_new_tokens=4)
    first = task.class_names[0]
    monkeypatch.setattr(model, "answer", lambda clip, question, fps: "from 0.5 to 1.5 seconds"
                        if f'"{first}"' in question else "no idea")
    result = evaluate_localization(Encoder(model), task, limit=2)
    classes = len(task.class_names)
    assert result["answers"] == {"questions": 2 * classes, "parsed": 2, "unparsable": 2 * classes - 2}
    assert result["decoding"] == "greedy, max_new_tokens=4"
    assert result["hallucination"] is not None
    sample = result["samples"][0]
    assert len(sample["answers"]) == classes and sample["answers"][0]["answer"] == "from 0.5 to 1.5 seconds"
    assert [row["parsed"] for row in sample["answers"]].count(True) == 1
    assert sample["segments"]  # the parsed answer's segment is a prediction; the others are empty ones


@pytest.mark.parametrize("reuse", [True, False])
def test_captions_in_chunks_score_the_same(reuse):
    clips = _clips(2)
    captions = CAPTIONS + ["a fourth caption", "and a fifth, longer than the others by a few words"]
    whole = _model(reuse_prefix=reuse).score(clips, [captions] * 2)
    for batch in (1, 2):
        chunked = _model(reuse_prefix=reuse, caption_batch=batch).score(clips, [captions] * 2)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="caption_batch must be a positive"):
        _model(caption_batch=0)
