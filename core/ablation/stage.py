"""`clvq-judge ablate`: faithfulness by concept removal (spec section 5), for every concept method.

For each evaluation sentence the most salient word (Integrated Gradients, from `extract`) is its
explanation token; each method's concept(s) at that token give an orthonormal basis Q of directions in
the `L_in` space. Two protocols measure what removing `Q` does, against three controls with the same
number of directions per sentence:

- random: a uniformly random subspace (the paper's control). It removes far less of a sentence than a
  centroid-like concept direction does, so on its own it flatters every concept method.
- random_energy: a random subspace that removes exactly as much energy sum_t ||Q^T h_t||^2 from the
  sentence as the concept does (construction and why it is fair: `directions`). Energy is measured on the
  vectors the protocol edits: every cached word of the sentence at L_in (model), the probe vector (paper).
  The headline figure is the paired drop against this control, with a bootstrap CI over sentences.
- other_concept: a random other concept of the same method.

Per sentence the share of its energy each condition removed is kept; one least-squares line per method
and protocol of "prediction flipped" (0/1) on that share, pooled over the removal conditions, shows how
much of an effect energy alone predicts (slope, intercept, r in summary.json; drawn in ablation.png).
`--center-directions` removes (c - mean) / ||c - mean|| instead of c / ||c||, with the mean of the
method's training tokens at L_in (vector methods; the SAE's encoder rows are directions already).
`--space standardized` removes every basis in per-dimension standardised coordinates z = (h - mean) / std
(mean and std of the cache's training tokens at L_in, as the methods standardise): concept directions
become (c - mean) / std for vector methods and the encoder row times std for the SAE, every control and
every energy is taken in z, and the edited state is mean + std * (z - Q Q^T z). On a model whose residual
stream has a few massive dimensions (Gemma), every model-space concept direction points along them and
removes most of a sentence's norm, so only this space can ask whether the concept itself matters.

- paper: MLP probes trained on the unperturbed sentence vectors at `L_in` (stratified k-fold CV) classify
  the test fold's vectors before and after `h - Q Q^T h`.
- model: a hook applies `h - Q Q^T h` to every token's hidden state at `L_in` inside the classifier.

Writes `results.csv` (tidy), `summary.json` and `ablation.png` to the stage folder.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..activations import ActivationStore
from ..atomic import write_json, write_with
from ..device import resolve_device
from ..errors import UserError
from ..explanation import explanation_tokens
from ..hooks import check_layer
from ..methods.standardize import Affine
from ..runs import NON_RESULT_FIELDS, Run, RunOptions, derive_seed, run_seed
from ..schema import ABLATION_FILES, ABLATION_RESULTS, ABLATION_SENTENCES
from ..stats import bootstrap_ci
from . import sources
from .directions import (
    basis_from_ids,
    energy_matched_basis,
    pad_by_sentence,
    random_basis,
    random_ids,
    ranks,
    removed_energy,
    sentence_ids,
)
from .model_level import BlockReplay, predict_with_removal
from .plot import plot_results
from .probe import ProbeConfig, stratified_folds, train_fold_probes
from .projection import remove_span
from .stats import flip_rate, fold_accuracies, relative_drop

log = logging.getLogger(__name__)

STAGE = "ablate"
CONDITIONS = ("original", "concept", "random", "random_energy", "other_concept")
REMOVALS = CONDITIONS[1:]
COLUMNS = ABLATION_RESULTS
SENTENCE_COLUMNS = ABLATION_SENTENCES


@dataclass
class AblateConfig(RunOptions):
    method: tuple[str, ...] = field(default_factory=lambda: sources.METHODS)
    """Concept methods to evaluate (clvq, vqvae, sae, kmeans, agglomerative, or any registered one); several allowed."""
    protocol: Literal["both", "paper", "model"] = "both"
    """paper (MLP probe on the L_in sentence vector), model (hook inside the classifier), or both."""
    folds: int = 20
    """Stratified cross-validation folds of the paper protocol's probe."""
    seed: int | None = None
    """Seed of folds, probes, random controls and bootstrap; none = the run's seed."""
    sae_k: tuple[int, ...] = (1, 5, 10)
    """For span methods (the SAE): remove the span of the top-k latents' encoder rows, one result per k."""
    top_k_words: int = 1
    """Explanation tokens per sentence: remove the concepts of its k most salient words together."""
    probe_target: Literal["label", "prediction"] = "label"
    """What the paper protocol's probe predicts: the gold label (paper) or the classifier's prediction."""
    probe_token: Literal["auto", "start", "last"] = "auto"
    """Probe input: the sentence-start vector (paper), the last word's, or auto (start for encoders, last for decoders, whose start token sees nothing)."""
    center: bool = False
    """Paper protocol: remove directions from each vector's deviation from the mean sentence vector m (m + P(h - m)) instead of from h (the paper); a removal then takes information out instead of shifting every vector off the probe's training distribution."""
    center_directions: bool = False
    """Remove mean-centred concept directions (c - mean of the training tokens at L_in, normalised) instead of c itself (vector methods; the SAE's encoder rows are left as they are)."""
    space: Literal["model", "standardized"] = "model"
    """Coordinates the directions are removed in: model (h - Q Q^T h, the paper) or standardized (per-dimension
    z = (h - mean) / std of the training tokens, the space the methods fit in; controls and energies in z too)."""
    layer: int | None = None
    """Hidden-state index to remove concepts at; none = each method's L_in."""
    bootstrap: int = 1000
    """Bootstrap resamples for the 95% confidence intervals."""
    batch_size: int = 32
    """Sentences per forward pass of the model-level protocol."""


