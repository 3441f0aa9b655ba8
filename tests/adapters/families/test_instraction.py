"""InstrAction equals the official release (zyyangzy/InstrAct @ 8b02694) on its own tiny checkpoint.

``tests/data/official/instraction/`` (written by its ``make_golden.py`` with the official code, out of
tree) holds ``epoch0000.pth`` (the release's ``save_checkpoint`` after one real training step),
``golden.safetensors`` (the official batch and, in eval mode, every output and loss term, plus
isolated calls of the official DTW / hard-negative / VTC functions) and ``groups.json`` (the
official optimizer groups and fine-tuning policy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from instract_eval.adapters import create_model
from instract_eval.adapters.instraction.checkpoint import config_from_payload, read_instraction
from instract_eval.adapters.instraction.losses import dtw_alignment_loss, hard_negative_nce, soft_dtw_prob, vtc_loss
from instract_eval.adapters.instraction.network import official_parameter_order
from instract_eval.training.recipe import get_recipe

HERE = Path(__file__).resolve().parents[2] / "data" / "official" / "instraction"
CHECKPOINT = HERE / "epoch0000.pth"
LOSS_NAMES = {"total": "loss", "vtc": "loss_vtc", "hn": "loss_hard_negative", "dtw": "loss_dtw",
              "dtw_align": "loss_dtw_alignment", "dtw_order": "loss_dtw_order", "mam": "loss_mam"}

pytestmark = pytest.mark.skipif(not (HERE / "golden.safetensors").exists(), reason="no official golden data")
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    with safe_open(str(HERE / "golden.safetensors"), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        tensors["_captions"] = json.loads(handle.metadata()["captions"])
    return tensors


@pytest.fixture(scope="module")
def model():
    return create_model("instraction", checkpoint=str(CHECKPOINT))


@pytest.fixture(scope="module")
def trained():
    """The recipe's module from the official file, with the file's own settings, in eval mode."""
    recipe = get_recipe("instraction")
    config = config_from_payload(read_instraction(CHECKPOINT).payload)
    return recipe, config, recipe.build(config, CHECKPOINT).eval()


def assert_close(ours: torch.Tensor, official: torch.Tensor, *, tol: float = 1e-5) -> None:
    """Equal to float32 rounding: the joint attention sums its tokens in another order than the
    release's (frame-major vs patch-major), so the bound scales with the values' magnitude."""
    assert ours.shape == official.shape
    diff = (ours.float() - official.float()).abs().max().item()
    bound = tol * max(1.0, official.abs().max().item())
    assert diff <= bound, f"max abs difference {diff:.3g} > {bound:.3g}"


def assert_cosine(ours: torch.Tensor, official: torch.Tensor) -> None:
    cosine = F.cosine_similarity(ours.float().flatten(0, -2), official.float().flatten(0, -2), dim=-1)
    assert cosine.min().item() >= 0.9999, f"min cosine {cosine.min().item():.6f}"


def test_embeddings_equal_the_official_encode(model, golden):
    clips = golden["video"].transpose(1, 2)                    # the release's [B, 3, T, H, W] to [B, T, 3, H, W]
    video = model.encode_video(clips)
    assert_cosine(video, golden["encode_video"])
    assert_close(video, golden["encode_video"])
    tokens = model.encode_video_tokens(clips)
    assert_cosine(tokens, golden["action_tokens"])
    assert_close(tokens, golden["action_tokens"])
    # the harness gives strings: our tokenizer makes the official ids, and the text embedding follows
    ids = model.net.text_encoder.tokenize(golden["_captions"], "instraction")
    assert torch.equal(ids, golden["text"][:, 0])
    text = model.encode_text(golden["_captions"])
    assert_cosine(text, golden["encode_text"])
    assert_close(text, golden["encode_text"])
    assert model.frame_spec().num_frames == 8 and model.frame_spec().crop == 32


def test_backbone_features_and_teacher_equal_the_official(model, golden):
    net = model.net
    with torch.no_grad():
        global_features, feat_3d = net.vision(golden["video"].transpose(1, 2))
        assert_close(global_features, golden["vision_global"])
        assert_close(feat_3d, golden["vision_feat_3d"])
        text_global, text_tokens = net.text(golden["text"].reshape(-1, 32))
        assert_close(text_global.view(4, 20, -1), golden["text_global"])
        assert_close(text_tokens.view(4, 20, 32, -1)[:, 13], golden["mam_text_tokens"])
        teacher = net.teacher(feat_3d, text_global.view(4, 20, -1)[:, -6:], golden["num_verbs"])
        assert_close(teacher, golden["teacher_action"])
    assert net.temperature.item() == pytest.approx(golden["temperature"].item(), abs=0)
    assert torch.sigmoid(net.action_mix).item() == pytest.approx(golden["action_mix_sigmoid"].item(), rel=1e-6)


def test_every_loss_term_equals_the_official_forward(trained, golden):
    _, _, net = trained
    batch = {key: golden[key] for key in ("idx", "video", "text", "text_mask", "num_verbs")}
    batch["action_mask"] = golden["action_mask"].bool()
    with torch.no_grad():
        out = net(batch)
    assert set(out) == set(LOSS_NAMES)
    for ours, official in LOSS_NAMES.items():
        assert out[ours].item() == pytest.approx(golden[official].item(), rel=1e-4), ours


def test_the_loss_functions_equal_the_official_ones_in_isolation(golden):
    tokens, verbs, counts = golden["dtw_fixed_tokens"], golden["dtw_fixed_verbs"], golden["dtw_fixed_num_verbs"]
    assert soft_dtw_prob(tokens[0], verbs[0]).item() == pytest.approx(golden["dtw_fixed_cost_item0"].item(), rel=1e-6)
    reverse = soft_dtw_prob(tokens[1].flip(0), verbs[1, :2]).item()
    assert reverse == pytest.approx(golden["dtw_fixed_cost_item1_reversed"].item(), rel=1e-6)
    plain = dtw_alignment_loss(tokens, verbs, counts, margin=0.0, order_weight=1.0, scale=0.01)
    assert plain.total.item() == pytest.approx(golden["dtw_fixed_total"].item(), rel=1e-6)
    assert plain.order.item() == pytest.approx(golden["dtw_fixed_order"].item(), abs=1e-9)
    other = dtw_alignment_loss(tokens, verbs, counts, margin=0.5, order_weight=2.0, scale=1.0)
    assert other.total.item() == pytest.approx(golden["dtw_fixed_total_b"].item(), rel=1e-6)
    assert other.order.item() == pytest.approx(golden["dtw_fixed_order_b"].item(), rel=1e-6)

    video, text, mask = golden["hn_fixed_video"], golden["hn_fixed_text"], golden["hn_fixed_mask"]
    assert hard_negative_nce(video, text, mask).item() == pytest.approx(golden["hn_fixed_loss"].item(), rel=1e-6)
    weighted = hard_negative_nce(video, text, mask, temperature=0.1, beta=2.0).item()
    assert weighted == pytest.approx(golden["hn_fixed_loss_beta"].item(), rel=1e-6)

    vision, text, teacher, idx = (golden[f"vtc_fixed_{name}"] for name in ("vision", "text", "teacher", "idx"))
    assert vtc_loss(vision, text, None, 0.05).item() == pytest.approx(golden["vtc_fixed_loss_plain"].item(), rel=1e-6)
    assert vtc_loss(vision, text, idx, 0.05).item() == pytest.approx(golden["vtc_fixed_loss_idx"].item(), rel=1e-6)
    soft = vtc_loss(vision, text, idx, 0.05, alpha=0.3, teacher=teacher).item()
    assert soft == pytest.approx(golden["vtc_fixed_loss_distill"].item(), rel=1e-6)


def test_parameter_groups_and_finetuning_policy_equal_the_official(trained):
    recipe, config, net = trained
    document = json.loads((HERE / "groups.json").read_text())
    groups = recipe.parameter_groups(net, config)
    official = document["groups"]
    assert [group.name for group in groups] == [group["params"][0] for group in official]
    assert all(len(group["params"]) == 1 for group in official)
    for ours, theirs in zip(groups, official):
        assert ours.lr_scale == theirs["multiplier"], ours.name
        assert ours.weight_decay == (theirs["weight_decay"] > 0), ours.name
    # every parameter, in the release's named_parameters() order, trainable exactly where the release's is
    order = [name for name, _ in official_parameter_order(net)]
    assert order == list(document["requires_grad"])
    assert {name: p.requires_grad for name, p in net.named_parameters()} == document["requires_grad"]


def test_the_official_optimizer_state_loads_into_ours(trained):
    recipe, config, net = trained
    document = json.loads((HERE / "groups.json").read_text())
    payload = read_instraction(CHECKPOINT).payload
    assert recipe.accepts_checkpoint(payload)
    groups = recipe.parameter_groups(net, config)
    lr, decay = document["learning_rate"], document["weight_decay"]
    # the shared loop's construction (instract_eval.training.loop._optimizer) with the release's settings
    optimizer = torch.optim.AdamW([{"params": g.params, "lr": lr * g.lr_scale, "name": g.name,
                                    "weight_decay": decay if g.weight_decay else 0.0} for g in groups],
                                  lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=decay)
    optimizer.load_state_dict(payload["optimizer"])
    for group, theirs in zip(optimizer.param_groups, document["groups"]):
        (parameter,) = group["params"]
        state = optimizer.state[parameter]
        assert state["exp_avg"].shape == parameter.shape and state["exp_avg_sq"].shape == parameter.shape
        assert int(state["step"]) == 1
        assert group["lr"] == pytest.approx(theirs["lr_after_step"], rel=1e-12)
    # the moments belong to these parameters: a second step moves every trained one
    recipe.load_state(net, payload)
    before = [p.detach().clone() for g in groups for p in g.params]
    net.train()
    for p in net.parameters():
        p.grad = None
    batch_loss = sum((p.float() ** 2).sum() for g in groups for p in g.params)
    batch_loss.backward()
    optimizer.step()
    moved = [not torch.equal(b, p) for b, p in zip(before, (p for g in groups for p in g.params))]
    assert all(moved)
