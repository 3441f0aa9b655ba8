"""The original BERT tokenizer, offline: basic tokenization, then greedy longest-match WordPiece.

UniVL, Singularity and InternVideo2 read text through it (each official repository carries its own
copy of BERT's ``tokenization.py``); they differ only in how they frame the pieces into ids
(`BertWordPiece.encode` is UniVL's retrieval framing, ``[CLS]`` + pieces + ``[SEP]``; Singularity
and InternVideo2 add ``[CLS]`` only). The vocabulary is the model's ``vocab.txt``, given by the user
or fetched once (`BERT_VOCAB_URL`, bert-base-uncased's).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch

from instract_eval.errors import InputError

__all__ = ["BERT_VOCAB_URL", "BertWordPiece", "ClsOnlyWordPiece", "encode_for"]

BERT_VOCAB_URL = "https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt"
_NEVER_SPLIT = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")



def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(low <= cp <= high for low, high in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class BertWordPiece:
    """The original BERT tokenizer (UniVL's ``modules/tokenization.py``): basic tokenization, then
    greedy longest-match WordPiece; pieces not in the vocabulary become ``[UNK]``."""

    def __init__(self, vocabulary: Sequence[str], *, source: str | os.PathLike = ""):
        self.vocab: dict[str, int] = {}
        for index, token in enumerate(vocabulary):
            self.vocab[token] = index  # a repeated token keeps its last index, as load_vocab does
        self.source = str(source)
        for special in ("[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise InputError(f"vocabulary has no {special} token (not a BERT vocab.txt)", path=source,
                                 field="vocab")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> BertWordPiece:
        source = Path(path)
        if not source.is_file():
            raise InputError("vocabulary not found" if not source.exists() else "vocabulary is not a file",
                             path=source, field="vocab")
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"vocabulary is not a UTF-8 text file ({error})", path=source, field="vocab") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls([line.strip() for line in lines], source=source)

    def basic(self, text: str) -> list[str]:
        cleaned = []
        for char in text:
            if ord(char) in (0, 0xFFFD) or _is_control(char):
                continue
            cleaned.append(" " if _is_whitespace(char) else f" {char} " if _is_cjk(ord(char)) else char)
        pieces: list[str] = []
        for token in "".join(cleaned).split():
            if token in _NEVER_SPLIT:
                pieces.append(token)
                continue
            token = "".join(c for c in unicodedata.normalize("NFD", token.lower())
                            if unicodedata.category(c) != "Mn")
            word = ""
            for char in token:
                if _is_punctuation(char):
                    if word:
                        pieces.append(word)
                    pieces.append(char)
                    word = ""
                else:
                    word += char
            if word:
                pieces.append(word)
        return [piece for piece in " ".join(pieces).split()]

    def wordpiece(self, token: str) -> list[str]:
        if len(token) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(token):
            end = len(token)
            while start < end:
                piece = token[start:end] if start == 0 else "##" + token[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            else:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        return [piece for token in self.basic(text) for piece in self.wordpiece(token)]

    def encode(self, texts: Sequence[str], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The retrieval loader's framing: ``[CLS]`` + pieces cut to ``max_words - 2`` + ``[SEP]``, zero-padded."""
        ids = torch.zeros(len(texts), max_words, dtype=torch.long)
        mask = torch.zeros(len(texts), max_words, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"captions must be strings, got {type(text).__name__}", field="--model")
            tokens = ["[CLS]", *self.tokenize(text)][: max_words - 1] + ["[SEP]"]
            unk = self.vocab["[UNK]"]
            ids[row, : len(tokens)] = torch.tensor([self.vocab.get(t, unk) for t in tokens])
            mask[row, : len(tokens)] = 1
        return ids, mask


def encode_for(family: str, tokenizer: BertWordPiece, texts: Sequence[str], max_words: int,
               vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokenizer.encode``, refusing a vocabulary whose ids pass the checkpoint's word-embedding
    rows: such a vocab.txt belongs to another model, and its ids would index past the table."""
    ids, mask = tokenizer.encode(list(texts), max_words)
    if ids.numel() and int(ids.max()) >= vocab_size:
        raise InputError(f"{family}: the vocabulary has ids up to {int(ids.max())} but the checkpoint's word "
                         f"embedding {vocab_size} rows: it does not belong to this checkpoint",
                         path=tokenizer.source, field="vocab")
    return ids, mask


class ClsOnlyWordPiece(BertWordPiece):
    """The ``tokenization_bert.BertTokenizer`` that Singularity (under transformers 4.15) and
    InternVideo2 (under 4.28) call: the special tokens are split out first (exact, case-sensitive,
    also inside words), the rest is lower-cased basic + WordPiece; ids are ``[CLS]`` and the pieces,
    no ``[SEP]``, cut to ``max_words`` and padded with ``[PAD]``."""

    _split = re.compile("(" + "|".join(re.escape(token) for token in _NEVER_SPLIT) + ")")

    def tokenize(self, text: str) -> list[str]:
        pieces: list[str] = []
        for chunk in self._split.split(text):
            if chunk in _NEVER_SPLIT:
                pieces.append(chunk)
            elif chunk:
                pieces.extend(piece for token in self.basic(chunk.lower()) for piece in self.wordpiece(token))
        return pieces

    def encode(self, texts: Sequence[str], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[CLS]`` + pieces cut to ``max_words``, padded with ``[PAD]`` (``padding="max_length"``)."""
        pad = self.vocab.get("[PAD]", 0)
        ids = torch.full((len(texts), max_words), pad, dtype=torch.long)
        mask = torch.zeros(len(texts), max_words, dtype=torch.long)
        unk = self.vocab["[UNK]"]
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"captions must be strings, got {type(text).__name__}", field="--model")
            tokens = ["[CLS]", *self.tokenize(text)][:max_words]
            ids[row, : len(tokens)] = torch.tensor([self.vocab.get(t, unk) for t in tokens])
            mask[row, : len(tokens)] = 1
        return ids, mask
