"""Tokenizers that work offline: OpenAI CLIP's byte-level BPE (its vocabulary ships in the package).

CLIP-derived models (CLIP, CLIP4Clip, ViCLIP, LaViLa, X-CLIP, BIKE, Text4Vis, ViFi-CLIP, PE-Core)
read text through the same byte-pair encoding: text is cleaned (``ftfy.fix_text``, HTML entities
unescaped twice, whitespace collapsed), lower-cased, split by CLIP's regular expression
(contractions, letter runs, single digits, other symbol runs), each piece's UTF-8 bytes mapped to
printable characters, and the pieces merged by rank. ``<|startoftext|>`` and ``<|endoftext|>`` are
the last two ids (49406, 49407 for the shipped vocabulary), so the end token has the highest id of
any row: OpenAI's text towers pool at ``argmax`` of the ids because of that.

Families differ only in how they frame and cut the ids (OpenAI's ``tokenize(truncate=True)``
keeps the first ``L - 1`` ids and ends with EOT; CLIP4Clip cuts the words to ``L - 2`` before adding
SOT and EOT), so the tokenizer returns plain id lists and `pad_rows` builds the tensor.

The vocabulary file (``bpe_simple_vocab_16e6.txt.gz``, 262,144 merges of which CLIP uses the first
48,894) is OpenAI's, MIT-licensed; its licence ships beside it.
"""

from __future__ import annotations

import functools
import gzip
import html
from collections.abc import Sequence
from importlib import resources

import torch

__all__ = ["ClipBPE", "clip_bpe", "pad_rows", "openai_tokenize"]

_VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"
_MERGES_USED = 49152 - 256 - 2  # the vocabulary is 256 bytes x 2 + merges + 2 specials = 49408
SOT, EOT = "<|startoftext|>", "<|endoftext|>"


@functools.lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """Each byte value to a printable character: printable Latin-1 stays itself, the rest shift past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {**{byte: chr(byte) for byte in printable}, **{byte: chr(256 + i) for i, byte in enumerate(others)}}


class ClipBPE:
    """OpenAI CLIP's tokenizer: ``encode(text)`` gives the BPE ids without the start and end tokens."""

    def __init__(self, vocabulary_path: str | None = None):
        import regex

        if vocabulary_path is None:
            data = (resources.files("instract_eval.adapters") / "resources" / _VOCABULARY).read_bytes()
        else:
            with open(vocabulary_path, "rb") as handle:
                data = handle.read()
        lines = gzip.decompress(data).decode("utf-8").split("\n")[1:_MERGES_USED + 1]
        merges = [tuple(line.split()) for line in lines]
        alphabet = list(_byte_alphabet().values())
        tokens = [*alphabet, *(symbol + "</w>" for symbol in alphabet), *("".join(m) for m in merges), SOT, EOT]
        self.ids = {token: index for index, token in enumerate(tokens)}
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.sot = self.ids[SOT]
        self.eot = self.ids[EOT]
        self.vocabulary_size = len(tokens)
        self._bytes = _byte_alphabet()
        self._pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE)
        self._whitespace = regex.compile(r"\s+")
        self._words: dict[str, tuple[str, ...]] = {SOT: (SOT,), EOT: (EOT,)}

    def clean(self, text: str) -> str:
        """ftfy repair, HTML entities unescaped twice, whitespace collapsed, lower case."""
        try:
            import ftfy
            text = ftfy.fix_text(text)
        except ImportError:  # ftfy is a dependency; without it only mojibake repair is lost
            pass
        text = html.unescape(html.unescape(text)).strip()
        return self._whitespace.sub(" ", text).strip().lower()

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` (no start or end token)."""
        ids: list[int] = []
        for piece in self._pattern.findall(self.clean(text)):
            mapped = "".join(self._bytes[byte] for byte in piece.encode("utf-8"))
            ids.extend(self.ids[symbol] for symbol in self._merge(mapped))
        return ids

    def _merge(self, piece: str) -> tuple[str, ...]:
        """The piece's symbols after applying merges lowest rank first (memoised per piece)."""
        cached = self._words.get(piece)
        if cached is not None:
            return cached
        symbols = [*piece[:-1], piece[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = {(symbols[i], symbols[i + 1]) for i in range(len(symbols) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        result = tuple(symbols)
        self._words[piece] = result
        return result


@functools.lru_cache(maxsize=4)
def clip_bpe(vocabulary_path: str | None = None) -> ClipBPE:
    """The shared tokenizer (building it reads 1.3 MB and takes about 0.2 s, so it is built once)."""
    return ClipBPE(vocabulary_path)


def pad_rows(rows: Sequence[Sequence[int]], length: int, *, pad: int = 0, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """``[N, length]`` ids, each row left-aligned and padded with ``pad``; rows must fit already."""
    out = torch.full((len(rows), length), pad, dtype=dtype)
    for index, row in enumerate(rows):
        if len(row) > length:
            raise ValueError(f"row {index} has {len(row)} ids for a context of {length}")
        out[index, :len(row)] = torch.tensor(list(row), dtype=dtype)
    return out


def openai_tokenize(texts: Sequence[str], context_length: int, tokenizer: ClipBPE | None = None) -> torch.Tensor:
    """OpenAI ``clip.tokenize(texts, context_length, truncate=True)``: SOT, ids, EOT; too long rows keep
    their first ``context_length - 1`` tokens and end with EOT."""
    bpe = tokenizer or clip_bpe()
    rows = []
    for text in texts:
        row = [bpe.sot, *bpe.encode(text), bpe.eot]
        if len(row) > context_length:
            row = [*row[:context_length - 1], bpe.eot]
        rows.append(row)
    return pad_rows(rows, context_length)
