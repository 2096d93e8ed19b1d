"""`clvq-judge diagnose --run R --method M`: does a concept method learn more than clustering would?

Reads a trained method and the activation cache; writes `runs/<run>/diagnose/<method>.json` and returns a
short table. Every FVU below is the fraction of variance of a layer left unexplained on evaluation words.

- lookup FVU at L_out (the top cached layer; the `concepts` stage's figure): each evaluation word predicted
  by the mean L_out vector of its concept's training words, for the trained method and for the method as
  initialised before training (same init, same seed, same training split as `fit`).
- oracle ceiling: the same lookup for k-means fitted on L_out itself with the same K (no partition of L_in
  words into K groups can do much better, so this bounds what any K-concept lookup can reach).
- NMI between the method's evaluation partition, k-means on L_in (the run's `kmeans` concepts when they
  exist, else a quick fit) and word identity: whether the concepts are more than clustered words.
- context use (methods with a codebook model, `ConceptMethod.codebook_model()`, on `--context-sentences`
  evaluation sentences): the decoder's FVU of its target as is; with each word decoded alone; with each word
  decoded among another sentence's codes; its
  per-code average output (over the training words) used as a lookup; the per-code training mean of the
  target; and that mean plus the decoder's context-dependent part (its output minus its per-code average).
- the encoder's distance from identity (||W - I||_F / ||I||_F, and the mean relative change ||z - x|| / ||x||
  of evaluation words) and its gate m; the share of codes whose trained vector is farther than `--move-tol`
  (relative) from its initial position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .activations import ActivationStore
from .atomic import read_json, write_json
from .concepts import concept_lookup_fvu
from .config import option
from .device import resolve_device
from .methods import ConceptMethod, LayerData, get_method
from .methods.batching import Batch
from .methods.codebook_init import kmeans_plus_plus, lloyd
from .methods.quantizer import squared_distances
from .runs import NON_RESULT_FIELDS, Run, RunOptions, run_seed
from .stages import record_key

log = logging.getLogger(__name__)


@dataclass
class DiagnoseConfig(RunOptions):
    method: str = "clvq"
    """Trained method to diagnose (clvq, vqvae, sae, kmeans, agglomerative)."""
    context_sentences: int = option(150, ge=1)
    """Evaluation sentences for the context-use test (each costs one decoder pass per word)."""
    move_tol: float = option(0.05, gt=0)
    """A code has moved when ||trained - initial|| / ||initial|| exceeds this."""
    max_points: int = option(50000, ge=2)
    """Fit the quick k-means (oracle on L_out; on L_in when the run has no kmeans) on at most this many training words."""
    kmeans_iterations: int = option(20, ge=0)
    """Lloyd iterations of the quick k-means fits."""
    seed: int | None = None
    """Seed of the subsamples, the quick k-means fits and the partner sentences; none = the run's seed."""


# --- pure pieces --------------------------------------------------------------------------------------------


