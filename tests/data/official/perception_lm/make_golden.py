"""Writes the tiny PerceptionLM directory and the reference outputs of timm's PE tower and transformers' PLM.

Run in a reference environment that has timm (never the product one), from this folder::

    python make_golden.py

It builds ``PerceptionLMForConditionalGeneration`` from a tiny config in the published layout
(a ``timm_wrapper`` vision tower, ``vit_pe_core_large_patch14_336`` shrunk: width 64, 2 blocks,
4 heads, 56 px, patch 14, ``ref_feat_shape`` 4x4, layer scale 0.1), so transformers builds the
tower with timm's own Eva; perturbs every weight; saves it with ``save_pretrained`` (the on-disk
format of ``facebook/Perception-LM-*``) with the byte tokenizer and chat template of
``tests/adapters/families/generative_tiny.py``; and stores, for fixed frames and token ids:
the tower's tokens, the full model's logits over a prompt with the video and a caption, and the
caption's summed log-probability.
"""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(name, types.ModuleType(name))  # torchvision's compiled ops are not needed

import json  # noqa: E402

import timm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import PerceptionLMForConditionalGeneration  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "adapters" / "families"))
from generative_tiny import plm_config, plm_tokenizer  # noqa: E402

FRAMES = 3
CAPTION = "a person cuts an onion"


def main() -> None:
    torch.manual_seed(20251202)
    net = PerceptionLMForConditionalGeneration(plm_config()).eval()
    assert type(net.model.vision_tower.timm_model).__name__ == "Eva"
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    target = HERE / "perception_lm-tiny"
    shutil.rmtree(target, ignore_errors=True)
    net.save_pretrained(target)
    tokenizer = plm_tokenizer()
    tokenizer.save_pretrained(target)
    (target / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3, "tile_size": 56}, indent=1))

    frames = torch.randn(1, FRAMES, 3, 56, 56, generator=torch.Generator().manual_seed(7))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}],
        tokenize=False, add_generation_prompt=True)
    before, after = text.split("<|video|>")
    video_id = net.config.video_token_id
    tokens_per_frame = (56 // 14 // 2) ** 2
    prompt = (tokenizer(before, add_special_tokens=False)["input_ids"] + [video_id] * tokens_per_frame * FRAMES
              + tokenizer(after, add_special_tokens=False)["input_ids"])
    caption = tokenizer(CAPTION, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + caption])
    with torch.no_grad():
        tower = net.model.vision_tower(frames.flatten(0, 1)).last_hidden_state
        logits = net(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=frames).logits
    logp = torch.log_softmax(logits[0].double(), dim=-1)
    total = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(caption))
    save_file({"frames": frames.contiguous(), "tower_tokens": tower.contiguous(), "input_ids": ids,
               "prompt_length": torch.tensor([len(prompt)]), "logits": logits.contiguous(),
               "caption_logprob_sum": torch.tensor([total], dtype=torch.float64)},
              str(HERE / "golden.safetensors"),
              metadata={"timm": timm.__version__, "transformers": transformers.__version__,
                        "torch": torch.__version__, "caption": CAPTION})
    print(f"wrote {target} and golden.safetensors; caption log-probability {total:.6f}")


if __name__ == "__main__":
    main()
