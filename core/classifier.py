"""The classifier under study, and `clvq-judge finetune`, which trains (or adopts) it.

Our own classifiers are a backbone (any HF encoder or decoder) + pooling over word pieces + a linear head
on standardised features. Modes:
- `head` (quick default): the backbone stays frozen; pooled features are computed once and a linear
  head is fit on them. Only the head is saved; the backbone is reloaded from its source.
- `full`: backbone and head are fine-tuned together and both saved.
- `existing`: `--model` already is a fine-tuned HF sequence classifier; it is adopted as is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .atomic import read_json, write_json, write_text, write_with
from .config import option
from .data import DataOptions, TextDataset, load_dataset
from .device import resolve_device
from .encode import encode_batch
from .errors import UserError
from .hooks import depth
from .models import load_backbone, load_config, load_tokenizer, model_kind
from .runs import NON_RESULT_FIELDS, Run, RunOptions

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig(RunOptions, DataOptions):
    model: str = "minilm"
    """Model under study: embedded alias (minilm, gemma-270m), HF model id, or local directory."""
    mode: Literal["head", "full", "existing"] = "head"
    """head (train a linear head on the frozen model; quick), full (fine-tune everything), existing (--model is already a sequence classifier)."""
    pooling: Literal["mean", "first", "last"] = "mean"
    """How piece vectors become one sentence vector for the head: mean (over non-special pieces), first, last."""
    epochs: int = option(3, ge=1)
    """Epochs of full fine-tuning (head mode fits its head to convergence instead)."""
    lr: float = option(3e-5, gt=0)
    """Learning rate of full fine-tuning."""
    batch_size: int = option(16, ge=1)
    """Sentences per batch for feature extraction and fine-tuning."""
    max_length: int = option(128, ge=2)
    """Pieces per sentence; longer sentences are truncated."""


# --- the model ------------------------------------------------------------------------------------------


class LinearHead(nn.Module):
    """Linear classifier on standardised features (the standardisation is part of the model)."""

    def __init__(self, hidden: int, n_labels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(hidden))
        self.register_buffer("std", torch.ones(hidden))
        self.linear = nn.Linear(hidden, n_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)


class TextClassifier(nn.Module):
    """backbone -> pooled sentence vector -> linear head. `forward` returns logits [B, C]."""

    def __init__(self, backbone: nn.Module, tokenizer, head: LinearHead, pooling: str, label_names: list[str]):
        super().__init__()
        self.backbone, self.head, self.tokenizer = backbone, head, tokenizer
        self.pooling, self.label_names = pooling, list(label_names)
        self.register_buffer("special_ids", torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long))

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, input_ids, attention_mask, self.special_ids, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask))


class AdoptedClassifier(nn.Module):
    """An existing HF `AutoModelForSequenceClassification`, with the same `forward` as ours."""

    def __init__(self, model: nn.Module, tokenizer, label_names: list[str]):
        super().__init__()
        self.model, self.tokenizer, self.label_names = model, tokenizer, list(label_names)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def pool(hidden, input_ids, attention_mask, special_ids, how: str) -> torch.Tensor:
    """Sentence vector from piece vectors. Special tokens are left out of the mean because a decoder's
    BOS state is an attention sink with a huge norm that would swamp it."""
    mask = attention_mask.bool()
    if how == "mean":
        content = mask & ~torch.isin(input_ids, special_ids)
        content = torch.where(content.any(1, keepdim=True), content, mask)
        w = content.to(hidden.dtype)
        return (hidden * w[..., None]).sum(1) / w.sum(1, keepdim=True)
    if how == "first":
        return hidden[:, 0]
    if how == "last":
        last = mask.long().sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise UserError(f"unknown pooling {how!r}: use mean, first or last")


# --- loading a run's classifier -----------------------------------------------------------------------


def classifier_dir(run: Run) -> Path:
    return run.stage_dir("finetune")


def load_classifier(run: Run, device: torch.device | str = "cpu") -> nn.Module:
    """The run's classifier in eval mode on `device`, with `.tokenizer` and `.label_names`."""
    folder = run.require("finetune")
    meta = read_json(folder / "classifier.json")
    return _load_from_meta(folder, meta).to(device).eval()


def _load_from_meta(folder: Path, meta: dict) -> nn.Module:
    if meta["mode"] == "existing":
        from transformers import AutoModelForSequenceClassification

        from .models import quiet_transformers

        quiet_transformers()
        model = AutoModelForSequenceClassification.from_pretrained(meta["model_path"], dtype=torch.float32)
        return AdoptedClassifier(model, load_tokenizer(meta["model_path"]), meta["label_names"])
    source = str(folder / "backbone") if meta["mode"] == "full" else meta["model"]
    backbone = load_backbone(source)
    tokenizer = load_tokenizer(meta["model"])
    head = LinearHead(meta["hidden_size"], len(meta["label_names"]))
    head.load_state_dict(load_file(str(folder / "head.safetensors")))
    return TextClassifier(backbone, tokenizer, head, meta["pooling"], meta["label_names"])


