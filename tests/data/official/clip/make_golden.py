"""Writes the tiny OpenAI-format CLIP checkpoints and the official outputs beside this file.

Run with the reference environment (official code out of tree):
    /work/refenv/bin/python tests/data/official/clip/make_golden.py --official /work/ref/CLIP
It builds openai/CLIP's own `CLIP` module at a tiny size, fills it with seeded random values,
saves it the way OpenAI publishes (a traced TorchScript archive of fp16 weights) and as a plain
fp16 state dict, then runs the official `clip.load` / `build_model`, `encode_image`,
`encode_text` and `clip.tokenize` on fixed frames and captions.
"""

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(name, types.ModuleType(name))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
CAPTIONS = [
    "A person cuts an onion.",
    "Someone's SLICING vegetables, quickly!!",
    "pour the water into the pot and stir it slowly with a wooden spoon until the sauce thickens, then "
    "add salt, pepper, garlic, onions, tomatoes, basil, oregano and a little olive oil before serving it hot "
    "to the guests who are waiting at the long table in the garden",
    "open the jar",
]


def randomise(model: torch.nn.Module, used_ids: list[int], generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
                parameter.copy_(1 + 0.2 * torch.randn(parameter.shape, generator=generator))
            elif name == "logit_scale":
                parameter.fill_(2.5)
            else:
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
        rows = torch.zeros_like(model.token_embedding.weight)
        rows[used_ids] = 0.2 * torch.randn(len(used_ids), rows.shape[1], generator=generator)
        model.token_embedding.weight.copy_(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", required=True, help="checkout of github.com/openai/CLIP")
    args = parser.parse_args()
    sys.path.insert(0, args.official)
    import clip
    from clip.model import CLIP, build_model, convert_weights

    commit = subprocess.run(["git", "-C", args.official, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    tokens = clip.tokenize(CAPTIONS, context_length=77, truncate=True)
    used = sorted(set(tokens.flatten().tolist()) - {0})
    generator = torch.Generator().manual_seed(0)
    # embed 32; vision width 64 (1 head), 2 layers, patch 8 on 32 px; text width 64, 2 layers, context 77.
    model = CLIP(32, 32, 2, 64, 8, 77, 49408, 64, 1, 2)
    randomise(model, used, generator)
    convert_weights(model)  # fp16, as OpenAI publishes
    model.eval()

    state = model.state_dict()
    for key, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        state[key] = torch.tensor(value)
    torch.save(state, HERE / "ViT-T-8-state.pt")

    example_image = torch.randn(1, 3, 32, 32).half()
    traced = torch.jit.trace(model, (example_image, tokens[:1]), check_trace=False)
    traced.save(str(HERE / "ViT-T-8.pt"))

    official, _ = clip.load(str(HERE / "ViT-T-8.pt"), device="cpu", jit=False)
    official = official.float().eval()
    reference = build_model(torch.load(HERE / "ViT-T-8-state.pt")).float().eval()

    frames = torch.randn(3, 4, 3, 32, 32, generator=generator)
    with torch.no_grad():
        outputs = {}
        for tag, net in (("", official), ("state_", reference)):
            per_frame = net.encode_image(frames.flatten(0, 1)).view(3, 4, -1)
            per_frame = per_frame / per_frame.norm(dim=-1, keepdim=True)
            videos = per_frame.mean(dim=1)
            videos = videos / videos.norm(dim=-1, keepdim=True)
            texts = net.encode_text(tokens)
            scale = net.logit_scale.exp()
            similarity = scale * videos @ (texts / texts.norm(dim=-1, keepdim=True)).T
            outputs.update({f"{tag}video_embeddings": videos, f"{tag}text_embeddings": texts,
                            f"{tag}similarity": similarity})
    save_file({"frames": frames.contiguous(), "tokens": tokens.long().contiguous(),
               **{k: v.float().contiguous() for k, v in outputs.items()}},
              str(HERE / "golden.safetensors"),
              metadata={"captions": json.dumps(CAPTIONS), "repository": "https://github.com/openai/CLIP",
                        "commit": commit, "score": "exp(logit_scale) * cosine (logit_scale 2.5)",
                        "normalized": "videos true, texts false",
                        "video": "per-frame encode_image, each L2-normalised, mean over frames, renormalised"})
    print("wrote", sorted(p.name for p in HERE.iterdir()))


if __name__ == "__main__":
    main()
