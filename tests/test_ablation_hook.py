"""The model-level protocol's hook edits the real forward pass at L_in and nowhere else."""

import os

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from clvq_judge.core.ablation import (  # noqa: E402
    BlockReplay,
    ModelBatch,
    orthonormal_basis,
    predict_with_removal,
    remove_span,
)
from clvq_judge.core.hooks import capture, edit_hidden, find_blocks, run_until_stop  # noqa: E402

HIDDEN, LAYERS = 32, 3


def tiny_bert():
    config = transformers.BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=100)
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


class Identity(nn.Module):
    def forward(self, hidden):
        return hidden


class ReadoutClassifier(nn.Module):
    """Embeddings -> identity blocks -> logits = mean hidden state's first two coordinates.

    Every token's state is (2, 1, 0, ...), so the prediction is class 0; removing e0 flips it to 1 and
    removing e1 leaves it: which sentence got which direction is visible in the predictions.
    """

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, HIDDEN)
        with torch.no_grad():
            self.embed.weight.zero_()
            self.embed.weight[:, 0], self.embed.weight[:, 1] = 2.0, 1.0
        self.blocks = nn.ModuleList([Identity(), Identity()])

    def forward(self, input_ids, attention_mask):
        hidden = self.embed(input_ids)
        for block in self.blocks:
            hidden = block(hidden)
        w = attention_mask[..., None].float()
        return ((hidden * w).sum(1) / w.sum(1))[:, :2]


def inputs(batch=4, length=7):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 100, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, 5:] = 0
    return ids, mask


def hidden_states(model, ids, mask, edit_layer=None, basis=None):
    layers = list(range(LAYERS + 1))
    with torch.no_grad():
        if edit_layer is None:
            with capture(model, layers, stop=False) as got:
                model(input_ids=ids, attention_mask=mask)
        else:
            with edit_hidden(model, edit_layer, lambda h: remove_span(h, basis)), capture(model, layers, stop=False) as got:
                run_until_stop(lambda: model(input_ids=ids, attention_mask=mask))
    return [got[i] for i in layers]


@pytest.mark.parametrize("layer", [0, 2])
def test_hook_changes_the_forward_pass_only_from_l_in(layer):
    model = tiny_bert()
    ids, mask = inputs()
    basis = orthonormal_basis(torch.randn(4, 1, HIDDEN, generator=torch.Generator().manual_seed(3)))
    before = hidden_states(model, ids, mask)
    after = hidden_states(model, ids, mask, layer, basis)
    for i in range(layer):
        assert torch.equal(before[i], after[i]), f"layer {i} < L_in changed"
    # At L_in every token of sentence b has lost its own direction, and only that.
    u = basis[:, :, 0]
    assert torch.einsum("btd,bd->bt", after[layer], u).abs().max() < 1e-4
    expected = before[layer] - torch.einsum("btd,bd->bt", before[layer], u)[..., None] * u[:, None, :]
    assert torch.allclose(after[layer], expected, atol=1e-5)
    # ... and the layers above see the edited state.
    assert not torch.allclose(after[layer + 1], before[layer + 1], atol=1e-4)
    # The hook is gone after the block: a plain pass reproduces the original.
    assert torch.equal(hidden_states(model, ids, mask)[LAYERS], before[LAYERS])


def test_predict_with_removal_batches_and_per_sentence_directions():
    model = ReadoutClassifier()
    ids, mask = inputs(batch=6)
    # Two batches in a shuffled order: predictions must land on the right sentences.
    order = [[4, 0, 2], [1, 5, 3]]
    batches = [ModelBatch(np.array(o), ids[o], mask[o]) for o in order]
    assert predict_with_removal(model, batches, 1, None).tolist() == [0] * 6
    eye = torch.eye(HIDDEN)
    # Sentences 0, 2, 4 lose e0 (flip to class 1), sentences 1, 3, 5 lose e1 (stay class 0).
    basis = torch.stack([eye[:, [0]] if i % 2 == 0 else eye[:, [1]] for i in range(6)])
    for layer in (0, 1, 2):
        assert predict_with_removal(model, batches, layer, basis).tolist() == [1, 0, 1, 0, 1, 0]
    # A two-column basis with a padding column removes only its real direction.
    padded = torch.cat([basis, torch.zeros(6, HIDDEN, 1)], dim=2)
    assert predict_with_removal(model, batches, 1, padded).tolist() == [1, 0, 1, 0, 1, 0]


