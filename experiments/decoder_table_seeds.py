"""CLVQ-VAE's per-code output table on and off, over the seed replicates of `clvq-judge seeds`.

    python experiments/decoder_table_seeds.py --runs-dir runs --run demo \
        --out experiments/results/decoder_table_seeds.json

For each replicate in `<run>/seeds.json` (trained with the default, table on) it makes a copy
`<replicate>-notable` that shares every file but CLVQ-VAE's (hard links; every stage writes atomically, so
the original is never touched), retrains CLVQ-VAE there with `--no-decoder-code-table` and the replicate's
seed, and reruns its concepts, ablation (CLVQ-VAE only: its bases and controls are seeded by method, so
they are the ones the replicate drew) and diagnostics. Both arms' figures are then summarised as mean and
95% t-interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from clvq_judge.core.ablation.stage import AblateConfig, ablate
from clvq_judge.core.atomic import write_json
from clvq_judge.core.concepts import ConceptsConfig, concepts
from clvq_judge.core.diagnose import DiagnoseConfig, diagnose
from clvq_judge.core.runs import Run
from clvq_judge.core.train import train, train_config_class
from clvq_judge.pipeline.demo import model_figures
from clvq_judge.pipeline.seeds import interval, summarise

METHOD = "clvq"
# Stage folders the copy must not share: the ones redone for the other arm.
REDONE = ("methods/clvq", "concepts/clvq", "ablation", "diagnose", "judge", "studies", "report")


def link_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    shutil.copytree(source, target, copy_function=os.link,
                    ignore=lambda folder, names: [n for n in names if (Path(folder) / n).relative_to(source).as_posix()
                                                  in REDONE or n in ("seeds.json", "headline.json")])


def table_off(runs_dir: Path, replicate: str, seed: int) -> tuple[dict, dict]:
    name = f"{replicate}-notable"
    link_copy(runs_dir / replicate, runs_dir / name)
    common = {"run": name, "runs_dir": str(runs_dir)}
    train(train_config_class()(**common, method=METHOD, seed=seed, decoder_code_table=False, progress=False))
    concepts(ConceptsConfig(**common, method=METHOD, seed=seed))
    ablate(AblateConfig(**common, method=(METHOD,)))
    diagnose(DiagnoseConfig(**common, method=METHOD))
    report = json.loads((runs_dir / name / "diagnose" / f"{METHOD}.json").read_text())
    return model_figures(Run.open(runs_dir, name), [METHOD]), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--run", default="demo", help="the run whose seeds.json lists the replicates")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    seeds = json.loads((args.runs_dir / args.run / "seeds.json").read_text())
    on, off, diag_on, diag_off = {}, {}, {}, {}
    for seed, replicate in seeds["runs"].items():
        seed = int(seed)
        on[seed] = {**seeds["per_seed"][str(seed)], "methods": [m for m in seeds["per_seed"][str(seed)]["methods"]
                                                                  if m["method"] == METHOD]}
        off[seed], diag_off[seed] = table_off(args.runs_dir, replicate, seed)
        path = args.runs_dir / replicate / "diagnose" / f"{METHOD}.json"
        diag_on[seed] = json.loads(path.read_text()) if path.exists() else None
    context = {}
    for arm, records in (("table_on", diag_on), ("table_off", diag_off)):
        if all(records.values()):
            context[arm] = {key: interval([r["context"][key] for r in records.values()])
                            for key in ("fvu_as_is", "fvu_each_word_alone", "fvu_code_training_mean_lookup")}
    result = {"runs": seeds["runs"], "table_on": summarise(on), "table_off": summarise(off), "decoder_context": context,
              "interval": seeds.get("interval")}
    write_json(args.out, result)
    for arm in ("table_on", "table_off"):
        e = result[arm]["methods"][METHOD]
        print(f"{arm:<10} own recon FVU {e['eval_reconstruction_fvu']['mean']:.3f} "
              f"[{e['eval_reconstruction_fvu']['low']:.3f}, {e['eval_reconstruction_fvu']['high']:.3f}]  "
              f"lookup FVU {e['l_out_lookup_fvu']['mean']:.3f}  drop vs energy control "
              f"{e['drop_vs_energy_control']['mean']:.3f} [{e['drop_vs_energy_control']['low']:.3f}, "
              f"{e['drop_vs_energy_control']['high']:.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
