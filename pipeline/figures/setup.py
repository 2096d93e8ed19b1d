"""Setup: dataset, model, layers, sizes, the classifier's accuracy, package versions."""

from __future__ import annotations

import pandas as pd

from .base import Block, Context, esc, fmt


class Setup:
    name = "setup"

    def build(self, ctx: Context) -> Block:
        r = ctx.results
        info, manifest, classifier = r.info, r.manifest or {}, r.classifier_metrics or {}
        selections = manifest.get("selections", {})
        rows = {
            "dataset": info.get("dataset"), "model": info.get("model"), "seed": info.get("seed"),
            "layers": manifest.get("layers"), "training words": selections.get("train", {}).get("n_tokens"),
            "evaluation words": selections.get("eval", {}).get("n_tokens"),
            "dev accuracy": classifier.get("dev_accuracy"), "majority baseline": classifier.get("majority_baseline"),
        }
        table = pd.DataFrame({"": list(rows), "value": [fmt(v) if v is not None else "–" for v in rows.values()]})
        versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in info.get("versions", {}).items())
        return Block(title="Setup", summary=table, lead_html=f"<p>Package versions: {versions}</p>" if versions else "")


SECTION = Setup()
