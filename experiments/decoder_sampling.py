"""How often does CLVQ-VAE's training-time sampling pick a code other than the nearest? (not part of the
installed package)

    python experiments/decoder_sampling.py RUNS/demo

Training draws each word's code from softmax(-d / T) over its `top_k` nearest codes; evaluation takes the
nearest. For the trained method of a run this prints, on the training and the evaluation words, the mean
probability the sampler gives the nearest code, the share of words where that probability is below 0.9, and
the median squared-distance gap between the nearest and the second nearest code (the gap T is compared to);
`--initialised` asks the same of the method as `fit` starts it.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import numpy as np
    import torch

    from clvq_judge.core.activations import ActivationStore
    from clvq_judge.core.diagnose import initial_method
    from clvq_judge.core.methods import ConceptMethod, LayerData
    from clvq_judge.core.methods.quantizer import squared_distances

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder with a trained methods/clvq")
    parser.add_argument("--initialised", action="store_true", help="the method as `fit` starts it, before training")
    args = parser.parse_args()
    store = ActivationStore(f"{args.run}/activations")
    method = ConceptMethod.load(f"{args.run}/methods/clvq", device="cpu")
    if args.initialised:
        method = initial_method(method, store, "cpu")
    model, cfg = method.module.eval(), method.config
    for selection in ("train", "eval"):
        data = method.internal(LayerData(store, selection, method.dims.layer_in))
        x = torch.from_numpy(np.concatenate(list(data.iter_chunks(data.layer_in))))
        with torch.no_grad():
            d = squared_distances(model.encoder(x), model.quantizer.codebook)
        near, _ = torch.topk(-d, min(cfg.top_k, d.shape[1]), dim=1)
        p = torch.softmax(near / cfg.temperature, dim=1)[:, 0]
        gap = (near[:, 0] - near[:, 1]) if near.shape[1] > 1 else torch.zeros(len(near))
        print(f"{selection}: {len(x)} words, top_k {cfg.top_k}, T {cfg.temperature}: P(nearest) mean {float(p.mean()):.4f}, "
              f"share with P(nearest) < 0.9 {float((p < 0.9).float().mean()):.4f}, median gap d2 - d1 "
              f"{float(gap.median()):.1f} (median d1 {float(-near[:, 0].median()):.1f})")


if __name__ == "__main__":
    main()
