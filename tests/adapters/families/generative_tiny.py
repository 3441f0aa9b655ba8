"""Tiny offline tokenizers for the generative families' tests and tiny checkpoints.

A byte-level BPE without merges: every byte is one token (ids 0-255), followed by the special
tokens a family's chat template uses. It encodes any text, needs no download, and is saved with
``save_pretrained`` like a real tokenizer (``tokenizer.json``, ``tokenizer_config.json`` with the
chat template), so the families' loading path reads it as it reads a published one.
"""

from __future__ import annotations

from collections.abc import Sequence

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>")

# Qwen's ChatML, reduced to what the harness sends (one user turn of text and media items).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokenizer(specials: Sequence[str] = QWEN_SPECIALS, *, chat_template: str = CHATML_TEMPLATE,
                   eos: str = "<|im_end|>", pad: str = "<|endoftext|>", bos: str | None = None,
                   named: dict | None = None):
    """A `PreTrainedTokenizerFast` with one token per byte (ids 0-255) and ``specials`` from 256.

    ``named``: special tokens that are also attributes (InternVL's ``start_image_token`` ...), saved as
    ``extra_special_tokens`` the way the hub's tokenizer configs hold them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    vocab = {alphabet[byte]: byte for byte in range(256)}
    for offset, token in enumerate(specials):
        vocab[token] = 256 + offset
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    extra: dict | list = dict(named) if named else [t for t in specials if t not in (eos, pad, bos)]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, pad_token=pad, bos_token=bos,
                                        extra_special_tokens=extra)
    tokenizer.chat_template = chat_template
    return tokenizer

# Qwen2.5-VL's chat format: ChatML with the default system message the published template adds
# when the conversation has none (written here from the format, for the tiny checkpoints).
QWEN_VL_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    + CHATML_TEMPLATE
)


def tiny_qwen2_5_vl(directory, *, hidden: int = 32, layers: int = 2, seed: int = 0):
    """A tiny random Qwen2_5_VLForConditionalGeneration directory with the byte tokenizer (patch 8, merge 2)."""
    import json
    from pathlib import Path

    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    directory = Path(directory)
    tokenizer = byte_tokenizer(chat_template=QWEN_VL_TEMPLATE)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=hidden, intermediate_size=37, num_heads=4, out_hidden_size=hidden,
                           patch_size=8, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                           fullatt_block_indexes=[1], tokens_per_second=2),
        text_config=dict(vocab_size=272, hidden_size=hidden, intermediate_size=37, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "mrope_section": [1, 1, hidden // 8 - 2],
                                          "rope_theta": 1e4},
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                         bos_token_id=ids["<|endoftext|>"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    net = Qwen2_5_VLForConditionalGeneration(config)
    with torch.no_grad():  # random init of this size is nearly uniform; widen it so scores differ
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    net.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "patch_size": 8, "merge_size": 2, "temporal_patch_size": 2}, indent=1))
    return directory


INTERNVL_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")
# InternVL3-hf's chat format: ChatML whose video item is the <video> placeholder the processor expands
# (written here from the format, for the tiny checkpoints).
INTERNVL_TEMPLATE = CHATML_TEMPLATE.replace("<|vision_start|><|video_pad|><|vision_end|>", "<video>\n").replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<IMG_CONTEXT>\n")


def tiny_internvl3(directory, *, hidden: int = 32, layers: int = 2, seed: int = 0):
    """A tiny random InternVLForConditionalGeneration directory (image 32, patch 8: 4 tokens per frame)."""
    import json
    from pathlib import Path

    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    directory = Path(directory)
    tokenizer = byte_tokenizer(INTERNVL_SPECIALS, chat_template=INTERNVL_TEMPLATE,
                               named={"start_image_token": "<img>", "end_image_token": "</img>",
                                      "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in INTERNVL_SPECIALS}
    config = InternVLConfig(
        vision_config=dict(hidden_size=hidden, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=[32, 32], patch_size=[8, 8]),
        text_config=dict(model_type="qwen2", vocab_size=272, hidden_size=hidden, intermediate_size=37,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"]),
        image_token_id=ids["<IMG_CONTEXT>"], downsample_ratio=0.5, image_seq_length=4, tie_word_embeddings=False)
    torch.manual_seed(seed)
    net = InternVLForConditionalGeneration(config)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    net.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "video_preprocessor_config.json").write_text(json.dumps({
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3,
        "size": {"height": 32, "width": 32}, "video_processor_type": "InternVLVideoProcessor"}, indent=1))
    return directory


PLM_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                "<|image|>", "<|video|>")
# PerceptionLM's chat format (Llama 3 headers, media tokens before the text), written here from the format.
PLM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'video' %}<|video|>"
    "{% elif item['type'] == 'image' %}<|image|>{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def plm_tokenizer():
    return byte_tokenizer(PLM_SPECIALS, chat_template=PLM_TEMPLATE, eos="<|eot_id|>", pad="<|end_of_text|>",
                          bos="<|begin_of_text|>")


def plm_config(*, hidden: int = 32, layers: int = 2, vision_width: int = 64, vision_depth: int = 2):
    """A tiny PerceptionLMConfig in the published layout (a timm_wrapper PE tower): 56 px, patch 14, pooling 2."""
    from transformers import PerceptionLMConfig

    tokenizer = plm_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in PLM_SPECIALS}
    return PerceptionLMConfig(
        vision_config={"model_type": "timm_wrapper", "architecture": "vit_pe_core_large_patch14_336",
                       "do_pooling": False,
                       "model_args": {"embed_dim": vision_width, "num_heads": 4, "img_size": (56, 56),
                                      "depth": vision_depth, "global_pool": "", "use_post_transformer_norm": False,
                                      "init_values": 0.1, "ref_feat_shape": (4, 4)}},
        text_config=dict(model_type="llama", vocab_size=272, hidden_size=hidden, intermediate_size=37,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, eos_token_id=ids["<|eot_id|>"],
                         pad_token_id=ids["<|end_of_text|>"], bos_token_id=ids["<|begin_of_text|>"]),
        image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"], projector_pooling_ratio=2,
        vision_use_cls_token=True, tie_word_embeddings=False)