class BertClassifier(nn.Module):
    """A tiny BERT whose predictions vary across sentences and with the removed subspace."""

    def __init__(self):
        super().__init__()
        self.backbone = tiny_bert()
        torch.manual_seed(1)
        self.head = nn.Linear(HIDDEN, 5)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 1] - hidden[:, 0])


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_replaying_the_lower_blocks_gives_identical_predictions(layer):
    model = BertClassifier()
    ids, mask = inputs(batch=8, length=9)
    batches = [ModelBatch(np.arange(0, 5), ids[:5], mask[:5]), ModelBatch(np.arange(5, 8), ids[5:], mask[5:])]
    replay = BlockReplay(layer)
    plain = predict_with_removal(model, batches, layer, None, replay=replay)
    assert len(replay.outputs) == 2 and len(set(plain.tolist())) > 2
    changed = 0
    for seed in range(3):
        basis = orthonormal_basis(torch.randn(8, 8, HIDDEN, generator=torch.Generator().manual_seed(seed)))
        full = predict_with_removal(model, batches, layer, basis)
        np.testing.assert_array_equal(predict_with_removal(model, batches, layer, basis, replay=replay), full)
        changed += int((full != plain).sum())
    assert changed > 0  # the comparison above is not vacuous
    # The blocks run normally again afterwards.
    assert all("forward" not in vars(b) for b in find_blocks(model))
    np.testing.assert_array_equal(predict_with_removal(model, batches, layer, None), plain)


def test_replay_skips_the_lower_blocks():
    model = ReadoutClassifier()
    ids, mask = inputs(batch=4)
    batches = [ModelBatch(np.arange(4), ids, mask)]
    # A recorded state that favours class 1: replayed, it wins over what the blocks would compute (class 0).
    state = torch.zeros(4, ids.shape[1], HIDDEN)
    state[..., 1] = 5.0
    fake = BlockReplay(2, [state])
    assert predict_with_removal(model, batches, 2, torch.zeros(4, HIDDEN, 1), replay=fake).tolist() == [1] * 4
    assert predict_with_removal(model, batches, 2, torch.zeros(4, HIDDEN, 1)).tolist() == [0] * 4


class DecoderClassifier(nn.Module):
    """A tiny Gemma-3 decoder (causal, sliding window, KV cache on) read at the last real token."""

    def __init__(self):
        super().__init__()
        config = transformers.Gemma3TextConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                                               num_key_value_heads=1, head_dim=16, intermediate_size=64,
                                               vocab_size=100, sliding_window=4)
        torch.manual_seed(0)
        self.backbone = transformers.AutoModel.from_config(config).eval()
        torch.manual_seed(1)
        self.head = nn.Linear(HIDDEN, 5)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(1) - 1
        return self.head(hidden[torch.arange(hidden.shape[0]), last] - hidden[:, 0])


def test_replay_matches_the_full_pass_on_a_decoder():
    model = DecoderClassifier()
    ids, mask = inputs(batch=8, length=9)
    batches = [ModelBatch(np.arange(0, 5), ids[:5], mask[:5]), ModelBatch(np.arange(5, 8), ids[5:], mask[5:])]
    g = torch.Generator().manual_seed(2)
    changed = 0
    for layer in (1, 2, 3):
        replay = BlockReplay(layer)
        plain = predict_with_removal(model, batches, layer, None, replay=replay)
        basis = orthonormal_basis(torch.randn(8, 8, HIDDEN, generator=g))
        full = predict_with_removal(model, batches, layer, basis)
        np.testing.assert_array_equal(predict_with_removal(model, batches, layer, basis, replay=replay), full)
        changed += int((full != plain).sum())
    assert changed > 0
