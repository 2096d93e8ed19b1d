"""Regenerate the README's demo figures from the demo's `headline.json` (not part of the installed package).

    python benchmarks/readme_table.py --headline runs/demo/headline.json   # copy it to docs/, rewrite README
    python benchmarks/readme_table.py                                      # rewrite README from docs/ copy
    python benchmarks/readme_table.py --check                              # exit 1 when README disagrees
    python benchmarks/readme_table.py --seeds runs/demo/seeds.json         # adopt `clvq-judge seeds` figures too
    python benchmarks/readme_table.py --adopt paper runs/paper/headline.json  # any block of BLOCKS

Each README block is rendered from a committed copy in docs/ (`BLOCKS`: the demo's headline.json, the seed
replicates' seeds.json, the paper-scale run's headline.json, Gemma's seeds), so a test can compare the two
without running anything. A block whose markers are not in the README is skipped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ROOT / "docs" / "demo_headline.json"
SEEDS_COPY = ROOT / "docs" / "demo_seeds.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- demo-figures:begin -->", "<!-- demo-figures:end -->"
# headline.json stores seconds with sorted keys; tables read better in the order the stages run.
STAGE_ORDER = ("finetune", "extract", "train", "concepts", "ablate", "describe", "rank", "study", "simulate",
               "results", "report")


def in_run_order(seconds: dict) -> list[tuple[str, float]]:
    """(stage, seconds) without the total, in pipeline order; stages this list does not know come last."""
    known = [(k, seconds[k]) for k in STAGE_ORDER if k in seconds]
    return known + [(k, v) for k, v in seconds.items() if k not in STAGE_ORDER and k != "total"]


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


def _ci(d: dict | None) -> str:
    if not d or d.get("value") is None:
        return "-"
    return f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def _judge(judge: dict | None) -> list[str]:
    if not judge:
        return []
    rows = judge["methods"]
    protocol = judge.get("protocol") or "pairwise"
    head = rows[0]
    informative = any(r.get("informative") for r in rows)
    control = head.get("judge_known_answer_accuracy", head.get("known_answer_accuracy"))
    low, high = head.get("judge_known_answer_low"), head.get("judge_known_answer_high")
    control_text = f"{control:.2f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else "")
    if protocol == "detection":
        shown = "; ".join(f"{r['method']} detection AUC {r['detection_auc']:.2f} [{r['detection_auc_low']:.2f}, "
                          f"{r['detection_auc_high']:.2f}]" for r in rows)
        order = ""
    else:
        shown = "; ".join(f"{r['method']} win rate {r['win_rate']:.2f} [{r['win_rate_low']:.2f}, {r['win_rate_high']:.2f}], "
                          f"first place {r['first_place_rate']:.2f}" for r in rows)
        order = f", position inconsistency {head['position_inconsistency']:.2f}"
        if head.get("position_bias") is not None:
            order += f", position bias {head['position_bias']:.2f} (log-odds of the first option)"
    return ["", f"Judge ({head['judge']}, blinded {protocol}): {shown}; known-answer accuracy {control_text}{order}"
            + ("." if informative else ": **not informative** (its known-answer control does not clear chance).")]


def _study(study: dict | None) -> list[str]:
    if not study or not study.get("summary", {}).get("simulated"):
        return []
    sim = study["summary"]["simulated"]
    if "conditions" not in study:  # a headline from before the study had conditions
        shown = "; ".join(f"{m['method']} {m['sim_accuracy']:.2f} [{m['sim_ci_low']:.2f}, {m['sim_ci_high']:.2f}]"
                          for m in study["methods"] if m.get("sim_accuracy") is not None)
        return ["", f"Study: {study['summary']['annotators']} invite links; {sim['annotators']} simulated annotators "
                f"({sim['task_answers']} answers) predict the model from each method's concept with accuracy {shown} "
                f"(chance {study['summary']['chance']:.2f}); human answers so far: {study['summary']['answers']}."]
    rows = [r for r in study["conditions"] if r["kind"] == "simulated" and r.get("answers")]
    shown = "; ".join(f"{r['condition']}/{r['method']} {r['accuracy']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
                      for r in rows)
    flagged = len(sim.get("not_informative") or [])
    verdict = (f": **not informative** ({flagged} of {sim['annotators']} simulated annotators flagged by their attention "
               "checks or answers collapsed on one option)" if flagged else "")
    return ["", f"Study: conditions {', '.join(dict.fromkeys(r['condition'] for r in study['conditions']))}; "
            f"{study['summary']['annotators']} invite links; {sim['annotators']} simulated annotators "
            f"({sim['task_answers']} answers) predict the model with accuracy {shown} (chance "
            f"{study['summary']['chance']:.2f}){verdict}; human answers so far: {study['summary']['answers']}."]


def _setup(config: dict) -> str:
    """The options that make a run differ from the plain demo's, as command-line flags."""
    shown = {"dataset": "news", "model": "minilm", "axes": ["model", "judge", "study"],
             "methods": ["clvq", "vqvae", "sae", "kmeans", "agglomerative"], "preset": "quick", "epochs": None,
             "ablate_space": "model", "ig_steps": None, "max_train": 2000, "max_dev": 400}
    flags = [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
             for k, default in shown.items() if k in config and (v := config[k]) != default]
    return "".join(f" {flag}" for flag in flags)


