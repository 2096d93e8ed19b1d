"""Does CLVQ-VAE's decoder beat the lookup of its own codes on its training words, its validation words and
the evaluation words? (not part of the installed package)

    python experiments/decoder_fit.py RUNS/demo

For the trained method of a run, on the fit's own training and validation split (frequency-filtered
sentences) and on every evaluation word (full sentences): the decoder's FVU of L_out, the FVU of each code's
mean training target (the lookup of its codes; means taken over the training split) and of the decoder's
own average output per code. All FVUs are in the model's space. If the decoder loses to the lookup on the
very words it was trained on, it under-fits the code -> target map; a shift between training and evaluation
sentences cannot explain that.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import torch

    from clvq_judge.core.activations import ActivationStore
    from clvq_judge.core.diagnose import code_sequences, decode, fvu
    from clvq_judge.core.methods import ConceptMethod, LayerData

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder with a trained methods/clvq")
    args = parser.parse_args()
    store = ActivationStore(f"{args.run}/activations")
    method = ConceptMethod.load(f"{args.run}/methods/clvq", device="cpu")
    model, cfg, dims = method.module.eval(), method.config, method.dims
    train, val = LayerData(store, "train", dims.layer_in, dims.layer_out).split(cfg.val_fraction, cfg.seed)
    evaluation = LayerData(store, "eval", dims.layer_in, dims.layer_out)
    k, back = cfg.n_concepts, method.output_to_model

    def outputs(data):
        ys, preds, codes = [], [], []
        with torch.no_grad():
            for b in method.internal(data).batches(64):
                c = code_sequences(model, b)
                preds.append(back(decode(model, c, b.mask, b.positions)[b.mask]))
                ys.append(back(b.y[b.mask]))
                codes.append(c[b.mask])
        return torch.cat(ys).double(), torch.cat(preds).double(), torch.cat(codes)

    fitted = outputs(train)
    y, pred, codes = fitted
    counts = torch.bincount(codes, minlength=k).double().clamp_min(1)[:, None]
    code_mean = torch.zeros(k, y.shape[1], dtype=torch.float64).index_add_(0, codes, y) / counts
    decoder_mean = torch.zeros(k, y.shape[1], dtype=torch.float64).index_add_(0, codes, pred) / counts
    for name, (y, pred, codes) in (("train", fitted), ("val", outputs(val)), ("eval", outputs(evaluation))):
        print(f"{name:5s} {len(y):6d} words: decoder {fvu(pred, y):.3f}, lookup of its codes {fvu(code_mean[codes], y):.3f}, "
              f"decoder's per-code average {fvu(decoder_mean[codes], y):.3f}")


if __name__ == "__main__":
    main()