def fvu(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of the variance of `target` [N, D] (around its own mean) that `pred` leaves unexplained."""
    target = target.double()
    sse = float(((pred.double() - target) ** 2).sum())
    sst = float(((target - target.mean(0)) ** 2).sum())
    return sse / max(sst, 1e-12)


def quick_kmeans(x: np.ndarray, k: int, iterations: int, seed: int) -> torch.Tensor:
    """Centroids [k, D] of plain k-means (k-means++ seeding, Lloyd iterations) on x [N, D]."""
    xt = torch.from_numpy(np.require(x, np.float32))
    generator = torch.Generator().manual_seed(int(seed))
    return lloyd(xt, kmeans_plus_plus(xt, min(k, len(xt)), generator), iterations, spherical=False)[0]


def nearest(x: np.ndarray, centroids: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    out = [squared_distances(torch.from_numpy(np.require(x[i : i + chunk], np.float32)), centroids).argmin(1)
           for i in range(0, len(x), chunk)]
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def relative_move(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """||after - before|| / ||before|| per row."""
    return np.linalg.norm(after - before, axis=1) / np.maximum(np.linalg.norm(before, axis=1), 1e-12)


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(a, b))


def code_sequences(model, batch: Batch) -> torch.Tensor:
    """Nearest code of every real token [B, L] (0 on padding), as the model assigns at evaluation."""
    codes = torch.zeros(batch.mask.shape, dtype=torch.long, device=batch.x.device)
    codes[batch.mask] = model.quantizer.nearest(model.encoder(batch.x[batch.mask]))
    return codes


def decode(model, codes: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """The decoder's output [B, L, D_out] for code sequences [B, L] (what it sees at evaluation)."""
    q = model.quantizer.codebook[codes] * mask[..., None]
    return model.decode(q, codes, mask, positions)


def decode_alone(model, codes: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Each real token decoded as a sequence of its own (same code, same position): no context at all.
    Returns [N, D_out] in mask order."""
    flat_codes = codes[mask][:, None]
    flat_pos = positions[mask][:, None] if positions is not None else None
    ones = torch.ones_like(flat_codes, dtype=torch.bool)
    return decode(model, flat_codes, ones, flat_pos)[:, 0]


def decode_among(model, codes: torch.Tensor, length: int, partner: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Word p of a sentence (codes [T]) decoded with every other position holding the partner sentence's
    codes (repeated cyclically to length T): one sequence per word, output [T, D_out]."""
    filler = partner[torch.arange(length, device=partner.device) % len(partner)]
    seqs = filler[None, :].repeat(length, 1)
    eye = torch.eye(length, dtype=torch.bool, device=codes.device)
    seqs[eye] = codes[:length]
    mask = torch.ones(length, length, dtype=torch.bool, device=codes.device)
    pos = positions[None, :length].repeat(length, 1) if positions is not None else None
    return decode(model, seqs, mask, pos)[eye]


# --- the stage ----------------------------------------------------------------------------------------------


def _load(run: Run, name: str, device) -> ConceptMethod:
    get_method(name)
    folder = run.require(f"methods/{name}")
    return ConceptMethod.load(folder, device=device)


def initial_method(method: ConceptMethod, store: ActivationStore, device) -> ConceptMethod:
    """The method as `fit` starts it: same config and seed, initialised on the same training split."""
    fresh = type(method)(method.config, method.dims)
    fresh.codebook_model().to(device)
    fresh.scaling = method.scaling  # the statistics `fit` computes on the same training words
    data = LayerData(store, "train", method.dims.layer_in, method.dims.layer_out)
    train, _ = data.split(method.config.val_fraction, method.config.seed)
    fresh.initialize(fresh.internal(train), device)
    fresh.codebook_model().eval()
    return fresh


def encoder_report(method: ConceptMethod, x: np.ndarray) -> dict[str, Any]:
    model = method.codebook_model()
    encoder = model.encoder
    xt = method.to_internal(torch.from_numpy(np.require(x, np.float32)).to(model.quantizer.codebook.device))
    with torch.no_grad():
        z = encoder(xt)
    change = float(((z - xt).norm(dim=1) / xt.norm(dim=1).clamp_min(1e-12)).mean())
    if not hasattr(encoder, "linear"):
        return {"kind": "identity", "gate_m": 0.0, "weight_distance_from_identity": 0.0, "mean_relative_change": change}
    w = encoder.linear.weight.detach()
    eye = torch.eye(w.shape[0], device=w.device)
    return {
        "kind": "adaptive",
        "gate_m": float(encoder.mix.detach()),
        "weight_distance_from_identity": float((w - eye).norm() / eye.norm()),
        "bias_norm": float(encoder.linear.bias.detach().norm()),
        "mean_relative_change": change,
    }


def context_report(method: ConceptMethod, store: ActivationStore, n_sentences: int, seed: int, device) -> dict[str, Any]:
    """FVU of the decoder's target on a seeded subset of evaluation sentences, with and without context.
    The decoder runs in the method's own (possibly standardised) space; every FVU is taken in the model's."""
    model = method.codebook_model()
    with _eval_mode(model):
        return _context(method, model, store, n_sentences, seed, device)


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _context(method, model, store: ActivationStore, n_sentences: int, seed: int, device) -> dict[str, Any]:
    k = model.quantizer.codebook.shape[0]
    back = method.output_to_model
    train = method.internal(LayerData(store, "train", method.dims.layer_in, method.dims.layer_out))
    dim = method.dims.d_out
    out_sum = torch.zeros(k, dim, dtype=torch.float64)
    target_sum = torch.zeros(k, dim, dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.float64)
    with torch.no_grad():
        for batch in train.batches(64, None, device):
            codes = code_sequences(model, batch)
            recon = decode(model, codes, batch.mask, batch.positions)
            c = codes[batch.mask].cpu()
            out_sum.index_add_(0, c, back(recon[batch.mask]).double().cpu())
            target_sum.index_add_(0, c, back(batch.y[batch.mask]).double().cpu())
            counts += torch.bincount(c, minlength=k).double()
    seen = counts > 0
    decoder_avg = torch.where(seen[:, None], out_sum / counts.clamp_min(1)[:, None], out_sum.sum(0) / counts.sum())
    code_mean = torch.where(seen[:, None], target_sum / counts.clamp_min(1)[:, None], target_sum.sum(0) / counts.sum())

    data = method.internal(LayerData(store, "eval", method.dims.layer_in, method.dims.layer_out))
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(data.n_sentences, size=min(n_sentences, data.n_sentences), replace=False))
    part = data.with_sentences(subset)
    ys, as_is, alone, among, codes_all = [], [], [], [], []
    with torch.no_grad():
        batches = list(part.batches(64, None, device))
        sequences = [(codes, batch) for batch in batches for codes in [code_sequences(model, batch)]]
        flat = [(codes[i, : int(batch.mask[i].sum())], batch.positions[i] if batch.positions is not None else None)
                for codes, batch in sequences for i in range(len(codes))]
        partners = rng.permutation(len(flat))
        for codes, batch in sequences:
            ys.append(back(batch.y[batch.mask]).cpu())
            as_is.append(back(decode(model, codes, batch.mask, batch.positions)[batch.mask]).cpu())
            alone.append(back(decode_alone(model, codes, batch.mask, batch.positions)).cpu())
            codes_all.append(codes[batch.mask].cpu())
        for i, (codes, positions) in enumerate(flat):
            j = partners[i] if partners[i] != i or len(flat) == 1 else partners[(i + 1) % len(flat)]
            among.append(back(decode_among(model, codes, len(codes), flat[j][0], positions)).cpu())
    y, pred, codes = torch.cat(ys), torch.cat(as_is), torch.cat(codes_all)
    # `among` follows the same sentence order as the batches (flat was built from them).
    context_part = pred.double() - decoder_avg[codes]
    return {
        "layer": method.dims.layer_out,
        "n_sentences": len(subset),
        "n_words": len(y),
        "fvu_as_is": fvu(pred, y),
        "fvu_each_word_alone": fvu(torch.cat(alone), y),
        "fvu_among_other_sentence": fvu(torch.cat(among), y),
        "fvu_decoder_code_average_lookup": fvu(decoder_avg[codes], y),
        "fvu_code_training_mean_lookup": fvu(code_mean[codes], y),
        "fvu_code_mean_plus_decoder_context": fvu(code_mean[codes] + context_part, y),
    }


def diagnose(config: DiagnoseConfig) -> str:
    """Compute the diagnostics of one method; writes the JSON and returns a short table."""
    run = Run.open(config.runs_dir, config.run)
    get_method(config.method)
    record = record_key("diagnose", method=config.method)
    out = run.root / "diagnose" / f"{config.method}.json"
    # It reads the trained method and the cache, and the run's kmeans when there is one (its NMI partner).
    partner = [s for s in ("methods/kmeans", "concepts/kmeans") if config.method != "kmeans" and run.is_done(s)]
    inputs = ("extract", f"methods/{config.method}", *partner)
    if not run.begin(record, config, config.force, NON_RESULT_FIELDS, inputs, on_change="redo"):
        log.info("diagnose %s already finished with these options from the same inputs: %s", config.method, out)
        return table_text(read_json(out))
    store = ActivationStore(run.require("extract"))
    device = resolve_device(config.device)
    seed = run_seed(run, config.seed)
    method = _load(run, config.method, device)
    layer_in, top = method.dims.layer_in, max(store.layers)
    train_in = LayerData(store, "train", layer_in)
    eval_in = LayerData(store, "eval", layer_in)
    k = method.n_concepts
    tokens = store.tokens("eval")
    report: dict[str, Any] = {"run": run.name, "method": config.method, "n_concepts": k, "layer_in": layer_in,
                              "lookup_layer": top, "seed": seed, "n_eval_words": len(tokens)}

    eval_ids = method.assign(eval_in)
    lookup = {"trained": concept_lookup_fvu(store, method.assign(train_in), eval_ids, k, top)}
    model = method.codebook_model()
    if model is not None:
        fresh = initial_method(method, store, device)
        lookup["initialised"] = concept_lookup_fvu(store, fresh.assign(train_in), fresh.assign(eval_in), k, top)
        # Compared in the method's own space: in the model's, a large mean would hide every move.
        book, start = method.to_internal(method.vectors()), fresh.to_internal(fresh.vectors())
        moved = relative_move(book, start)
        # The initial codebook lives in the L_in space, the trained one in the trained encoder's output
        # space: where the trained encoder sends each initial code separates a code's own move from the
        # encoder's.
        with torch.no_grad():
            carried = model.encoder(torch.from_numpy(start).to(device)).cpu().numpy()
        beyond = relative_move(book, carried)
        report["codes"] = {"moved_share": float((moved > config.move_tol).mean()), "move_tol": config.move_tol,
                           "median_relative_move": float(np.median(moved)),
                           "moved_share_beyond_encoder": float((beyond > config.move_tol).mean()),
                           "median_relative_move_beyond_encoder": float(np.median(beyond)),
                           "used_eval": int(len(np.unique(eval_ids))),
                           "used_eval_initialised": int(len(np.unique(fresh.assign(eval_in))))}
    else:
        lookup["initialised"] = None
    oracle = quick_kmeans(LayerData(store, "train", top).sample_rows(top, config.max_points, seed), k,
                          config.kmeans_iterations, seed)
    train_top = np.concatenate(list(store.iter_chunks(top, "train")))
    eval_top = np.concatenate(list(store.iter_chunks(top, "eval")))
    oracle_eval = nearest(eval_top, oracle)
    lookup["oracle_kmeans_on_lookup_layer"] = concept_lookup_fvu(store, nearest(train_top, oracle), oracle_eval, len(oracle), top)
    report["lookup_fvu"] = lookup

    kmeans_ids, source = None, "quick k-means on L_in"
    if run.is_done("methods/kmeans") and run.done_record("methods/kmeans")["config"].get("layer_in") == layer_in:
        path = run.root / "concepts" / "kmeans" / "assignments.npy"
        kmeans_ids = np.load(path) if path.exists() else _load(run, "kmeans", device).assign(eval_in)
        source = "the run's kmeans"
    if kmeans_ids is None or len(kmeans_ids) != len(tokens):
        centroids = quick_kmeans(train_in.sample_rows(layer_in, config.max_points, seed), k, config.kmeans_iterations, seed)
        kmeans_ids = nearest(np.concatenate(list(store.iter_chunks(layer_in, "eval"))), centroids)
        source = "quick k-means on L_in"
    words = tokens["word"].astype(str).str.lower().to_numpy()
    report["nmi"] = {
        "method_vs_kmeans_l_in": nmi(eval_ids, kmeans_ids),
        "method_vs_words": nmi(eval_ids, words),
        "kmeans_l_in_vs_words": nmi(kmeans_ids, words),
        "method_vs_oracle_l_out": nmi(eval_ids, oracle_eval),
        "kmeans_source": source,
    }
    if model is not None:
        rows = np.arange(min(len(tokens), config.max_points))
        report["encoder"] = encoder_report(method, store.rows(layer_in, "eval", rows))
        report["context"] = context_report(method, store, config.context_sentences, seed, device)
    write_json(out, report)
    run.finish(record, config, NON_RESULT_FIELDS, outputs=(out,))
    log.info("diagnose: wrote %s", out)
    return table_text(report)


def table_text(report: dict[str, Any]) -> str:
    """The diagnostics as a short two-column table."""

    def num(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lookup, nmi_ = report["lookup_fvu"], report["nmi"]
    lines = [f"diagnose {report['method']} (run {report['run']}, K={report['n_concepts']}, "
             f"L_in {report['layer_in']}, lookup layer {report['lookup_layer']})",
             f"  lookup FVU  trained {num(lookup['trained'])}  initialised {num(lookup['initialised'])}  "
             f"oracle (k-means on the lookup layer) {num(lookup['oracle_kmeans_on_lookup_layer'])}",
             f"  NMI  method~kmeans(L_in) {num(nmi_['method_vs_kmeans_l_in'])}  method~words "
             f"{num(nmi_['method_vs_words'])}  kmeans~words {num(nmi_['kmeans_l_in_vs_words'])}  "
             f"method~oracle {num(nmi_['method_vs_oracle_l_out'])}"]
    if "codes" in report:
        c = report["codes"]
        lines.append(f"  codes  moved {c['moved_share']:.1%} (rel. distance > {c['move_tol']}), median move "
                     f"{c['median_relative_move']:.3f}; beyond the encoder's own change {c['moved_share_beyond_encoder']:.1%}, "
                     f"median {c['median_relative_move_beyond_encoder']:.3f}; used on eval {c['used_eval']} "
                     f"(initialised {c['used_eval_initialised']})")
    if "encoder" in report:
        e = report["encoder"]
        lines.append(f"  encoder  {e['kind']}: gate m {e['gate_m']:.3f}, ||W - I||/||I|| "
                     f"{e['weight_distance_from_identity']:.3f}, mean ||z - x||/||x|| {e['mean_relative_change']:.3f}")
    if "context" in report:
        c = report["context"]
        lines.append(f"  decoder FVU of layer {c['layer']} ({c['n_words']} words of {c['n_sentences']} sentences): "
                     f"as is {c['fvu_as_is']:.3f}, each word alone {c['fvu_each_word_alone']:.3f}, among another "
                     f"sentence {c['fvu_among_other_sentence']:.3f}")
        lines.append(f"    lookups: decoder's per-code average {c['fvu_decoder_code_average_lookup']:.3f}, per-code "
                     f"training mean {c['fvu_code_training_mean_lookup']:.3f}, mean + decoder context "
                     f"{c['fvu_code_mean_plus_decoder_context']:.3f}")
    return "\n".join(lines)
