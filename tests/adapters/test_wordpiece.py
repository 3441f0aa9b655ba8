"""The BERT WordPiece tokenizer's checks that the three BERT-text families share."""

from __future__ import annotations

import pytest

from instract_eval.adapters.core.wordpiece import BertWordPiece, ClsOnlyWordPiece, encode_for
from instract_eval.errors import InputError

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cut", "the", "onion", "##s"]


def test_a_vocabulary_past_the_checkpoints_embedding_rows_is_refused(tmp_path):
    """A vocab.txt of another model gives ids the word embedding has no row for: one line, not an
    index error deep in the forward pass; a caption whose ids fit still encodes."""
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertWordPiece.from_file(tmp_path / "vocab.txt")
    ids, mask = encode_for("univl", tokenizer, ["cut"], 6, vocab_size=6)  # [CLS] cut [SEP]: ids 2, 5, 3
    assert ids[0, :3].tolist() == [2, 5, 3] and mask[0].tolist() == [1, 1, 1, 0, 0, 0]
    with pytest.raises(InputError, match=r"vocab.txt: vocab: univl: the vocabulary has ids up to 8 but the "
                                         r"checkpoint's word embedding 6 rows"):
        encode_for("univl", tokenizer, ["cut the onions"], 8, vocab_size=6)


def test_the_cls_only_framing_keeps_special_tokens_whole_and_adds_no_sep():
    tokenizer = ClsOnlyWordPiece(VOCAB)
    ids, mask = encode_for("singularity-temporal", tokenizer, ["Cut[MASK] onions"], 6, vocab_size=len(VOCAB))
    assert ids[0].tolist() == [2, 5, 4, 7, 8, 0] and mask[0].tolist() == [1, 1, 1, 1, 1, 0]
