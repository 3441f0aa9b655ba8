"""What adapter families share, written once.

- `checkpoints`: one safe loader for every on-disk format, wrapper keys, remap tables, a strict key report;
- `hub`: a card's weight tags resolved to local files (download when online, one line when not);
- `hf`: Hugging Face ``save_pretrained`` directories read offline, with the same strict report;
- `tokenizers`: OpenAI CLIP's BPE, shipped with its vocabulary;
- `clip_net`: our OpenAI CLIP port and its building blocks (text tower, residual blocks, frame pooling);
- `shapes`: sizes read from tensor shapes (blocks, heads, grids) with one-line errors;
- `base`: the `TorchAdapter` base class (frame spec, weights fingerprint, device, similarity).
"""
