import numpy as np
from synthetic_store import write_synthetic_store

from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.concepts import concept_lookup_fvu


def test_lookup_fvu_rewards_informative_concepts(tmp_path):
    store = ActivationStore(write_synthetic_store(tmp_path / "s", layers=(1, 2), hidden=8, vocab=10, seed=1))
    # In the synthetic cache L_in is (nearly) a function of the word, so word identity is a perfect concept.
    words_train = store.tokens("train")["word"].to_numpy()
    words_eval = store.tokens("eval")["word"].to_numpy()
    vocab = {w: i for i, w in enumerate(sorted(set(words_train) | set(words_eval)))}
    by_word = concept_lookup_fvu(store, np.array([vocab[w] for w in words_train]),
                                 np.array([vocab[w] for w in words_eval]), len(vocab), 1)
    rng = np.random.default_rng(0)
    random = concept_lookup_fvu(store, rng.integers(0, len(vocab), len(words_train)),
                                rng.integers(0, len(vocab), len(words_eval)), len(vocab), 1)
    one = concept_lookup_fvu(store, np.zeros(len(words_train), dtype=np.int64), np.zeros(len(words_eval), dtype=np.int64), 1, 1)
    assert by_word < 0.05
    assert random > 0.9 and 0.95 < one < 1.1  # a single concept predicts the training mean: FVU ~1