EXCLUDE = (*NON_RESULT_FIELDS, "batch_size")


def _exclude(config: AblateConfig) -> tuple[str, ...]:
    # An option added later counts in the hash only when set away from the behaviour it was added with, so
    # a run finished before it existed stays finished.
    return EXCLUDE + (("space",) if config.space == "model" else ())


def _validate(config: AblateConfig) -> None:
    unknown = sorted(set(config.method) - set(sources.METHODS))
    if unknown or not config.method:
        raise UserError(f"unknown --method {' '.join(unknown) or '(none)'}: use some of {', '.join(sources.METHODS)}")
    if any(sources.is_span(m) for m in config.method) and (not config.sae_k or min(config.sae_k) < 1):
        raise UserError("--sae-k needs positive integers, e.g. --sae-k 1 5 10")
    if config.top_k_words < 1:
        raise UserError("--top-k-words must be at least 1")
    if config.bootstrap < 1:
        raise UserError("--bootstrap must be at least 1")
    if config.folds < 2:
        raise UserError(f"--folds {config.folds} is too few for cross-validation: pass 2 or more")


def token_mean(store: ActivationStore, layer: int, selection: str) -> np.ndarray:
    """Mean token vector of one layer and selection (streamed)."""
    total, count = np.zeros(store.hidden_size, dtype=np.float64), 0
    for chunk in store.iter_chunks(layer, selection):
        total += chunk.sum(0, dtype=np.float64)
        count += len(chunk)
    return (total / max(count, 1)).astype(np.float32)


def probe_rows(tokens: pd.DataFrame, sentences: np.ndarray, which: str) -> np.ndarray:
    """Row of each sentence's probe vector in the eval token table: its start token or its last word."""
    frame = pd.DataFrame({"sentence": tokens["sentence"].to_numpy(), "position": tokens["position"].to_numpy(),
                          "row": np.arange(len(tokens))})
    ordered = frame.sort_values(["sentence", "position"], kind="mergesort").groupby("sentence")
    pick = ordered.last() if which == "last" else ordered.first()
    pick = pick.reindex(sentences)
    if which == "start" and (pick["position"].to_numpy() != 0).any():
        raise UserError("the activation cache has no sentence-start token for some sentences: pass --probe-token last")
    return pick["row"].to_numpy(dtype=np.int64)


