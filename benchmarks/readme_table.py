"""Regenerate the README's demo figures from the demo's `headline.json` (not part of the installed package).

    python benchmarks/readme_table.py --headline runs/demo/headline.json   # copy it to docs/, rewrite README
    python benchmarks/readme_table.py                                      # rewrite README from docs/ copy
    python benchmarks/readme_table.py --check                              # exit 1 when README disagrees

The committed copy `docs/demo_headline.json` is what the README shows, so a test can compare the two
without running the demo.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ROOT / "docs" / "demo_headline.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- demo-figures:begin -->", "<!-- demo-figures:end -->"


def _fvu(m: dict, top_layer: int) -> str:
    if m.get("eval_reconstruction_fvu") is None:
        return "-"
    text = f"{m['eval_reconstruction_fvu']:.3f}"
    if m.get("reconstruction_layer") not in (None, top_layer):
        text += f" (of layer {m['reconstruction_layer']})"
    return text


def _accuracy(m: dict) -> str:
    """Concept removed / random direction / random with the concept's energy / another concept."""
    values = [m.get(k) for k in ("accuracy_concept_removed", "accuracy_random", "accuracy_random_energy",
                                 "accuracy_other_concept")]
    if values[0] is None or values[1] is None:
        return "-"
    k = m["ablation_label"].partition(" ")[2]
    shown = [f"{values[0]:.3f}{f' ({k})' if k else ''}"] + ["-" if v is None else f"{v:.3f}" for v in values[1:]]
    return " / ".join(shown)


def render(headline: dict) -> str:
    """The README block: one sentence of setup figures and the per-method table."""
    top = max(headline["layers"])
    lines = [
        f"`clvq-judge demo` ({headline['date']}; rerun it to check): `{headline['model']}` classifier on the "
        f"`{headline['dataset']}` set, dev accuracy {headline['dev_accuracy']:.3f} against a "
        f"{headline['majority_baseline']:.3f} majority-class baseline; layers {min(headline['layers'])} -> {top}, "
        f"{headline['train_words']:,} training words, {headline['eval_words']:,} evaluation words.",
        "",
        "| method | concepts used (eval) | L_out lookup FVU | own reconstruction FVU (eval) | model accuracy: concept removed / random / same-energy random / other concept |",
        "|---|---|---|---|---|",
    ]
    for m in headline["methods"]:
        layers = f"{m['layer_in']}" if m.get("eval_reconstruction_fvu") is None else f"{m['layer_in']} -> {m['layer_out']}"
        lines.append(
            f"| {m['method']} ({layers}) | {m['used_concepts']:,} / {m['n_concepts']:,} | {m['l_out_lookup_fvu']:.3f} "
            f"| {_fvu(m, top)} | {_accuracy(m)} |"
        )
    return "\n".join(lines)


def readme_block(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def write_readme(headline: dict, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render(headline) + "\n" + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headline", type=Path, help="a demo run's headline.json to adopt (copied to docs/)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README disagrees")
    args = parser.parse_args(argv)
    if args.headline:
        shutil.copyfile(args.headline, COPY)
    headline = json.loads(COPY.read_text(encoding="utf-8"))
    if args.check:
        same = readme_block(README.read_text(encoding="utf-8")) == render(headline)
        print("README figures match" if same else f"README figures differ from {COPY}: run benchmarks/readme_table.py")
        return 0 if same else 1
    write_readme(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
