"""Tokenize sentences into padded batches that remember which piece belongs to which word."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .words import piece_to_word, split_words


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    piece_word: np.ndarray
    """[B, T] word position of each piece: 0 = sentence start, 1..n = words, -1 = none (special/padding)."""
    words: list[list[str]]
    """Per sentence: word strings by position (index 0 is the sentence-start token, "" if the tokenizer has none)."""

    def to(self, device) -> EncodedBatch:
        return EncodedBatch(self.input_ids.to(device), self.attention_mask.to(device), self.piece_word, self.words)


def start_token(tokenizer) -> str | None:
    """The sentence-start token the tokenizer prepends ([CLS], <s>, <bos>), or None."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(ids) > len(plain) and ids[0] in tokenizer.all_special_ids:
        return tokenizer.convert_ids_to_tokens(ids[0])
    return None


def encode_batch(tokenizer, texts: list[str], max_length: int = 128) -> EncodedBatch:
    enc = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="np",
    )
    offsets = enc["offset_mapping"]
    special = enc["special_tokens_mask"].astype(bool)
    mask = enc["attention_mask"].astype(bool)
    start = start_token(tokenizer)
    piece_word = np.full(enc["input_ids"].shape, -1, dtype=np.int64)
    words_out = []
    for i, text in enumerate(texts):
        words, starts, ends = split_words(text)
        has_start = start is not None and mask[i, 0] and special[i, 0]
        piece_word[i] = piece_to_word(offsets[i], special[i] | ~mask[i], starts, ends, 0 if has_start else None)
        words_out.append([start if has_start else ""] + words)
    return EncodedBatch(
        torch.from_numpy(enc["input_ids"]).long(),
        torch.from_numpy(enc["attention_mask"]).long(),
        piece_word,
        words_out,
    )


@dataclass
class WordRows:
    """Flat coordinates of the pieces of selected words, grouped into one output row per word."""

    batch_index: torch.Tensor
    piece_index: torch.Tensor
    row_of_piece: torch.Tensor
    """Output row of each piece (non-decreasing)."""
    sentence: np.ndarray
    """Per output row: sentence index within the batch."""
    position: np.ndarray
    """Per output row: word position (0 = sentence start)."""

    @property
    def n_rows(self) -> int:
        return len(self.position)


def word_rows(piece_word: np.ndarray, keep: np.ndarray | None = None) -> WordRows:
    """Select pieces of the words to output; `keep` [B, W] marks wanted word positions (None = all)."""
    n_pos = int(piece_word.max()) + 1 if piece_word.size else 1
    valid = piece_word >= 0
    if keep is not None:
        table = np.zeros((piece_word.shape[0], max(n_pos, keep.shape[1])), dtype=bool)
        table[:, : keep.shape[1]] = keep
        valid &= table[np.arange(piece_word.shape[0])[:, None], np.where(valid, piece_word, 0)]
    b, t = np.nonzero(valid)
    pos = piece_word[b, t]
    key = b * (n_pos + 1) + pos
    new = np.concatenate([[True], key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=bool)
    row = np.cumsum(new) - 1
    return WordRows(
        torch.from_numpy(b),
        torch.from_numpy(t),
        torch.from_numpy(row),
        b[new],
        pos[new],
    )