@dataclass
class Bases:
    concept: torch.Tensor
    random: torch.Tensor
    other_concept: torch.Tensor

    def for_protocol(self, h: torch.Tensor, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
        """Every removal condition's basis for vectors `h` [S, T, D] (the energy-matched one depends on
        them), and the share of each sentence's energy each removes."""
        concept_energy = removed_energy(h, self.concept)
        matched = energy_matched_basis(h, concept_energy, ranks(self.concept), self.concept.shape[2], seed)
        bases = {"concept": self.concept, "random": self.random, "random_energy": matched,
                 "other_concept": self.other_concept}
        total = (h.float() ** 2).sum(dim=(1, 2)).clamp_min(1e-30)
        return bases, {c: (removed_energy(h, b) / total).numpy() for c, b in bases.items()}


def make_bases(source: sources.ConceptSource, explanations: pd.DataFrame, sentence_list: np.ndarray,
               top_k: int, seed: int) -> Bases:
    ids = sentence_ids(explanations, source.ids, sentence_list, top_k)
    concept = basis_from_ids(source.table, ids)
    rank = ranks(concept)
    empty = int((rank == 0).sum())
    if empty:
        log.warning("ablate: %s has no concept direction for %d of %d sentences (nothing removed there)",
                    source.label, empty, len(rank))
    other = random_ids(ids, len(source.table), derive_seed(seed, source.label, "other"))
    return Bases(
        concept=concept,
        random=random_basis(rank, source.table.shape[1], ids.shape[1], derive_seed(seed, source.label, "random")),
        other_concept=basis_from_ids(source.table, other),
    )


def flip_energy_fit(share: dict[str, np.ndarray], flipped: dict[str, np.ndarray]) -> dict:
    """Least-squares line of per-sentence flips (0/1) on the share of energy removed, pooled over the
    removal conditions; plus how far the concept's flips lie above the line on average."""
    x = np.concatenate([share[c] for c in REMOVALS]).astype(np.float64)
    y = np.concatenate([flipped[c] for c in REMOVALS]).astype(np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float((dx * dx).sum()), float((dy * dy).sum())
    slope = float((dx * dy).sum() / sxx) if sxx > 0 else float("nan")
    intercept = float(y.mean() - slope * x.mean()) if sxx > 0 else float("nan")
    r = float((dx * dy).sum() / np.sqrt(sxx * syy)) if sxx > 0 and syy > 0 else float("nan")
    excess = float(np.mean(flipped["concept"] - (intercept + slope * share["concept"]))) if sxx > 0 else float("nan")
    return {"slope": slope, "intercept": intercept, "r": r, "n": len(x), "concept_excess_flip_rate": excess,
            "x": "share of the sentence's energy at the edited layer that the removal takes away",
            "conditions": list(REMOVALS)}


def _gap(better: np.ndarray, worse: np.ndarray, config: AblateConfig, seed: int, *parts) -> dict:
    """Paired per-sentence accuracy difference (control - concept) with its bootstrap CI."""
    gap = better.astype(float) - worse.astype(float)
    low, high = bootstrap_ci(gap, config.bootstrap, derive_seed(seed, *parts))
    return {"value": float(gap.mean()), "ci_low": low, "ci_high": high}


def _rows(source, protocol: str, preds: dict[str, np.ndarray], target: np.ndarray, folds: np.ndarray | None,
          config: AblateConfig, seed: int, share: dict[str, np.ndarray]) -> tuple[list[dict], dict]:
    """Result rows of one method variant under one protocol, plus its summary entry."""
    rows = []
    correct = {c: preds[c] == target for c in preds}
    before = None
    for condition, pred in preds.items():
        hit = correct[condition]
        if folds is not None:
            per_fold = fold_accuracies(hit, folds)
            acc, std = float(per_fold.mean()), float(per_fold.std(ddof=1))
        else:
            # No folds in the model protocol: the spread reported is the binomial standard error.
            acc = float(hit.mean())
            std = float(np.sqrt(acc * (1 - acc) / max(1, len(hit))))
        before = acc if condition == "original" else before
        low, high = bootstrap_ci(hit, config.bootstrap, derive_seed(seed, source.label, protocol, condition))
        rows.append({"method": source.method, "k": source.k, "label": source.label, "protocol": protocol,
                     "condition": condition, "accuracy": acc, "std": std, "n": len(hit),
                     "relative_drop": relative_drop(before, acc), "flip_rate": flip_rate(pred, preds["original"]),
                     "ci_low": low, "ci_high": high,
                     "energy_share": float(np.mean(share[condition])) if condition in share else 0.0})
    by = {r["condition"]: r for r in rows}
    flipped = {c: preds[c] != preds["original"] for c in REMOVALS}
    some = share["concept"] > 0  # sentences without a concept direction remove nothing in any condition
    matched = share["random_energy"][some] / share["concept"][some] if some.any() else np.ones(1)
    headline = _gap(correct["random_energy"], correct["concept"], config, seed, source.label, protocol, "gap_energy")
    control = by["random_energy"]["accuracy"]
    summary = {
        "before": by["original"]["accuracy"],
        "after": by["concept"]["accuracy"],
        "random": by["random"]["accuracy"],
        "random_energy": control,
        "other_concept": by["other_concept"]["accuracy"],
        "relative_drop": by["concept"]["relative_drop"],
        "random_relative_drop": by["random"]["relative_drop"],
        "random_energy_relative_drop": by["random_energy"]["relative_drop"],
        "other_concept_relative_drop": by["other_concept"]["relative_drop"],
        **{"flip_rate" if c == "concept" else f"{c}_flip_rate": by[c]["flip_rate"] for c in REMOVALS},
        # The headline: paired over sentences, how much more accuracy removing the concept costs than
        # removing a random subspace of the same energy; relative to that control's accuracy.
        "drop_vs_energy_control": headline,
        "relative_drop_vs_energy_control": relative_drop(control, by["concept"]["accuracy"]),
        "gap_vs_random": _gap(correct["random"], correct["concept"], config, seed, source.label, protocol, "gap"),
        "gap_vs_other_concept": _gap(correct["other_concept"], correct["concept"], config, seed, source.label,
                                     protocol, "gap_other"),
        "energy_share": {c: by[c]["energy_share"] for c in REMOVALS},
        # How exactly the control matched: achieved / wanted energy per sentence (1 = exact).
        "energy_match": {"median_ratio": float(np.median(matched)),
                         "share_within_1pct": float(np.mean(np.abs(matched - 1) <= 0.01))},
        "flip_vs_energy": flip_energy_fit(share, flipped),
        "n": len(target),
    }
    return rows, summary


def sentence_rows(label: str, protocol: str, preds: dict[str, np.ndarray], target: np.ndarray,
                  sentence_list: np.ndarray) -> pd.DataFrame:
    """Per evaluation sentence and condition, whether the probe or model still got it right (sentences.csv):
    what a reader needs for the accuracy drop over the sentences one concept explains."""
    parts = [pd.DataFrame({"label": label, "protocol": protocol, "condition": condition, "sentence": sentence_list,
                           "correct": (pred == target).astype(np.int8)}) for condition, pred in preds.items()]
    return pd.concat(parts, ignore_index=True)[SENTENCE_COLUMNS]


def table_text(results: pd.DataFrame) -> str:
    """The results as a compact, readable text table (accuracy [95% CI], drop, flips)."""
    shown = results.assign(
        accuracy=[f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in zip(results.accuracy, results.ci_low, results.ci_high)],
        std=results["std"].map("{:.3f}".format),
        relative_drop=results.relative_drop.map("{:+.1%}".format),
        flip_rate=results.flip_rate.map("{:.1%}".format),
        energy_share=results.energy_share.map("{:.3f}".format),
    )
    return shown[["label", "protocol", "condition", "accuracy", "std", "relative_drop", "flip_rate", "energy_share",
                  "n"]].to_string(index=False)


class _Probes:
    """Probes per layer, trained on first use (they do not depend on the method)."""

    def __init__(self, store, tokens, sentence_list, target, which, config, seed, device):
        self.store, self.tokens, self.sentence_list, self.target = store, tokens, sentence_list, target
        self.which, self.config, self.seed, self.device = which, config, seed, device
        self.folds = stratified_folds(target, config.folds, derive_seed(seed, "folds"))
        self.by_layer: dict[int, tuple] = {}

    def get(self, layer: int):
        if layer not in self.by_layer:
            rows = probe_rows(self.tokens, self.sentence_list, self.which)
            x = torch.from_numpy(self.store.rows(layer, "eval", rows)).to(self.device)
            probes = train_fold_probes(x, self.target, self.folds, int(self.target.max()) + 1, ProbeConfig(),
                                       derive_seed(self.seed, "probe", layer), self.device)
            log.info("ablate: trained %d probes on layer %d (%.0f epochs on average)", probes.n_folds, layer,
                     probes.epochs.mean())
            self.by_layer[layer] = (x, probes, probes.predict_out_of_fold(x))
        return self.by_layer[layer]


class _Model:
    """The classifier and the tokenized evaluation sentences, loaded on first use."""

    def __init__(self, run: Run, sentence_list: np.ndarray, stored: np.ndarray, batch_size: int, device):
        self.model = sources.load_model(run, device)
        texts = sources.eval_texts(run, sentence_list)
        self.batches = sources.encode_sentences(self.model.tokenizer, texts, batch_size, sources.max_length(run))
        self.stored, self.device = stored, device
        self.original: np.ndarray | None = None
        self.replay: BlockReplay | None = None

    def prepare(self, layer: int) -> np.ndarray:
        """Plain predictions, recording the computation below `layer` for the edited passes to reuse."""
        if self.replay is None or self.replay.layer != layer:
            check_layer(self.model, layer)
            self.replay = BlockReplay(layer)
            original = predict_with_removal(self.model, self.batches, layer, None, self.device, self.replay)
            if self.original is None:
                agree = float((original == self.stored).mean())
                if agree < 0.99:
                    log.warning("ablate: the classifier reproduces only %.1f%% of the cached predictions", 100 * agree)
            self.original = original
        return self.original

    def predict(self, layer: int, basis: torch.Tensor, scaling: Affine | None = None) -> np.ndarray:
        self.prepare(layer)
        return predict_with_removal(self.model, self.batches, layer, basis, self.device, self.replay,
                                    None if scaling is None else (scaling.mean, scaling.std))


class _Space:
    """The coordinates removals happen in: the model's own (identity) or standardised per layer."""

    def __init__(self, store: ActivationStore, standardized: bool):
        self.store, self.standardized = store, standardized
        self.by_layer: dict[int, Affine] = {}

    def scaling(self, layer: int) -> Affine | None:
        if not self.standardized:
            return None
        if layer not in self.by_layer:
            self.by_layer[layer] = Affine.fit(self.store.iter_chunks(layer, "train"))
        return self.by_layer[layer]

    def to_space(self, layer: int, x):
        scaling = self.scaling(layer)
        return x if scaling is None else scaling.apply(x)

    def from_space(self, layer: int, z):
        scaling = self.scaling(layer)
        return z if scaling is None else scaling.invert(z)

    def table(self, source: sources.ConceptSource) -> sources.ConceptSource:
        """The source's directions in this space: points map like the data, the SAE's read-out rows
        (w . h) become w * std (the row that reads the same thing from z)."""
        scaling = self.scaling(source.layer)
        if scaling is None:
            return source
        table = source.table * scaling.std.numpy() if source.span else scaling.apply(source.table)
        return dataclasses.replace(source, table=np.asarray(table, dtype=np.float32))


def ablate(config: AblateConfig) -> pd.DataFrame:
    """Run the faithfulness evaluation; returns the tidy results table (also written to results.csv)."""
    _validate(config)
    run = Run.open(config.runs_dir, config.run)
    store = ActivationStore(run.require("extract"))
    folder = run.stage_dir(STAGE)
    if not run.begin(STAGE, config, config.force, _exclude(config), inputs=sources.stage_inputs(run, config.method)):
        log.info("ablate: run %r already finished with these options (pass --force to redo)", run.name)
        return pd.read_csv(folder / "results.csv")
    device = resolve_device(config.device)
    seed = run_seed(run, config.seed)

    tokens = store.tokens("eval")
    explanations = explanation_tokens(store.saliency, tokens, config.top_k_words)
    table = store.sentences
    table = table[table["sentence"].isin(explanations["sentence"])]
    if len(table) < len(store.sentences):
        log.warning("ablate: %d evaluation sentences have no saliency and are left out",
                    len(store.sentences) - len(table))
    if table.empty:
        raise UserError(f"run {run.name!r} has no saliency for any evaluation sentence: rerun `clvq-judge extract --run {run.name} --force`")
    sentence_list = table["sentence"].to_numpy()
    labels = table["label"].to_numpy(dtype=np.int64)
    stored = table["prediction"].to_numpy(dtype=np.int64)
    which = config.probe_token if config.probe_token != "auto" else ("last" if store.model_kind == "decoder" else "start")
    target = labels if config.probe_target == "label" else stored
    probes = _Probes(store, tokens, sentence_list, target, which, config, seed, device) if config.protocol != "model" else None
    model = None

    rows: list[dict] = []
    per_sentence: list[pd.DataFrame] = []
    summary: dict[str, dict] = {}
    x_cache: dict[int, np.ndarray] = {}
    sentence_tokens: dict[int, torch.Tensor] = {}
    train_mean: dict[int, np.ndarray] = {}
    space = _Space(store, config.space == "standardized")
    for method in tqdm(config.method, desc="ablate", unit="method"):
        layer = sources.resolve_layer(run, store, method, config.layer)
        if layer not in x_cache:
            x_cache[layer] = store.rows(layer, "eval", explanations["row"].to_numpy())
        x_expl = x_cache[layer]
        if sources.is_span(method):
            variants = sources.span_sources(run, method, x_expl, tuple(config.sae_k), layer)
        else:
            variants = [sources.vector_source(run, method, explanations["row"].to_numpy(), x_expl, len(tokens), layer)]
            if config.center_directions and not space.standardized:  # z's training mean is 0 already
                if layer not in train_mean:
                    train_mean[layer] = token_mean(store, layer, "train")
                variants = [dataclasses.replace(v, table=v.table - train_mean[layer]) for v in variants]
        for source in variants:
            source = space.table(source)
            bases = make_bases(source, explanations, sentence_list, config.top_k_words, seed)
            centered = not source.span and (config.center_directions or space.standardized)
            entry = summary.setdefault(source.label, {"method": source.method, "k": source.k, "layer": layer,
                                                      "space": config.space, "directions_centered": centered})
            if probes is not None:
                x, fitted, original = probes.get(layer)
                z = space.to_space(layer, x)
                origin = z.mean(0) if config.center else torch.zeros_like(z[0])
                by_condition, share = bases.for_protocol((z - origin)[:, None, :].cpu(),
                                                         derive_seed(seed, source.label, "paper", "energy"))
                preds = {"original": original}
                for condition in REMOVALS:
                    moved = space.from_space(layer, origin + remove_span(z - origin, by_condition[condition]))
                    preds[condition] = fitted.predict_out_of_fold(moved)
                got, entry["paper"] = _rows(source, "paper", preds, target, fitted.folds, config, seed, share)
                rows += got
                per_sentence.append(sentence_rows(source.label, "paper", preds, target, sentence_list))
            if config.protocol != "paper":
                if model is None:
                    model = _Model(run, sentence_list, stored, config.batch_size, device)
                if layer not in sentence_tokens:
                    every = space.to_space(layer, store.rows(layer, "eval", np.arange(len(tokens))))
                    sentence_tokens[layer] = pad_by_sentence(every, tokens["sentence"].to_numpy(), sentence_list)
                by_condition, share = bases.for_protocol(sentence_tokens[layer],
                                                         derive_seed(seed, source.label, "model", "energy"))
                preds = {"original": model.prepare(layer)}
                for condition in REMOVALS:
                    preds[condition] = model.predict(layer, by_condition[condition], space.scaling(layer))
                got, entry["model"] = _rows(source, "model", preds, labels, None, config, seed, share)
                rows += got
                per_sentence.append(sentence_rows(source.label, "model", preds, labels, sentence_list))

    results = pd.DataFrame(rows, columns=COLUMNS)
    write_with(folder / "results.csv", lambda p: results.to_csv(p, index=False), suffix=".csv")
    sentences = pd.concat(per_sentence, ignore_index=True) if per_sentence else pd.DataFrame(columns=SENTENCE_COLUMNS)
    write_with(folder / ABLATION_FILES["sentences"], lambda p: sentences.to_csv(p, index=False), suffix=".csv")
    write_json(folder / "summary.json", {
        "n_sentences": len(sentence_list),
        "seed": seed,
        "probe_token": which,
        "probe_target": config.probe_target,
        "centered": config.center,
        "center_directions": config.center_directions,
        "space": config.space,
        "headline": "drop_vs_energy_control: paired accuracy(random_energy) - accuracy(concept) per protocol, 95% bootstrap CI",
        "folds": config.folds,
        "top_k_words": config.top_k_words,
        "model_kind": store.model_kind,
        "std": "paper: spread of accuracy over folds; model: binomial standard error",
        "methods": summary,
    })
    plot_results(results, folder / "ablation.png", fits={
        (label, protocol): (entry[protocol]["flip_vs_energy"]["slope"], entry[protocol]["flip_vs_energy"]["intercept"])
        for label, entry in summary.items() for protocol in ("paper", "model") if protocol in entry})
    run.finish(STAGE, config, _exclude(config))
    log.info("ablate: results in %s\n%s", folder, table_text(results))
    return results
