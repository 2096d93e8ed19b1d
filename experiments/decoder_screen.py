"""Screen CLVQ-VAE decoder variants on frozen codes (not part of the installed package):

    python experiments/decoder_screen.py RUNS/demo plain 4
    python experiments/decoder_screen.py RUNS/demo code_table 3

Takes a trained CLVQ-VAE (`methods/clvq` of the run), keeps its encoder and codebook fixed, and trains a FRESH
decoder of the same size on the fit's training split for a few epochs (Adam, the run's lr, weight decay and
batch size). After each epoch it prints the decoder's FVU of L_out on the training and validation split next
to the lookup of the same codes (each code's mean training target). Cheaper than a full training (the encoder
and the EMA codebook stay out of it), it asks one question: how fast can this decoder learn to map codes,
and can it beat the lookup of its own codes? Variants: plain (the transformer decoder without the code table), prenorm (pre-norm
layers and a final LayerNorm), nopos (no position encodings), nodrop (dropout 0), code_table (the
`decoder_code_table` option: a per-code output vector initialised to the code's mean target, transformer
output map starting at zero).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import numpy as np
    import torch
    from torch import nn

    from clvq_judge.core.activations import ActivationStore
    from clvq_judge.core.diagnose import code_sequences, fvu
    from clvq_judge.core.methods import ConceptMethod, LayerData
    from clvq_judge.core.methods.clvq import QuantizedDecoder, code_table_init, fitting_heads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder with a trained methods/clvq")
    parser.add_argument("variant", choices=["plain", "prenorm", "nopos", "nodrop", "code_table"])
    parser.add_argument("epochs", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a screen, run beside other jobs

    store = ActivationStore(f"{args.run}/activations")
    method = ConceptMethod.load(f"{args.run}/methods/clvq", device="cpu")
    model, cfg, dims = method.module.eval(), method.config, method.dims
    train, val = method.internal(LayerData(store, "train", dims.layer_in, dims.layer_out)).split(cfg.val_fraction, cfg.seed)
    k, dim = cfg.n_concepts, dims.d_in
    ff = cfg.decoder_ff or min(2048, 4 * dim)
    dropout = 0.0 if args.variant == "nodrop" else cfg.dropout
    torch.manual_seed(cfg.seed)
    decoder = QuantizedDecoder(dim, dims.d_out, cfg.decoder_layers, cfg.decoder_heads, ff, dropout,
                               dims.model_kind == "decoder", k if args.variant == "code_table" else None)
    if args.variant == "prenorm":
        layer = nn.TransformerEncoderLayer(dim, fitting_heads(dim, cfg.decoder_heads), ff, dropout, batch_first=True,
                                           norm_first=True)
        decoder.layers = nn.TransformerEncoder(layer, cfg.decoder_layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
    decoder.target_mean.copy_(model.decoder.target_mean)
    decoder.target_scale.copy_(model.decoder.target_scale)
    positions = args.variant != "nopos"

    def batches(data, rng=None):
        with torch.no_grad():
            return [(code_sequences(model, b), b) for b in data.batches(cfg.batch_sentences, rng, "cpu")]

    def run(codes, b):
        q = model.quantizer.codebook[codes] * b.mask[..., None]
        return decoder(q, b.mask, b.positions if positions else None, codes)

    fixed_train, fixed_val = batches(train), batches(val)
    y = torch.cat([b.y[b.mask] for _, b in fixed_train])
    c = torch.cat([codes[b.mask] for codes, b in fixed_train])
    counts = torch.bincount(c, minlength=k).double().clamp_min(1)
    code_mean = torch.zeros(k, y.shape[1], dtype=torch.float64).index_add_(0, c, y.double()) / counts[:, None]
    if decoder.code_table is not None:
        with torch.no_grad():
            decoder.code_table.weight.copy_(code_table_init(c, y, k, decoder.target_mean, decoder.target_scale))

    def score(fixed):
        decoder.eval()
        ys, preds, cs = [], [], []
        with torch.no_grad():
            for codes, b in fixed:
                preds.append(run(codes, b)[b.mask])
                ys.append(b.y[b.mask])
                cs.append(codes[b.mask])
        target, codes = torch.cat(ys), torch.cat(cs)
        back = method.output_to_model
        return (f"decoder {fvu(back(torch.cat(preds)), back(target)):.4f} "
                f"lookup {fvu(back(code_mean[codes].float()), back(target)):.4f}")

    print(f"{args.variant} epoch 0: train {score(fixed_train)} | val {score(fixed_val)}", flush=True)
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for epoch in range(args.epochs):
        for codes, b in batches(train, np.random.default_rng([cfg.seed, epoch])):
            decoder.train()
            loss = torch.mean((run(codes, b)[b.mask] - b.y[b.mask]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"{args.variant} epoch {epoch + 1}: train {score(fixed_train)} | val {score(fixed_val)}", flush=True)


if __name__ == "__main__":
    main()
