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
                   eos: str = "<|im_end|>", pad: str = "<|endoftext|>", bos: str | None = None):
    """A `PreTrainedTokenizerFast` with one token per byte (ids 0-255) and ``specials`` from 256."""
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
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, pad_token=pad, bos_token=bos,
                                        additional_special_tokens=[t for t in specials if t not in (eos, pad, bos)])
    tokenizer.chat_template = chat_template
    return tokenizer
