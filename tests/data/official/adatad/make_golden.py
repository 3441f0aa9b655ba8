"""Golden data for ``adatad``'s reading of official OpenTAD AdaTAD checkpoints (see README.md).

Run out of tree with OpenTAD's torch-only modules importable (``--official DIR``: a directory
holding ``opentad/models/{bricks,projections,necks,dense_heads}`` from sming256/OpenTAD at 3dd7b03
and a ``builder.py`` whose registries are plain decorators, since mmengine is not installed):

    python tests/data/official/adatad/make_golden.py --official /work/ref/opentad_head
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WIDTH, DEPTH, PATCH, TUBELET, GRID, ADAPTER = 32, 2, 16, 2, 2, 8
EMBED, CLASSES, LENGTH = 16, 3, 32


def sinusoid(positions: int, channels: int) -> torch.Tensor:
    """The fixed position table VideoMAE registers as a buffer (sin on even, cos on odd channels)."""
    import numpy as np

    table = np.arange(positions)[:, None] / np.power(10000, 2 * (np.arange(channels) // 2) / channels)
    table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32)[None]


def vit_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random VideoMAE in OpenTAD's names (mmaction2 ViT + adapters), as BackboneWrapper nests it."""
    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    prefix = "module.backbone.model.backbone."
    state = {prefix + "patch_embed.projection.weight": rand(WIDTH, 3, TUBELET, PATCH, PATCH),
             prefix + "patch_embed.projection.bias": rand(WIDTH),
             prefix + "pos_embed": sinusoid(GRID * GRID * 16 // TUBELET, WIDTH),
             prefix + "fc_norm.weight": torch.ones(WIDTH), prefix + "fc_norm.bias": torch.zeros(WIDTH)}
    for i in range(DEPTH):
        block = f"{prefix}blocks.{i}."
        state.update({block + "norm1.weight": 1 + rand(WIDTH), block + "norm1.bias": rand(WIDTH),
                      block + "attn.q_bias": rand(WIDTH), block + "attn.v_bias": rand(WIDTH),
                      block + "attn.qkv.weight": rand(3 * WIDTH, WIDTH), block + "attn.proj.weight": rand(WIDTH, WIDTH),
                      block + "attn.proj.bias": rand(WIDTH), block + "norm2.weight": 1 + rand(WIDTH),
                      block + "norm2.bias": rand(WIDTH), block + "mlp.layers.0.0.weight": rand(4 * WIDTH, WIDTH),
                      block + "mlp.layers.0.0.bias": rand(4 * WIDTH), block + "mlp.layers.1.weight": rand(WIDTH, 4 * WIDTH),
                      block + "mlp.layers.1.bias": rand(WIDTH),
                      block + "adapter.down_proj.weight": rand(ADAPTER, WIDTH), block + "adapter.down_proj.bias": rand(ADAPTER),
                      block + "adapter.dwconv.weight": rand(ADAPTER, 1, 3), block + "adapter.dwconv.bias": rand(ADAPTER),
                      block + "adapter.conv.weight": rand(ADAPTER, ADAPTER, 1), block + "adapter.conv.bias": rand(ADAPTER),
                      block + "adapter.up_proj.weight": rand(WIDTH, ADAPTER), block + "adapter.up_proj.bias": rand(WIDTH),
                      block + "adapter.gamma": 1 + rand(1)})
    return state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", required=True, type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    from opentad.models.dense_heads.actionformer_head import ActionFormerHead
    from opentad.models.necks.fpn import FPNIdentity
    from opentad.models.projections.actionformer_proj import Conv1DTransformerProj

    torch.manual_seed(0)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    # the AdaTAD THUMOS projection / neck / head at a tiny width (global attention, drop path 0.1)
    projection = Conv1DTransformerProj(WIDTH, EMBED, arch=(2, 1, 2), conv_cfg=dict(kernel_size=3, proj_pdrop=0.0),
                                       norm_cfg=dict(type="LN"), attn_cfg=dict(n_head=2, n_mha_win_size=-1),
                                       path_pdrop=0.1, max_seq_len=LENGTH)
    neck = FPNIdentity(EMBED, EMBED, num_levels=3)
    head = ActionFormerHead(CLASSES, EMBED, EMBED, num_convs=2,
                            prior_generator=dict(type="PointGenerator", strides=[1, 2, 4],
                                                 regression_range=[(0, 4), (4, 8), (8, 10000)]),
                            loss=types.SimpleNamespace(cls_loss=None, reg_loss=None))
    raw, ema = {}, {}
    for name, module in (("projection", projection), ("neck", neck), ("rpn_head", head)):
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        for key, value in module.state_dict().items():
            raw[f"module.{name}.{key}"] = value.clone()
    raw.update(vit_state(generator))
    for key, value in raw.items():
        moved = value.is_floating_point() and not key.endswith("pos_embed")
        ema[key] = value + 0.01 * torch.randn(value.shape, generator=generator) if moved else value
    # the detector's head outputs (forward_test) from the EMA weights, on a full and a padded window
    for name, module in (("projection", projection), ("neck", neck), ("rpn_head", head)):
        module.load_state_dict({k[len(f"module.{name}."):]: v for k, v in ema.items()
                                if k.startswith(f"module.{name}.")})
        module.eval()
    feats = torch.randn(2, WIDTH, LENGTH, generator=generator)
    masks = torch.arange(LENGTH)[None] < torch.tensor([LENGTH, 20])[:, None]
    with torch.no_grad():
        x, m = projection(feats, masks)
        x, m = neck(x, m)
        proposals, scores = head.forward_test(x, m)
    torch.save({"epoch": 3, "state_dict": raw, "state_dict_ema": ema, "optimizer": {}, "scheduler": {}},
               HERE / "opentad_tiny.pth")
    torch.save({"feats": feats, "masks": masks, "proposals_0": proposals[0], "proposals_1": proposals[1],
                "scores_0": scores[0], "scores_1": scores[1]}, HERE / "golden.pt")
    (HERE / "category_idx.txt").write_text("Jump\nThrow\nWave\n")


if __name__ == "__main__":
    main()