def render(headline: dict) -> str:
    """The README block: one sentence of setup figures, the per-method table, the judge and study lines."""
    top = max(headline["layers"])
    lines = [
        f"`clvq-judge demo{_setup(headline.get('demo_config', {}))}` ({headline['date']}; rerun it to check): "
        f"`{headline['model']}` classifier on the "
        f"`{headline['dataset']}` set, dev accuracy {headline['dev_accuracy']:.3f} against a "
        f"{headline['majority_baseline']:.3f} majority-class baseline; layers {min(headline['layers'])} -> {top}, "
        f"{headline['train_words']:,} training words, {headline['eval_words']:,} evaluation words.",
        "",
        "| method | concepts used (eval) | L_out lookup FVU | own reconstruction FVU (eval) | model accuracy: concept removed / random / same-energy random / other concept | drop vs same-energy control [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for m in headline["methods"]:
        layers = f"{m['layer_in']}" if m.get("eval_reconstruction_fvu") is None else f"{m['layer_in']} -> {m['layer_out']}"
        sparsity = (f" (L0 {m['l0']:.1f}, {m['dead_latents']:,} dead)" if m.get("l0") is not None
                    and m.get("dead_latents") is not None else "")
        lines.append(
            f"| {m['method']} ({layers}) | {m['used_concepts']:,} / {m['n_concepts']:,}{sparsity} | {m['l_out_lookup_fvu']:.3f} "
            f"| {_fvu(m, top)} | {_accuracy(m)} | {_ci(m.get('drop_vs_energy_control'))} |"
        )
    lines += _judge(headline.get("judge")) + _study(headline.get("study"))
    seconds = headline.get("seconds") or {}
    if seconds.get("total"):
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in in_run_order(seconds) if v >= 1)
        lines += ["", f"Time per stage: {stages}; total {seconds['total']:.0f} s (the rest under a second each)."]
        if headline.get("machine"):
            lines[-1] += " " + machine_line(headline["machine"], headline.get("precision") or {})
    return "\n".join(lines)


def machine_line(machine: dict, precision: dict) -> str:
    """Which machine the times came from and what precision each kind of stage computed in."""
    from clvq_judge.core.machine import describe

    text = f"Measured on {describe(machine)}"
    model = sorted({v for k, v in precision.items() if isinstance(v, str)})
    judges = sorted({p for v in precision.values() if isinstance(v, dict) for p in v.values()})
    if model:
        text += f"; model stages in {', '.join(model)}"
    if judges:
        text += f", judge in {', '.join(judges)}"
    return text + "."


def _interval(e: dict, digits: int = 3) -> str:
    if e.get("mean") is None:
        return "-"
    if e.get("low") is None:
        return f"{e['mean']:.{digits}f}"
    return f"{e['mean']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def render_seeds(seeds: dict) -> str:
    """The README block of `clvq-judge seeds`: every figure as mean and 95% t-interval over seeds."""
    lines = [
        f"`clvq-judge seeds{_setup(seeds.get('config', {}))}` ({seeds['date']}): the demo's model axis on "
        f"`{seeds['model']}` / `{seeds['dataset']}` over "
        f"seeds {', '.join(map(str, seeds['seeds']))}; mean over seeds [95% t-interval]; dev accuracy "
        f"{_interval(seeds['dev_accuracy'])}.",
        "",
        "| method | concepts used | L_out lookup FVU | accuracy, concept removed | same-energy random | drop vs same-energy control |",
        "|---|---|---|---|---|---|",
    ]
    for method, e in seeds["methods"].items():
        lines.append(f"| {e.get('ablation_label', method)} | {_interval(e['used_concepts'], 0)} | {_interval(e['l_out_lookup_fvu'])} "
                     f"| {_interval(e['accuracy_concept_removed'])} | {_interval(e['accuracy_random_energy'])} "
                     f"| {_interval(e['drop_vs_energy_control'])} |")
    return "\n".join(lines)


