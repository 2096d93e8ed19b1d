"""`clvq-judge <stage> [options]`: one subcommand per pipeline stage.

The CLI only parses options into the stage's dataclass config and calls the stage function; all logic
lives in the library. A `UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass

from clvq_judge.core.config import add_arguments, from_namespace
from clvq_judge.core.errors import UserError


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    config: str  # "module:Class" of the stage's dataclass config
    function: str  # "module:function" taking that config

    def load(self, ref: str):
        module, attr = ref.split(":")
        return getattr(importlib.import_module(module), attr)


STAGES = [
    Stage("demo", "Run the pipeline end to end on the embedded offline default.",
          "clvq_judge.core.demo:DemoConfig", "clvq_judge.core.demo:run_demo"),
    Stage("finetune", "Load a dataset and model, train (or adopt) the classifier under study.",
          "clvq_judge.core.classifier:FinetuneConfig", "clvq_judge.core.classifier:finetune"),
    Stage("extract", "Cache per-word activations, predictions and Integrated-Gradients saliency.",
          "clvq_judge.core.extract:ExtractConfig", "clvq_judge.core.extract:extract"),
    Stage("train", "Fit a concept method (clvq, vqvae, sae, kmeans, agglomerative) on the cached activations.",
          "clvq_judge.core.train:TrainConfig", "clvq_judge.core.train:train"),
    Stage("concepts", "Write concept cards, vectors and per-token assignments of a trained method.",
          "clvq_judge.core.concepts:ConceptsConfig", "clvq_judge.core.concepts:concepts"),
    Stage("ablate", "Faithfulness: remove each sentence's concept at L_in (probe and model-level) vs random controls.",
          "clvq_judge.core.ablation.stage:AblateConfig", "clvq_judge.core.ablation.stage:ablate"),
]


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen stage's module is imported (stages pull in torch; `--help` stays fast)."""
    parser = argparse.ArgumentParser(
        prog="clvq-judge",
        description="Discover concepts in language models with CLVQ-VAE and evaluate them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for stage in STAGES:
        p = sub.add_parser(stage.name, help=stage.summary, description=stage.summary,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter.__bases__[0])
        if stage.name == chosen:
            add_arguments(p, stage.load(stage.config))
        p.set_defaults(_stage=stage)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = {s.name for s in STAGES}
    parser = build_parser(next((a for a in argv if a in names), None))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stage: Stage = args._stage
    try:
        config = from_namespace(stage.load(stage.config), args)
        result = stage.load(stage.function)(config)
        if isinstance(result, str):
            print(result)
    except UserError as exc:
        print(f"clvq-judge {stage.name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"clvq-judge {stage.name}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
