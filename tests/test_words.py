import numpy as np
import pytest
import torch

from clvq_judge.core.encode import encode_batch, start_token, word_rows
from clvq_judge.core.models import load_tokenizer
from clvq_judge.core.words import aggregate, aggregate_scores, split_words


def test_split_words_spans():
    words, starts, ends = split_words("The plot wasn't dull, far too long!")
    assert words == ["The", "plot", "wasn't", "dull", ",", "far", "too", "long", "!"]
    text = "The plot wasn't dull, far too long!"
    assert [text[s:e] for s, e in zip(starts, ends)] == words


@pytest.mark.parametrize("model", ["minilm", "gemma-270m"])
def test_pieces_align_to_words_by_offsets(model):
    tok = load_tokenizer(model)
    texts = ["Unbelievably boring screenplay , honestly.", "Short one"]
    batch = encode_batch(tok, texts, max_length=64)
    assert start_token(tok) in ("[CLS]", "<bos>")
    for i, text in enumerate(texts):
        words = split_words(text)[0]
        assert batch.words[i] == [start_token(tok)] + words
        pw = batch.piece_word[i]
        assert pw[0] == 0  # sentence-start piece
        # Every word gets at least one piece, in order, and rebuilding each word from its pieces gives the word.
        assert sorted(set(pw[pw > 0])) == list(range(1, len(words) + 1))
        assert np.all(np.diff(pw[pw >= 0]) >= 0)
        ids = batch.input_ids[i].numpy()
        for pos, word in enumerate(words, start=1):
            text_of_pieces = tok.decode(ids[pw == pos]).replace(" ", "")
            assert text_of_pieces.lower() == word.lower()


def test_aggregate_last_first_mean_and_max():
    hidden = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    ids = torch.tensor([0, 1, 1, 1, 2, 2])
    assert aggregate(hidden, ids, 3, "last").tolist() == [[0, 1], [6, 7], [10, 11]]
    assert aggregate(hidden, ids, 3, "first").tolist() == [[0, 1], [2, 3], [8, 9]]
    assert aggregate(hidden, ids, 3, "mean").tolist() == [[0, 1], [4, 5], [9, 10]]
    scores = torch.tensor([0.5, -1.0, 3.0, 2.0, -4.0, -2.0])
    assert aggregate_scores(scores, ids, 3).tolist() == [0.5, 3.0, -2.0]


def test_word_rows_keeps_selected_positions_only():
    piece_word = np.array([[0, 1, 1, 2, 3, -1], [0, 1, 2, 2, -1, -1]])
    keep = np.array([[True, False, False, True], [True, True, False, False]])
    rows = word_rows(piece_word, keep)
    assert rows.sentence.tolist() == [0, 0, 1, 1]
    assert rows.position.tolist() == [0, 3, 0, 1]
    assert rows.row_of_piece.tolist() == [0, 1, 2, 3]