JUDGE_STAGES = ("describe", "rank", "simulate")


def render_times(headline: dict) -> str:
    """A demo's time per stage as a table, the judge stages' share of the total, and the machine line."""
    seconds = dict(in_run_order(headline.get("seconds") or {}))
    total = sum(seconds.values())
    judge = sum(seconds.get(k, 0.0) for k in JUDGE_STAGES)
    lines = ["| stage | s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in seconds.items() if v >= 0.5]
    lines += [f"| **total** | **{total:.0f}** |", "",
              f"describe + rank + simulate: {judge:.0f} s, {judge / total:.0%} of the demo."
              if total else "no stage timed."]
    if headline.get("machine"):
        lines.append(machine_line(headline["machine"], headline.get("precision") or {}))
    return "\n".join(lines)


SEEDS_BEGIN, SEEDS_END = "<!-- seed-figures:begin -->", "<!-- seed-figures:end -->"

# name -> (committed copy in docs/, README marker name, renderer)
BLOCKS = {
    "demo": (COPY, "demo-figures", render),
    "seeds": (SEEDS_COPY, "seed-figures", render_seeds),
    "paper": (ROOT / "docs" / "paper_headline.json", "paper-figures", render),
    "paper-topk-sae": (ROOT / "docs" / "paper_topk_sae_headline.json", "paper-topk-sae-figures", render),
    "gemma-seeds": (ROOT / "docs" / "gemma_seeds.json", "gemma-seed-figures", render_seeds),
    "gemma-seeds-standardized": (ROOT / "docs" / "gemma_seeds_standardized.json", "gemma-seed-figures-standardized",
                                 render_seeds),
    "seeds-standardized": (ROOT / "docs" / "demo_seeds_standardized.json", "seed-figures-standardized", render_seeds),
    "weak-cpu-times": (ROOT / "docs" / "evidence" / "demo_weak_cpu_headline.json", "weak-cpu-times", render_times),
}


def markers(name: str) -> tuple[str, str]:
    tag = BLOCKS[name][1]
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def readme_block(text: str, begin: str = BEGIN, end: str = END) -> str:
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[start:stop].strip("\n")


def rendered_blocks(text: str) -> dict[str, str]:
    """Every block whose markers the README has and whose docs/ copy exists, rendered from that copy."""
    out = {}
    for name, (copy, _, renderer) in BLOCKS.items():
        if markers(name)[0] in text and copy.exists():
            out[name] = renderer(json.loads(copy.read_text(encoding="utf-8")))
    return out


def write_readme(headline: dict, readme: Path = README, seeds: dict | None = None) -> None:
    text = readme.read_text(encoding="utf-8")
    bodies = {name: body for name, body in rendered_blocks(text).items() if name not in ("demo", "seeds")}
    bodies["demo"] = render(headline)
    if seeds is not None and SEEDS_BEGIN in text:
        bodies["seeds"] = render_seeds(seeds)
    for name, body in bodies.items():
        begin, end = markers(name)
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = text[:start] + "\n" + body + "\n" + text[stop:]
    readme.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headline", type=Path, help="a demo run's headline.json to adopt (copied to docs/)")
    parser.add_argument("--seeds", type=Path, help="a `clvq-judge seeds` seeds.json to adopt (copied to docs/)")
    parser.add_argument("--adopt", nargs=2, action="append", default=[], metavar=("BLOCK", "PATH"),
                        help=f"adopt PATH as the copy of one block ({', '.join(BLOCKS)})")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README disagrees")
    args = parser.parse_args(argv)
    adopt = [("demo", args.headline)] * bool(args.headline) + [("seeds", args.seeds)] * bool(args.seeds) + args.adopt
    for name, path in adopt:
        if name not in BLOCKS:
            parser.error(f"unknown block {name!r}: choose from {', '.join(BLOCKS)}")
        shutil.copyfile(path, BLOCKS[name][0])
    headline = json.loads(COPY.read_text(encoding="utf-8"))
    seeds = json.loads(SEEDS_COPY.read_text(encoding="utf-8")) if SEEDS_COPY.exists() else None
    if args.check:
        text = README.read_text(encoding="utf-8")
        differ = [name for name, body in rendered_blocks(text).items() if readme_block(text, *markers(name)) != body]
        print(f"README blocks differ from their docs/ copies: {', '.join(differ)}; run benchmarks/readme_table.py"
              if differ else "README figures match")
        return 1 if differ else 0
    write_readme(headline, seeds=seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
