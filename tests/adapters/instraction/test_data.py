"""InstrAct training examples and batches: the official loader's rules, worked by hand."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from instract_eval.adapters.core.tokenizers import clip_bpe
from instract_eval.adapters.instraction.data import (
    BatchOptions,
    Example,
    action_mask,
    candidate_mask,
    clip_request,
    collate,
    frame_spec,
    make_example,
    select_hard_negatives,
    text_example,
)
from instract_eval.data.instract_train import MaskCandidate, TrainingItem, read_training_annotations
from instract_eval.errors import InputError
from instract_eval.media import plan_request, resolve_window
from instract_eval.synth.render import read_mp4
from instract_eval.synth.training import write_instract_training

torch.set_num_threads(1)

CAPTION = "crack the egg and whisk it in the bowl"
SOT, EOT = 49406, 49407


def piece_ids(*pieces):
    """Ids of BPE pieces given by their text ('whis', 'k</w>'): the vocabulary, not the merge code."""
    return [clip_bpe().ids[p] for p in pieces]


def item(**fields):
    base = dict(caption=CAPTION, video_id="v", start=12.4, end=19.8, group=0)
    return TrainingItem(**{**base, **fields})


# ------------------------------------------------------------------------------------------------
# The clip window and the frames


@pytest.mark.parametrize("start, end, duration, window", [
    (10.0, 20.0, 60.0, (5.0, 25.0)),    # long enough: only the 5 s context on each side
    (10.0, 12.0, 60.0, (3.5, 18.5)),    # 2 s -> widened by 1.5 s on each side to [8.5, 13.5]
    (1.0, 2.0, 60.0, (0.0, 10.0)),      # widening would start at -1: starts at 0, keeps 5 s: [0, 5]
    (55.0, 58.0, 60.0, (49.0, 60.0)),   # widened to [54, 59], context cut at the end of the video
])
def test_the_window_is_widened_to_min_time_then_given_context_then_clamped(start, end, duration, window):
    request = clip_request(item(start=start, end=end), "/videos")
    assert request.path == "/videos/v.mp4" and (request.min_clip_s, request.context_s) == (5.0, 5.0)
    got = resolve_window(request.start, request.end, duration, context_s=request.context_s,
                         min_clip_s=request.min_clip_s)
    assert got == pytest.approx(window)


def test_frames_are_np_linspace_picks_of_the_5_fps_grid():
    """Window [3.5, 18.5]: 75 grid cells at 5 fps; linspace(0, 74, 16, dtype=int) keeps these."""
    request = clip_request(item(start=10.0, end=12.0), "/videos")
    plan = plan_request(request, frame_spec(), duration=60.0)
    picks = [0, 4, 9, 14, 19, 24, 29, 34, 39, 44, 49, 54, 59, 64, 69, 74]
    assert np.linspace(0, 74, 16, dtype=int).tolist() == picks
    expected = [3.5 + (k + 0.5) / 5 for k in picks]
    np.testing.assert_allclose(plan.times[0], expected, atol=2e-5)


# ------------------------------------------------------------------------------------------------
# Hard negatives


ORDER = tuple(f"order swap {i}" for i in range(3))
VERB = tuple(f"verb altered {i}" for i in range(15))


def test_all_order_swapped_come_first_then_a_sample_of_verb_altered_fills_12():
    rng, reference = random.Random(7), random.Random(7)
    got = select_hard_negatives(item(order_swapped_hn=ORDER, hard_negatives=VERB), rng)
    assert got[:3] == list(ORDER) and len(got) == 12
    assert got[3:] == reference.sample(list(VERB), 9)  # the official random.sample(verb, remaining)
    assert rng.getstate() == reference.getstate()


def test_verb_altered_that_fit_are_all_taken_in_order_without_a_draw():
    rng = random.Random(1)
    state = rng.getstate()
    got = select_hard_negatives(item(order_swapped_hn=ORDER, hard_negatives=VERB[:9]), rng)
    assert got == [*ORDER, *VERB[:9]] and rng.getstate() == state


@pytest.mark.parametrize("kind, expected", [
    ("order", list(ORDER)),
    ("verb", None),            # a sample of 12 of the 15 verb-altered negatives, no order swap
])
def test_hard_negative_type_selects_the_source(kind, expected):
    got = select_hard_negatives(item(order_swapped_hn=ORDER, hard_negatives=VERB), random.Random(0),
                                BatchOptions(hard_negative_type=kind))
    if expected is not None:
        assert got == expected
    else:
        assert len(got) == 12 and set(got) <= set(VERB)


def test_more_than_12_order_swaps_keep_the_first_12_only():
    many = tuple(f"swap {i}" for i in range(14))
    assert select_hard_negatives(item(order_swapped_hn=many, hard_negatives=VERB), random.Random(0)) == list(many[:12])


def test_text_rows_masks_and_verbs_follow_the_official_layout():
    verbs = ("crack egg", "whisk in bowl")
    example = item(order_swapped_hn=ORDER[:1], hard_negatives=VERB[:2], verb_phrases=verbs)
    text, text_mask, num_verbs, _ = text_example(example, random.Random(0))
    assert text.shape == (20, 32) and text.dtype == torch.long
    caption_row = [SOT, *piece_ids("crack</w>", "the</w>", "egg</w>", "and</w>", "whis", "k</w>", "it</w>", "in</w>",
                                   "the</w>", "bowl</w>"), EOT]
    assert text[0, :12].tolist() == caption_row and not text[0, 12:].any()
    assert text[13, :12].tolist() == caption_row  # the MAM input row
    assert text[1, :4].tolist() == [SOT, *piece_ids("order</w>", "swap</w>", "0</w>")]
    assert text[14, :5].tolist() == [SOT, *piece_ids("crack</w>", "egg</w>"), EOT, 0]
    assert not text[4:13].any() and not text[16:].any()  # padded negative and verb rows are zeros
    assert text_mask.shape == (13, 1) and text_mask.view(-1).tolist() == [0] * 4 + [1] * 9
    assert num_verbs == 2


def test_long_texts_keep_31_ids_and_end_with_eot_and_at_most_6_verbs_are_kept():
    long_caption = " ".join(["x"] * 40)
    example = item(caption=long_caption, verb_phrases=tuple(f"v{i}" for i in range(8)))
    text, _, num_verbs, _ = text_example(example, random.Random(0))
    assert text[0].tolist() == [SOT, *piece_ids("x</w>") * 30, EOT]
    assert num_verbs == 6 and text[19].any()


# ------------------------------------------------------------------------------------------------
# The action mask


def test_a_word_of_two_bpe_pieces_marks_both_positions():
    """'whisk' is 'whis' + 'k</w>'; the prefix 'crack the egg and ' is 4 ids, so after SOT: 5 and 6."""
    mask = candidate_mask(CAPTION, MaskCandidate("whisk", 18, 23))
    assert mask.nonzero().view(-1).tolist() == [5, 6]
    crack = candidate_mask(CAPTION, MaskCandidate("crack", 0, 5))
    assert crack.nonzero().view(-1).tolist() == [1]
    # 'rot' 'ate</w>' 'the</w>' 'red</w>' 'square</w>' 'antic' 'lock' 'wise</w>': both words span pieces
    rotate = "rotate the red square anticlockwise"
    assert candidate_mask(rotate, MaskCandidate("rotate", 0, 6)).nonzero().view(-1).tolist() == [1, 2]
    three = candidate_mask(rotate, MaskCandidate("anticlockwise", 22, 35))
    assert three.nonzero().view(-1).tolist() == [6, 7, 8]


def test_a_span_must_end_before_the_last_position_which_holds_eot_when_cut():
    fits = " ".join(["x"] * 28) + " whisk"      # whisk at 29-30; 28 + 2 + SOT + EOT = 32 ids: no cut
    word = len(fits) - 5
    assert candidate_mask(fits, MaskCandidate("whisk", word, word + 5)).nonzero().view(-1).tolist() == [29, 30]
    cut = " ".join(["x"] * 29) + " whisk"       # whisk at 30-31: position 31 becomes EOT
    word = len(cut) - 5
    assert not candidate_mask(cut, MaskCandidate("whisk", word, word + 5)).any()


def test_the_drawn_candidate_is_the_first_that_fits_after_a_shuffle():
    caption = " ".join(["x"] * 29) + " whisk"
    word = len(caption) - 5
    beyond, first = MaskCandidate("whisk", word, word + 5), MaskCandidate("x", 0, 1)
    for seed in range(6):  # whatever the shuffle order, the span past the cut is skipped
        assert action_mask(item(caption=caption, mam_mask_candidates=(beyond, first)),
                           random.Random(seed)).nonzero().view(-1).tolist() == [1]
    assert not action_mask(item(mam_mask_candidates=()), random.Random(0)).any()
    candidates = (MaskCandidate("crack", 0, 5), MaskCandidate("whisk", 18, 23), MaskCandidate("bowl", 34, 38))
    for seed in range(4):
        reference = random.Random(seed)
        order = list(candidates)
        reference.shuffle(order)
        expected = candidate_mask(CAPTION, order[0])
        assert torch.equal(action_mask(item(mam_mask_candidates=candidates), random.Random(seed)), expected)


def test_draws_come_from_the_rng_argument_only():
    example = item(order_swapped_hn=ORDER, hard_negatives=VERB,
                   mam_mask_candidates=(MaskCandidate("crack", 0, 5), MaskCandidate("whisk", 18, 23)))
    random.seed(0)
    first = text_example(example, random.Random(11))
    random.seed(99)
    second = text_example(example, random.Random(11))
    assert all(torch.equal(a, b) if torch.is_tensor(a) else a == b for a, b in zip(first, second))


# ------------------------------------------------------------------------------------------------
# Examples from real files, and the batch


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_instract_training(tmp_path_factory.mktemp("train") / "split", seed=0, size="tiny")


OPTIONS = BatchOptions(size=32)  # the synthetic videos are 32 x 32


def test_make_example_decodes_the_official_frames_in_c_t_h_w(split):
    items = read_training_annotations(split.annotations)
    example = make_example(items[0], random.Random(0), video_root=split.video_root, options=OPTIONS)
    assert example.video.shape == (3, 16, 32, 32) and example.video.dtype == torch.float32
    # Independently: every source frame, the frame shown at each planned time, CLIP-normalised.
    frames, fps = read_mp4(split.video_root / f"{items[0].video_id}.mp4")
    plan = plan_request(clip_request(items[0], split.video_root, OPTIONS), frame_spec(OPTIONS), len(frames) / fps)
    shown = np.minimum(np.floor(plan.times[0] * fps + 1e-6).astype(int), len(frames) - 1)
    pixels = torch.from_numpy(frames[shown]).permute(3, 0, 1, 2).float() / 255.0
    mean = torch.tensor(OPTIONS.mean).view(3, 1, 1, 1)
    std = torch.tensor(OPTIONS.std).view(3, 1, 1, 1)
    torch.testing.assert_close(example.video, (pixels - mean) / std, atol=1e-5, rtol=0)


def test_collate_stacks_the_official_batch_and_idx_groups_captions_of_one_video(split):
    items = read_training_annotations(split.annotations)
    video_ids = [i.video_id for i in items]
    shared = next(v for v in video_ids if video_ids.count(v) > 1)
    chosen = [i for i in items if i.video_id == shared][:2] + [i for i in items if i.video_id != shared][:2]
    rng = random.Random(0)
    batch = collate([make_example(i, rng, video_root=split.video_root, options=OPTIONS) for i in chosen])
    assert batch["video"].shape == (4, 3, 16, 32, 32)
    assert batch["text"].shape == (4, 20, 32) and batch["text_mask"].shape == (4, 13, 1)
    assert batch["action_mask"].shape == (4, 32) and batch["action_mask"].dtype == torch.bool
    assert batch["num_verbs"].tolist() == [len(i.verb_phrases) for i in chosen]
    first_seen = list(dict.fromkeys(video_ids))
    assert batch["idx"].tolist() == [first_seen.index(i.video_id) for i in chosen]
    assert batch["idx"][0] == batch["idx"][1] != batch["idx"][2]
    assert batch["action_mask"].any(dim=1).all()  # every synthetic caption has a fitting candidate


def test_a_missing_video_names_the_annotation_file_and_the_caption(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"stir the soup": {"video_id": "gone", "start": 1, "end": 4}}))
    (missing,) = read_training_annotations(path)
    with pytest.raises(InputError) as error:
        make_example(missing, random.Random(0), video_root=tmp_path)
    assert str(error.value).startswith(f"{path}: 'stir the soup'.video_id: video file not found: ")


def test_collate_refuses_an_empty_batch():
    with pytest.raises(ValueError):
        collate([])
    assert Example.__dataclass_fields__.keys() == {"idx", "video", "text", "text_mask", "num_verbs", "action_mask"}


# ------------------------------------------------------------------------------------------------
# Against the official loader's own batch (tests/data/official/instraction/README.md)

OFFICIAL = Path(__file__).resolve().parents[2] / "data" / "official" / "instraction"


def test_reader_examples_and_collate_reproduce_the_official_batch():
    """The official HT100MDataLoader + default_collate on annotations.json, in file order; its video
    was replaced by seeded noise there, so only the video is left out here."""
    from safetensors.torch import load_file

    golden = load_file(OFFICIAL / "golden.safetensors")
    items = read_training_annotations(OFFICIAL / "annotations.json")
    # No item has more negatives than slots nor more than one candidate: no draw changes the batch.
    rng = random.Random(0)
    examples = []
    for each in items:
        text, text_mask, num_verbs, mask = text_example(each, rng)
        examples.append(Example(idx=each.group, video=torch.zeros(3, 8, 32, 32), text=text, text_mask=text_mask,
                                num_verbs=num_verbs, action_mask=mask))
    batch = collate(examples)
    assert batch["idx"].tolist() == [0, 1, 0, 2]
    for name in ("idx", "text", "text_mask", "num_verbs"):
        assert batch[name].dtype == golden[name].dtype == torch.long, name
        assert torch.equal(batch[name], golden[name]), name
    assert torch.equal(batch["action_mask"].long(), golden["action_mask"])  # bool in the loader, stored as int64
    assert batch["action_mask"][0].nonzero().view(-1).tolist() == [8, 9]     # 'whisk': two pieces
    assert batch["text"][3, 0, 31].item() == EOT                             # item 3 is cut at 32