def load_sentences(run: Run) -> pd.DataFrame:
    """The run's sentence table (sentence, split, text, label), written by `finetune`."""
    path = run.root / "data" / "sentences.parquet"
    if not path.exists():
        raise UserError(f"run {run.name!r} has no data yet: run `clvq-judge finetune --run {run.name}` first")
    return pd.read_parquet(path)


# --- batched inference ------------------------------------------------------------------------------


def batches_by_length(texts: list[str], batch_size: int):
    """Index batches of similar-length texts (less padding), in a fixed order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def predict(model: nn.Module, texts: list[str], batch_size: int, max_length: int, device, desc: str = "predict") -> np.ndarray:
    """Logits [N, C] for `texts`."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for idx in tqdm(list(batches_by_length(texts, batch_size)), desc=desc, unit="batch", leave=False):
        batch = encode_batch(model.tokenizer, [texts[i] for i in idx], max_length).to(device)
        out.append((idx, model(batch.input_ids, batch.attention_mask).float().cpu().numpy()))
    logits = np.zeros((len(texts), out[0][1].shape[1]), dtype=np.float32)
    for idx, block in out:
        logits[idx] = block
    return logits


# --- the finetune stage ------------------------------------------------------------------------------


def _write_data(run: Run, dataset: TextDataset) -> None:
    folder = run.root / "data"
    write_with(folder / "sentences.parquet", lambda p: dataset.sentences.to_parquet(p, index=False), suffix=".parquet")
    write_json(folder / "labels.json", dataset.label_names)


