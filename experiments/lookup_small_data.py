"""Why a method's L_out lookup FVU can exceed 1 on a small run: decompose the `concepts` stage's figure.

    python experiments/lookup_small_data.py RUN_DIR [--methods clvq kmeans] [--out lookup.json]

For each trained method of RUN_DIR (read only) the lookup FVU of L_out (each evaluation word predicted by the
mean L_out vector of its concept's training words, as `concept_lookup_fvu`) is recomputed and set beside:

- the same figure with every word predicted by the mean of all training words (1 = the eval mean; above 1
  the training selection's mean is not the evaluation words' mean);
- the lookup with each concept's means taken separately over its sentence-start tokens and over its other
  words (a start token predicted by its concept's start tokens, a word by its concept's words);
- the lookup cross-fitted on the evaluation split (means from the other half of the evaluation sentences);
- the figure restricted to words whose type occurs in the training selection, to the others, and to starts;
- the composition of the training selection against the evaluation words (start share, unseen types) and
  the concept contributing most to the unexplained variance;
- with `--kmeans-statistics K`: plain k-means (scikit-learn, K clusters) on L_in in model space and
  standardised with statistics over the training selection, over its words without the sentence starts,
  and over the evaluation words: which statistics let the start tokens keep a cluster of their own.
Written for docs/method.md, "The lookup FVU above 1 on a tiny run" (docs/evidence/lookup_small_data.json).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.atomic import write_json
from clvq_judge.core.concepts import concept_lookup_fvu
from clvq_judge.core.methods import ConceptMethod, LayerData


def class_means(ids: np.ndarray, y: np.ndarray, k: int, fallback: np.ndarray) -> np.ndarray:
    counts = np.bincount(ids, minlength=k)
    sums = np.zeros((k, y.shape[1]))
    np.add.at(sums, ids, y)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], fallback)


def fvu(y: np.ndarray, pred: np.ndarray) -> float:
    return float(((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def analyse(run_dir: Path, methods: list[str], seed: int = 0) -> dict[str, Any]:
    store = ActivationStore(run_dir / "activations")
    top = store.layer_out
    y_train = np.concatenate(list(store.iter_chunks(top, "train"))).astype(np.float64)
    y_eval = np.concatenate(list(store.iter_chunks(top, "eval"))).astype(np.float64)
    tok_train, tok_eval = store.tokens("train"), store.tokens("eval")
    start_train, start_eval = tok_train["is_start"].to_numpy(), tok_eval["is_start"].to_numpy()
    seen = tok_eval["word"].str.lower().isin(set(tok_train["word"].str.lower())).to_numpy()
    sentences = tok_eval["sentence"].to_numpy()
    unique = np.unique(sentences)
    half = (np.random.default_rng(seed).permutation(len(unique)) % 2)[np.searchsorted(unique, sentences)]
    out: dict[str, Any] = {
        "run": run_dir.name, "train_words": len(y_train), "eval_words": len(y_eval),
        "start_share_train": float(start_train.mean()), "start_share_eval": float(start_eval.mean()),
        "eval_words_of_types_unseen_in_train": float((~seen & ~start_eval).mean()),
        "fvu_predicting_the_training_mean": fvu(y_eval, np.broadcast_to(y_train.mean(0), y_eval.shape)),
        "methods": {},
    }
    for name in methods:
        folder = run_dir / "methods" / name
        if not (folder / "config.json").exists():
            continue
        method = ConceptMethod.load(folder)
        k = method.n_concepts
        ids_train = method.assign(LayerData(store, "train", method.dims.layer_in))
        ids_eval = method.assign(LayerData(store, "eval", method.dims.layer_in))
        pred = class_means(ids_train, y_train, k, y_train.mean(0))[ids_eval]
        words = class_means(ids_train[~start_train], y_train[~start_train], k, y_train[~start_train].mean(0))
        starts = class_means(ids_train[start_train], y_train[start_train], k, y_train[start_train].mean(0))
        apart = np.where(start_eval[:, None], starts[ids_eval], words[ids_eval])
        cross = np.zeros_like(y_eval)
        for h in (0, 1):
            other = half != h
            cross[half == h] = class_means(ids_eval[other], y_eval[other], k, y_eval[other].mean(0))[ids_eval[half == h]]
        err = ((y_eval - pred) ** 2).sum(1)
        share = np.bincount(ids_eval, weights=err, minlength=k) / ((y_eval - y_eval.mean(0)) ** 2).sum()
        worst = int(share.argmax())
        members_train, members_eval = ids_train == worst, ids_eval == worst
        word = tok_eval["word"].to_numpy()
        out["methods"][name] = {
            "standardize": method.scaling is not None, "n_concepts": k,
            "lookup_fvu": concept_lookup_fvu(store, ids_train, ids_eval, k, top),
            "lookup_fvu_recomputed_here": fvu(y_eval, pred),
            "eval_concepts_empty_in_training": int(np.setdiff1d(np.unique(ids_eval), np.unique(ids_train)).size),
            "lookup_fvu_starts_and_words_apart": fvu(y_eval, apart),
            "lookup_fvu_cross_fitted_on_eval": fvu(y_eval, cross),
            "lookup_fvu_seen_type_words": fvu(y_eval[seen & ~start_eval], pred[seen & ~start_eval]),
            "lookup_fvu_unseen_type_words": fvu(y_eval[~seen & ~start_eval], pred[~seen & ~start_eval]),
            "lookup_fvu_starts": fvu(y_eval[start_eval], pred[start_eval]),
            "worst_concept": {
                "id": worst, "share_of_eval_variance_unexplained": float(share[worst]),
                "train_members": int(members_train.sum()), "train_start_share": float(start_train[members_train].mean()),
                "eval_members": int(members_eval.sum()), "eval_start_share": float(start_eval[members_eval].mean()),
                "eval_unseen_type_share": float((~seen & ~start_eval)[members_eval].mean()),
                "top_eval_words": Counter(word[members_eval]).most_common(6),
            },
        }
    return out


def kmeans_by_statistics(run_dir: Path, k: int, seed: int = 0) -> dict[str, Any]:
    from sklearn.cluster import KMeans

    from clvq_judge.core.methods.standardize import fit_stats

    store = ActivationStore(run_dir / "activations")
    def rows(layer: int, selection: str) -> np.ndarray:
        return np.concatenate(list(store.iter_chunks(layer, selection))).astype(np.float64)

    x_train, x_eval = rows(store.layer_in, "train"), rows(store.layer_in, "eval")
    y_train, y_eval = rows(store.layer_out, "train"), rows(store.layer_out, "eval")
    start_train = store.tokens("train")["is_start"].to_numpy()
    start_eval = store.tokens("eval")["is_start"].to_numpy()
    ones = (np.zeros(x_train.shape[1]), np.ones(x_train.shape[1]))
    out = {}
    for name, (mu, sd) in {"model space": ones, "statistics over the training selection": fit_stats([x_train]),
                           "statistics over its words, starts left out": fit_stats([x_train[~start_train]]),
                           "statistics over the evaluation words": fit_stats([x_eval])}.items():
        fitted = KMeans(k, n_init=1, random_state=seed).fit((x_train - mu) / sd)
        ids_train, ids_eval = fitted.labels_, fitted.predict((x_eval - mu) / sd)
        main_cluster = np.bincount(ids_train[start_train], minlength=k).argmax()
        out[name] = {
            "lookup_fvu": fvu(y_eval, class_means(ids_train, y_train, k, y_train.mean(0))[ids_eval]),
            "starts_cluster_train_start_share": float(start_train[ids_train == main_cluster].mean()),
            "starts_cluster_eval_start_share": float(start_eval[ids_eval == main_cluster].mean()),
            "starts_cluster_eval_members": int((ids_eval == main_cluster).sum()),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", help="finished runs (read only)")
    parser.add_argument("--methods", nargs="+", default=["clvq", "kmeans"])
    parser.add_argument("--kmeans-statistics", type=int, default=None, metavar="K",
                        help="also fit plain k-means with K clusters under different standardisation statistics")
    parser.add_argument("--out", type=Path, default=Path("lookup_small_data.json"))
    args = parser.parse_args(argv)
    result = {"runs": [analyse(r.resolve(), args.methods) for r in args.run_dirs]}
    if args.kmeans_statistics:
        for run, folder in zip(result["runs"], args.run_dirs):
            run["kmeans_by_statistics"] = kmeans_by_statistics(folder.resolve(), args.kmeans_statistics)
    write_json(args.out, result)
    for run in result["runs"]:
        for name, m in run["methods"].items():
            print(f"{run['run']} {name}: lookup {m['lookup_fvu']:.3f}, starts apart {m['lookup_fvu_starts_and_words_apart']:.3f}, "
                  f"cross-fit {m['lookup_fvu_cross_fitted_on_eval']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
