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

    def config_class(self) -> type:
        """The stage's config dataclass; a function in its place builds it (train: from the method registry)."""
        found = self.load(self.config)
        return found if isinstance(found, type) else found()


class UsageError(Exception):
    """A command line argparse rejects (unknown option, invalid choice, wrong type)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; we print one line naming the problem and the fix."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


STAGES = [
    Stage("demo", "The whole product on the embedded offline default: model, ablation, judge, study, simulated annotators, report.",
          "clvq_judge.pipeline.demo:DemoConfig", "clvq_judge.pipeline.demo:run_demo"),
    Stage("seeds", "The demo's model axis over several seeds: every headline figure as mean and 95% interval.",
          "clvq_judge.pipeline.seeds:SeedsConfig", "clvq_judge.pipeline.seeds:run_seeds"),
    Stage("finetune", "Load a dataset and model, train (or adopt) the classifier under study.",
          "clvq_judge.core.classifier:FinetuneConfig", "clvq_judge.core.classifier:finetune"),
    Stage("extract", "Cache per-word activations, predictions and Integrated-Gradients saliency.",
          "clvq_judge.core.extract:ExtractConfig", "clvq_judge.core.extract:extract"),
    Stage("train", "Fit a registered concept method (--method; each brings its own options) on the cached activations.",
          "clvq_judge.core.train:train_config_class", "clvq_judge.core.train:train"),
    Stage("concepts", "Write concept cards, vectors and per-token assignments of a trained method.",
          "clvq_judge.core.concepts:ConceptsConfig", "clvq_judge.core.concepts:concepts"),
    Stage("ablate", "Faithfulness: remove each sentence's concept at L_in (probe and model-level) vs random controls.",
          "clvq_judge.core.ablation.stage:AblateConfig", "clvq_judge.core.ablation.stage:ablate"),
    Stage("diagnose", "Diagnostics of a trained method: lookup FVU before/after training, oracle ceiling, NMI, decoder context use.",
          "clvq_judge.core.diagnose:DiagnoseConfig", "clvq_judge.core.diagnose:diagnose"),
    Stage("describe", "Explainer LLM: a one-line description of each concept the sampled units use (blind to the method).",
          "clvq_judge.judge.describe:DescribeConfig", "clvq_judge.judge.describe:describe"),
    Stage("rank", "Blinded LLM judging of concept methods: pairwise or listwise, known-answer control, win rates.",
          "clvq_judge.judge.rank:RankConfig", "clvq_judge.judge.rank:rank"),
    Stage("judges", "Calibration table of every judge that answered in a run: known-answer control, position bias, agreement, cost.",
          "clvq_judge.judge.judges:JudgesConfig", "clvq_judge.judge.judges:judges"),
    Stage("serve", "Serve a local transformers model (default: the embedded judge) as an OpenAI-compatible API.",
          "clvq_judge.judge.serve:ServeConfig", "clvq_judge.judge.serve:serve"),
    Stage("export", "Gather a run's ranking, ablation and human results into CSVs ready for a paper.",
          "clvq_judge.pipeline.export:ExportConfig", "clvq_judge.pipeline.export:export"),
    Stage("report", "One self-contained HTML report of a run: per axis a summary table with CIs and a chart, concept cards; raw tables as CSVs.",
          "clvq_judge.pipeline.report:ReportConfig", "clvq_judge.pipeline.report:build_report"),
    Stage("explore", "Concept explorer of a run (Streamlit): search concepts by word, one concept's members, contexts and verdicts, methods side by side.",
          "clvq_judge.pipeline.explorer:ExploreConfig", "clvq_judge.pipeline.explorer:explore"),
    Stage("study create", "Build a human-evaluation study (conditions concept, sentence, both) from a run and print one invite link per annotator.",
          "clvq_judge.human_eval.builder:CreateConfig", "clvq_judge.human_eval.builder:create_study"),
    Stage("study serve", "Start the annotation app (Streamlit) for a study.",
          "clvq_judge.human_eval.serve:StudyServeConfig", "clvq_judge.human_eval.serve:serve_study"),
    Stage("study results", "Accuracy per condition x method with CIs, the concept's added value, alpha, flags and progress, as tidy CSVs.",
          "clvq_judge.human_eval.results:ResultsConfig", "clvq_judge.human_eval.results:study_results"),
    Stage("study simulate", "LLM annotators answer a study through exactly the page a person sees, in every condition (kind 'simulated').",
          "clvq_judge.human_eval.simulate:SimulateConfig", "clvq_judge.human_eval.simulate:simulate_study"),
]


# Stages that shard their work across torchrun processes (one writer of the run directory).
DISTRIBUTED_STAGES = ("extract", "train")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen stage's module is imported (stages pull in torch; `--help` stays fast)."""
    parser = OneLineParser(
        prog="clvq-judge",
        description="Discover concepts in language models with CLVQ-VAE and evaluate them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for stage in STAGES:
        # "study create" is the `create` action of the `study` command group.
        group, _, action = stage.name.rpartition(" ")
        target = sub
        if group:
            if group not in groups:
                parent = sub.add_parser(group, help=f"{group} commands ({group} ACTION --help for each)")
                groups[group] = parent.add_subparsers(dest=f"{group}_action", metavar="ACTION", required=True)
            target = groups[group]
        # argparse reads help text as a %-format ("95% interval" would crash `--help`).
        summary = stage.summary.replace("%", "%%")
        p = target.add_parser(action, help=summary, description=summary,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter.__bases__[0])
        if stage.name == chosen:
            add_arguments(p, stage.config_class())
        p.set_defaults(_stage=stage)
    return parser


def chosen_stage(argv: list[str]) -> str | None:
    """The stage named on the command line (a group's action included), before parsing the options."""
    names = {s.name for s in STAGES}
    words = [a for a in argv if not a.startswith("-")]
    for first, second in zip(words, [*words[1:], None]):
        if second is not None and f"{first} {second}" in names:
            return f"{first} {second}"
        if first in names:
            return first
    return None


def main(argv: list[str] | None = None) -> int:
    # Set here, not only under `python -m`, so the installed `clvq-judge` entry point gets it too: forked
    # workers of a tokenizer that already ran in parallel would deadlock.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(chosen_stage(argv))
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpx2", "urllib3", "filelock", "huggingface_hub", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stage: Stage = args._stage
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and stage.name not in DISTRIBUTED_STAGES:
            # Every process would write the same files: only extract and train shard their work.
            raise UserError(f"`{stage.name}` runs as one process: launch only {' and '.join(DISTRIBUTED_STAGES)} "
                            f"under torchrun, and this stage without it")
        config = from_namespace(stage.config_class(), args)
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
    sys.exit(main())