def _fit_head(feats: np.ndarray, labels: np.ndarray, n_labels: int, seed: int) -> LinearHead:
    """Multinomial logistic regression, full batch, to convergence (L-BFGS)."""
    torch.manual_seed(seed)
    x = torch.from_numpy(feats).float()
    y = torch.from_numpy(labels).long()
    head = LinearHead(x.shape[1], n_labels)
    head.mean.copy_(x.mean(0))
    head.std.copy_(x.std(0).clamp_min(1e-6))
    opt = torch.optim.LBFGS(head.linear.parameters(), lr=0.5, max_iter=300, history_size=20, line_search_fn="strong_wolfe")
    l2 = 1e-3

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(x), y) + l2 * head.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def _features(backbone, tokenizer, texts, config: FinetuneConfig, device, cache: Path) -> np.ndarray:
    """Pooled features of every sentence; cached in the stage folder so a killed run resumes."""
    if cache.exists():
        return np.load(cache)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long, device=device)
    feats = np.zeros((len(texts), backbone.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for idx in tqdm(list(batches_by_length(texts, config.batch_size)), desc="features", unit="batch"):
            batch = encode_batch(tokenizer, [texts[i] for i in idx], config.max_length).to(device)
            hidden = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
            feats[idx] = pool(hidden, batch.input_ids, batch.attention_mask, special, config.pooling).float().cpu().numpy()
    write_with(cache, lambda p: np.save(p, feats), suffix=".npy")
    return feats


def _finetune_full(model: TextClassifier, texts, labels, config: FinetuneConfig, device, folder: Path) -> None:
    """Full fine-tune with AdamW; a checkpoint per epoch lets a killed run resume at the next epoch."""
    ckpt = folder / "train_state.pt"
    opt = torch.optim.AdamW(
        [{"params": model.backbone.parameters(), "lr": config.lr}, {"params": model.head.parameters(), "lr": 1e-3}],
        weight_decay=0.01,
    )
    start_epoch = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch = state["epoch"] + 1
    y = torch.as_tensor(labels)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        rng = np.random.default_rng(config.seed + epoch)
        order = rng.permutation(len(texts))
        for start in tqdm(range(0, len(order), config.batch_size), desc=f"fine-tune epoch {epoch + 1}", unit="batch"):
            idx = order[start : start + config.batch_size]
            batch = encode_batch(model.tokenizer, [texts[i] for i in idx], config.max_length).to(device)
            loss = nn.functional.cross_entropy(model(batch.input_ids, batch.attention_mask), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        write_with(ckpt, lambda p, e=epoch: torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": e}, p), suffix=".pt")
    model.eval()


def finetune(config: FinetuneConfig) -> dict:
    """Load the dataset, train or adopt the classifier, store its predictions and accuracies."""
    run = Run.open(config.runs_dir, config.run, create=True)
    info = run.info()
    if info and run.is_done("finetune") and not config.force:
        for key in ("dataset", "model"):
            if info.get(key) != getattr(config, key):
                raise UserError(
                    f"run {run.name!r} was made with --{key} {info.get(key)}, not {getattr(config, key)}: "
                    f"use a new --run name or pass --force"
                )
    if run.is_done("finetune") and not config.force and not run.begin("finetune", config, False, NON_RESULT_FIELDS):
        log.info("finetune: run %r already finished with these options (pass --force to redo)", run.name)
        return read_json(classifier_dir(run) / "metrics.json")
    device = resolve_device(config.device)
    # Data and model are checked before the stage starts, so a bad one leaves nothing half-written.
    dataset = load_dataset(config)
    model_config = load_config(config.model)
    kind = model_kind(model_config)
    run.begin("finetune", config, config.force, NON_RESULT_FIELDS)
    run.write_info({"dataset": config.dataset, "model": config.model, "model_kind": kind, "seed": config.seed})
    _write_data(run, dataset)
    folder = classifier_dir(run)
    texts = dataset.sentences["text"].tolist()
    labels = dataset.sentences["label"].to_numpy()
    train = (dataset.sentences["split"] == "train").to_numpy()
    n_labels = len(dataset.label_names)
    meta = {"model": config.model, "mode": config.mode, "pooling": config.pooling, "label_names": dataset.label_names,
            "model_kind": kind, "hidden_size": int(model_config.hidden_size)}

    if config.mode == "existing":
        meta["model_path"] = config.model
        have = getattr(model_config, "num_labels", None)
        if have != n_labels:
            raise UserError(f"classifier {config.model!r} has {have} labels but the dataset has {n_labels}: pass a matching dataset or use --mode head")
        model = _load_from_meta(folder, meta).to(device).eval()
    else:
        backbone = load_backbone(config.model).to(device)
        tokenizer = load_tokenizer(config.model)
        if config.mode == "head":
            feats = _features(backbone, tokenizer, texts, config, device, folder / "features.npy")
            head = _fit_head(feats[train], labels[train], n_labels, config.seed)
            model = TextClassifier(backbone, tokenizer, head, config.pooling, dataset.label_names).to(device).eval()
            with torch.no_grad():
                logits = model.head(torch.from_numpy(feats).to(device)).cpu().numpy()
        else:
            head = LinearHead(model_config.hidden_size, n_labels)
            model = TextClassifier(backbone, tokenizer, head, config.pooling, dataset.label_names).to(device)
            _finetune_full(model, [texts[i] for i in np.flatnonzero(train)], labels[train], config, device, folder)
            model.backbone.save_pretrained(str(folder / "backbone"))
        save_file({k: v.contiguous().cpu() for k, v in model.head.state_dict().items()}, str(folder / "head.safetensors"))

    if config.mode != "head":
        logits = predict(model, texts, config.batch_size, config.max_length, device)
    preds = logits.argmax(1)
    table = pd.DataFrame({"sentence": dataset.sentences["sentence"], "split": dataset.sentences["split"],
                          "prediction": preds.astype(np.int64), "label": labels})
    write_with(folder / "predictions.parquet", lambda p: table.to_parquet(p, index=False), suffix=".parquet")
    metrics = accuracy_report(labels, preds, train, dataset.label_names)
    write_json(folder / "metrics.json", metrics)
    meta["n_layers"] = depth(model)  # lets later stages check layer indices without loading the weights
    write_text(folder / "classifier.json", json.dumps(meta, indent=2))
    (folder / "features.npy").unlink(missing_ok=True)
    (folder / "train_state.pt").unlink(missing_ok=True)
    run.finish("finetune", config, NON_RESULT_FIELDS, metrics=metrics)
    log.info("finetune: dev accuracy %.3f (majority-class baseline %.3f, %d dev sentences)",
             metrics["dev_accuracy"], metrics["majority_baseline"], metrics["n_dev"])
    return metrics


def accuracy_report(labels: np.ndarray, preds: np.ndarray, train: np.ndarray, label_names: list[str]) -> dict:
    majority = np.bincount(labels[train], minlength=len(label_names)).argmax()
    dev = ~train
    return {
        "train_accuracy": float((preds[train] == labels[train]).mean()),
        "dev_accuracy": float((preds[dev] == labels[dev]).mean()),
        "majority_baseline": float((labels[dev] == majority).mean()),
        "majority_class": label_names[majority],
        "n_train": int(train.sum()),
        "n_dev": int(dev.sum()),
    }
